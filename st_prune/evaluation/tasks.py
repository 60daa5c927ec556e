"""The MTEB tasks a pruned encoder is evaluated on: the paper's 15 tasks, their instructions and the paper's citation,
the MTEB benchmarks as named task sets, and the names of mteb's registered tasks.

Everything runs on mteb 2.x and offline: resolving tasks downloads nothing, a Hub-hosted task's data loads when it
runs and must then be in the local cache. Tasks read from the user's own JSONL files are in ``local_tasks``.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence

import mteb
from mteb.abstasks import AbsTask
from mteb.get_tasks import TASK_LIST

from st_prune.errors import StPruneError

#: The 15 MTEB tasks of the paper (the LLM2Vec subset), in the paper's order. Taken from `MTEB(eng, v1)`.
PAPER_TASK_NAMES: tuple[str, ...] = (
    "SciFact",
    "ArguAna",
    "NFCorpus",
    "StackOverflowDupQuestions",
    "SciDocsRR",
    "BiorxivClusteringS2S",
    "MedrxivClusteringS2S",
    "TwentyNewsgroupsClustering",
    "SprintDuplicateQuestions",
    "Banking77Classification",
    "EmotionClassification",
    "MassiveIntentClassification",
    "STS17",
    "SICK-R",
    "STSBenchmark",
)

#: Named task sets accepted by `resolve_tasks` besides plain task names.
TASK_SET_BENCHMARKS: dict[str, str] = {
    "mteb-eng-v1": "MTEB(eng, v1)",
    "mteb-eng-v2": "MTEB(eng, v2)",
}
PAPER_TASK_SET = "paper"

#: The LLM2Vec / E5-Mistral instructions of the 15 paper tasks.
PAPER_INSTRUCTIONS: dict[str, str] = {
    "SciFact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "ArguAna": "Given a claim, find documents that refute the claim",
    "NFCorpus": "Given a question, retrieve relevant documents that best answer the question",
    "StackOverflowDupQuestions": "Retrieve duplicate questions from StackOverflow forum",
    "SciDocsRR": "Given a title of a scientific paper, retrieve the titles of other relevant papers",
    "BiorxivClusteringS2S": "Identify the main category of Biorxiv papers based on the titles",
    "MedrxivClusteringS2S": "Identify the main category of Medrxiv papers based on the titles",
    "TwentyNewsgroupsClustering": "Identify the topic or theme of the given news articles",
    "SprintDuplicateQuestions": "Retrieve duplicate questions from Sprint forum",
    "Banking77Classification": "Given a online banking query, find the corresponding intents",
    "EmotionClassification": (
        "Classify the emotion expressed in the given Twitter message into one of the six emotions: "
        "anger, fear, joy, love, sadness, and surprise"
    ),
    "MassiveIntentClassification": "Given a user utterance as query, find the user intents",
    "STS17": "Retrieve semantically similar text",
    "SICK-R": "Retrieve semantically similar text",
    "STSBenchmark": "Retrieve semantically similar text",
}

PAPER_ARXIV_ID = "2410.14578"
PAPER_URL = f"https://arxiv.org/abs/{PAPER_ARXIV_ID}"
PAPER_CITATION = """@misc{thennal2024llmsoverparameterized,
  title={Large Language Models Are Overparameterized Text Encoders},
  author={Thennal D K and Tim Fischer and Chris Biemann},
  year={2024},
  eprint={2410.14578},
  archivePrefix={arXiv},
  primaryClass={cs.CL},
  url={https://arxiv.org/abs/2410.14578},
}"""


def mteb_task_names() -> list[str]:
    """Names of every task registered in the installed mteb."""
    return [task_cls.metadata.name for task_cls in TASK_LIST]


def is_mteb_task(name: str) -> bool:
    """Whether `name` is a task registered in mteb (as opposed to a local task)."""
    return name in _mteb_task_name_set()


@functools.cache
def _mteb_task_name_set() -> frozenset[str]:
    return frozenset(mteb_task_names())


def paper_tasks() -> list[AbsTask]:
    """The paper's 15 tasks as the task objects of `MTEB(eng, v1)` (its splits and subsets, e.g. STS17 en-en)."""
    by_name = {task.metadata.name: task for task in mteb.get_benchmark("MTEB(eng, v1)").tasks}
    missing = [name for name in PAPER_TASK_NAMES if name not in by_name]
    if missing:
        raise StPruneError(
            f"MTEB(eng, v1) in mteb {mteb.__version__} lacks the paper tasks {missing}; install the mteb version "
            "pinned by st-prune"
        )
    return [by_name[name] for name in PAPER_TASK_NAMES]


def resolve_tasks(spec: str | Sequence[str]) -> list[AbsTask]:
    """Turn a task set name or task names into mteb task objects.

    `spec` is `"paper"` (the 15 paper tasks), `"mteb-eng-v2"` / `"mteb-eng-v1"` (the benchmarks), a comma-separated
    string of mteb task names, or a sequence of any of these. Unknown names raise `StPruneError` with the closest
    known names. Nothing is downloaded: data loads when a task runs.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    names = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not names:
        raise StPruneError("no tasks given: pass --tasks paper, --tasks mteb-eng-v2 or --tasks NAME,NAME")

    unknown = [name for name in names if name != PAPER_TASK_SET and name not in TASK_SET_BENCHMARKS]
    unknown = [name for name in unknown if not is_mteb_task(name)]
    if unknown:
        raise StPruneError(
            unknown_tasks_message(
                unknown,
                [PAPER_TASK_SET, *TASK_SET_BENCHMARKS, *mteb_task_names()],
                "use an mteb task name, 'paper', 'mteb-eng-v1' or 'mteb-eng-v2', or --task-file for your own data",
            )
        )

    tasks: list[AbsTask] = []
    seen: set[str] = set()
    for name in names:
        for task in _task_set_tasks(name) or [mteb.get_task(name)]:
            if task.metadata.name not in seen:
                seen.add(task.metadata.name)
                tasks.append(task)
    return tasks


def _task_set_tasks(name: str) -> list[AbsTask] | None:
    if name == PAPER_TASK_SET:
        return paper_tasks()
    if name in TASK_SET_BENCHMARKS:
        return list(mteb.get_benchmark(TASK_SET_BENCHMARKS[name]).tasks)
    return None


def unknown_tasks_message(unknown: Sequence[str], choices: Sequence[str], fix: str) -> str:
    """One line naming each unknown task with its closest known names, then the fix."""
    parts = []
    for name in unknown:
        matches = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(m) for m in matches)}?)" if matches else ""
        parts.append(f"{name!r}{hint}")
    return f"unknown MTEB task {'; '.join(parts)}: {fix}"
