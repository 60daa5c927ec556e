"""Task instructions as sentence-transformers prompts, in mteb's prompt keys.

Instructions follow the paper (which follows LLM2Vec / E5-Mistral): queries of retrieval and reranking tasks
carry a task instruction, documents do not; symmetric tasks (STS, pair classification, classification,
clustering) carry it on both sides. The instruction is given to sentence-transformers as a *prompt*, so a
`Pooling(include_prompt=False)` module leaves its tokens out of the embedding, as in the paper.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mteb.abstasks import AbsTask
from mteb.types import PromptType

from st_prune.evaluation.tasks import PAPER_INSTRUCTIONS
from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE, instruction_template

#: Used for a task that has neither a table entry nor an instruction of its own.
GENERIC_INSTRUCTION = "Retrieve semantically similar text"

#: How an instruction becomes the prompt put before a text: the one template scan, training and evaluation share
#: (why it ends on " →": ``st_prune.prompt_format.QUERY_PROMPT_TEMPLATE``).
INSTRUCTION_TEMPLATE = QUERY_PROMPT_TEMPLATE

# Task types whose two sides differ: only the query side carries the instruction.
_ASYMMETRIC_TASK_TYPES = frozenset({"retrieval"})  # mteb's simplified type of Retrieval, Reranking, ...


def instruction_for_task(task: AbsTask) -> str:
    """The instruction for a task: the paper's table, else the task's own mteb prompt, else a generic one."""
    name = task.metadata.name
    if name in PAPER_INSTRUCTIONS:
        return PAPER_INSTRUCTIONS[name]
    own = task.metadata.prompt
    if isinstance(own, Mapping):
        own = own.get(PromptType.query.value) or own.get(PromptType.document.value)
    own = own or getattr(task, "abstask_prompt", None)  # mteb's per-task-type default
    return (own or GENERIC_INSTRUCTION).strip().rstrip(".:")


def is_symmetric(task: AbsTask) -> bool:
    """Symmetric tasks put the instruction on both texts; retrieval-like tasks only on the query."""
    return task.metadata.simplified_task_type not in _ASYMMETRIC_TASK_TYPES


def build_task_prompts(
    tasks: Iterable[AbsTask],
    *,
    model_prompts: Mapping[str, str | None] | None = None,
    template: str | None = None,
) -> dict[str, str]:
    """Prompts in mteb's key scheme: `Task` (both sides) for symmetric tasks, `Task-query` for retrieval-like ones.

    The model's own prompts are kept, and win for any task they name (`Task`, `Task-query` or `Task-document`).
    `template` is the instruction format; by default the model's own, read from its `query` prompt
    (`st_prune.prompt_format.instruction_template`: Qwen3-Embedding's `Instruct: ...\nQuery:`, else st-prune's).
    """
    own = {key: value for key, value in (model_prompts or {}).items() if value is not None}
    template = template or instruction_template(own)
    own_task_names = {prompt_key_task(key) for key in own}
    prompts: dict[str, str] = {}
    for task in tasks:
        name = task.metadata.name
        if name in own_task_names:
            continue
        key = name if is_symmetric(task) else f"{name}-{PromptType.query.value}"
        prompts[key] = template.format(instruction=instruction_for_task(task))
    return {**prompts, **own}


def prompt_key_task(key: str) -> str:
    """`SciFact-query` -> `SciFact`: the task (or task type) part of an mteb prompt key."""
    for prompt_type in PromptType:
        suffix = f"-{prompt_type.value}"
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key
