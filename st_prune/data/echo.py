"""The paper's training data: echo-data (E5 mix) folders, and the one loader ``st-prune run``, ``train`` and ``scan``
read training data with.

The public E5 mix in the echo-embeddings layout ("echo-data") is a folder with one ``<task>.jsonl`` per dataset,
each line ``{"query", "positive", "negative"}``. Training on it the way the paper (and LLM2Vec) does takes three
things a plain triplet file does not need (``load_e5_mix``):

- each task's own instruction (``E5_INSTRUCTIONS``), as the prompt of its queries;
- the instruction on the document side too for the symmetric tasks (``E5_SYMMETRIC``: NLI similarity, Quora);
- ``allnli.jsonl`` and ``quora_duplicates.jsonl`` hold two splits whose rows alternate, each with its own
  instruction (``E5_ALTERNATING``).

``load_training_source`` is the one entry point: an echo-data folder goes through ``load_e5_mix``, anything else
(a JSONL/CSV/Parquet file, a folder of other files, a ``datasets.Dataset``) through ``st_prune.data.triplets.load_triplets``,
so a recipe whose ``data.path`` is an echo-data folder trains on exactly the data ``st-prune train --data`` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from st_prune.data.triplets import INSTRUCTION_COLUMN, TEXT_COLUMNS, load_triplets
from st_prune.errors import StPruneError
from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE, instruction_prompt

# Instructions of the public E5 mix as used by LLM2Vec and the paper, keyed by file name (without .jsonl).
E5_INSTRUCTIONS: dict[str, str] = {
    "allnli_split1": "Given a premise, retrieve a hypothesis that is entailed by the premise",
    "allnli_split2": "Retrieve semantically similar text",
    "dureader": "Given a Chinese search query, retrieve web passages that answer the question",
    "eli5_question_answer": "Provided a user question, retrieve the highest voted answers on Reddit ELI5 forum",
    "fever": "Given a claim, retrieve documents that support or refute the claim",
    "hotpot_qa": "Given a multi-hop question, retrieve documents that can help answer the question",
    "miracl": "Given a question, retrieve Wikipedia passages that answer the question",
    "mrtydi": "Given a question, retrieve Wikipedia passages that answer the question",
    "msmarco_passage": "Given a web search query, retrieve relevant passages that answer the query",
    "msmarco_document": "Given a web search query, retrieve relevant documents that answer the query",
    "nq": "Given a question, retrieve Wikipedia passages that answer the question",
    "quora_duplicates_split1": "Given a question, retrieve questions that are semantically equivalent to the given question",
    "quora_duplicates_split2": "Find questions that have the same meaning as the input question",
    "squad": "Retrieve Wikipedia passages that answer the question",
    "t2ranking": "Given a Chinese search query, retrieve web passages that answer the question",
    "trivia_qa": "Retrieve Wikipedia passages that answer the question",
}
#: Symmetric tasks: the positive and negative carry the instruction too (LLM2Vec's E5 loader).
E5_SYMMETRIC: frozenset[str] = frozenset({"allnli_split2", "quora_duplicates_split1", "quora_duplicates_split2"})
#: Later echo-data releases merge two splits into one file whose rows alternate between them.
E5_ALTERNATING: dict[str, tuple[str, str]] = {
    "allnli": ("allnli_split1", "allnli_split2"),
    "quora_duplicates": ("quora_duplicates_split1", "quora_duplicates_split2"),
}


def is_e5_folder(path: str | os.PathLike, instructions: Mapping[str, str] | None = None) -> bool:
    """True for a folder whose ``*.jsonl`` files are all E5-mix tasks (by file name)."""
    path = Path(path)
    if not path.is_dir():
        return False
    known = set(E5_INSTRUCTIONS if instructions is None else instructions) | set(E5_ALTERNATING)
    stems = [file.stem for file in path.glob("*.jsonl")]
    return bool(stems) and all(stem in known for stem in stems)


def load_e5_mix(
    folder: str | os.PathLike,
    *,
    instructions: Mapping[str, str] | None = None,
    symmetric: Sequence[str] | None = None,
    max_rows_per_task: int | None = None,
    template: str = QUERY_PROMPT_TEMPLATE,
) -> tuple[dict[str, Dataset], dict[str, dict[str, str]]]:
    """The public E5 training mix in the echo-embeddings layout: a folder with one ``<task>.jsonl`` per task.

    Each line holds ``query``, ``positive`` and ``negative`` (read by ``st_prune.data.triplets.load_triplets``).
    Returns ``(datasets, prompts)``: one dataset per task, named by task, and each task's instruction as the
    prompt of its query column (and of its documents for the symmetric tasks), ready for
    ``train_pruned(model, datasets, prompts=prompts)`` or ``L3Prune().select(model, datasets, prompts)``.
    ``allnli.jsonl`` and ``quora_duplicates.jsonl`` (merged splits) are split back by row parity, as LLM2Vec does.

    Args:
        folder: the folder of JSONL files.
        instructions: file name -> instruction; defaults to ``E5_INSTRUCTIONS`` (the paper's table). A file
            whose name has no instruction is refused with the list of known names.
        symmetric: file names whose documents carry the instruction too (default ``E5_SYMMETRIC``).
        max_rows_per_task: keep the first N rows of each task, e.g. for a quick run.
        template: how an instruction becomes a prompt (``st_prune.prompt_format.instruction_template``).
    """
    folder = Path(folder)
    table = dict(E5_INSTRUCTIONS if instructions is None else instructions)
    symmetric_tasks = set(E5_SYMMETRIC if symmetric is None else symmetric)
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise StPruneError(f"{folder} holds no .jsonl files; point it at the E5 mix folder (one <task>.jsonl per task)")
    unknown = [path.stem for path in files if path.stem not in table and path.stem not in E5_ALTERNATING]
    if unknown:
        raise StPruneError(
            f"no instruction for {', '.join(unknown)} in {folder}; known tasks: {', '.join(sorted(table))} "
            "(pass instructions={file name: instruction} or rename the files)"
        )
    datasets: dict[str, Dataset] = {}
    prompts: dict[str, dict[str, str]] = {}
    for path in files:
        dataset = load_triplets(str(path))
        if "instruction" in dataset.column_names:
            dataset = dataset.remove_columns("instruction")
        if max_rows_per_task is not None:
            dataset = dataset.select(range(min(max_rows_per_task, len(dataset))))
        parts = E5_ALTERNATING.get(path.stem) if path.stem not in table else None
        if parts:
            pieces = {
                parts[0]: dataset.select(range(0, len(dataset), 2)),
                parts[1]: dataset.select(range(1, len(dataset), 2)),
            }
        else:
            pieces = {path.stem: dataset}
        for task, piece in pieces.items():
            prompt = instruction_prompt(table[task], template)
            columns = piece.column_names if task in symmetric_tasks else ["anchor"]
            datasets[task] = piece
            prompts[task] = {column: prompt for column in columns}
    return datasets, prompts


# --- the one loader ----------------------------------------------------------------------------------
@dataclass
class TrainingSource:
    """Training data as read from its source, in the two shapes its users need.

    ``data`` and ``prompts`` go to ``prepare_training_data(data, batch_size, prompts)``, ``build_trainer`` /
    ``train_pruned(..., prompts=prompts)`` and ``L3Prune.select(model, data, prompts=prompts)``: a ``Dataset`` with an
    ``instruction`` column and no prompts (triplet files), or one dataset per task with each task's column prompts
    (echo-data). ``rows`` is every triplet in one ``Dataset`` (anchor, positive[, negative], instruction) for what
    needs plain texts: speed measurements, a vocabulary-trim corpus, counts.
    """

    data: Dataset | dict[str, Dataset]
    prompts: dict[str, dict[str, str]] | None
    rows: Dataset
    echo_data: bool = False


def is_echo_data_folder(source: Any) -> bool:
    """A folder whose ``*.jsonl`` files include at least one E5-mix task name (``allnli``, ``msmarco_passage``, ...)."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source).expanduser()
    if not path.is_dir():
        return False
    known = set(E5_INSTRUCTIONS) | set(E5_ALTERNATING)
    return any(file.stem in known for file in path.glob("*.jsonl"))


def load_training_source(
    source: Dataset | str | os.PathLike,
    *,
    instructions: Mapping[str, str] | None = None,
    default_instruction: str | None = None,
    max_rows: int | None = None,
    template: str = QUERY_PROMPT_TEMPLATE,
) -> TrainingSource:
    """Training data from a file, a folder or a Dataset: the loader behind ``st-prune run``, ``train`` and ``scan``.

    Args:
        source: an echo-data folder (see ``is_echo_data_folder``); or anything ``st_prune.data.triplets.load_triplets`` reads.
        instructions: task -> instruction. For echo-data, by file name, replacing or adding to the paper's table
            (``E5_INSTRUCTIONS``; naming a merged file such as ``allnli`` makes it one task with that instruction,
            not two alternating splits). Otherwise for rows with a ``task`` column (or files in a folder).
        default_instruction: the instruction of a task that has none (for echo-data: a file the table does not
            name; without it such a file is refused, naming the fix).
        max_rows: read at most this many rows; for echo-data, per task file (the mix's tasks stay balanced,
            where the first N rows of the whole folder would be its first files only).
        template: how an E5 mix's instructions become prompts (``st_prune.prompt_format.instruction_template``); a
            file's ``instruction`` column is kept raw here and formatted where the data meets its model.
    """
    if not is_echo_data_folder(source):
        dataset = load_triplets(source, instructions=instructions, default_instruction=default_instruction)
        if max_rows is not None:
            dataset = dataset.select(range(min(max_rows, len(dataset))))
        return TrainingSource(dataset, None, dataset)
    table = {**E5_INSTRUCTIONS, **dict(instructions or {})}
    if default_instruction is not None:
        for file in Path(source).expanduser().glob("*.jsonl"):
            if file.stem not in table and file.stem not in E5_ALTERNATING:
                table[file.stem] = default_instruction
    datasets, prompts = load_e5_mix(
        Path(source).expanduser(), instructions=table, max_rows_per_task=max_rows, template=template
    )
    return TrainingSource(datasets, prompts, _flat_rows(datasets, table), echo_data=True)


def _flat_rows(datasets: Mapping[str, Dataset], table: Mapping[str, str]) -> Dataset:
    """Every task's triplets in one Dataset, each row with its task's (raw) instruction."""
    columns = [column for column in TEXT_COLUMNS if all(column in d.column_names for d in datasets.values())]
    flat: dict[str, list[Any]] = {column: [] for column in (*columns, INSTRUCTION_COLUMN)}
    for task, dataset in datasets.items():
        for column in columns:
            flat[column].extend(dataset[column])
        flat[INSTRUCTION_COLUMN].extend([table[task]] * len(dataset))
    return Dataset.from_dict(flat)
