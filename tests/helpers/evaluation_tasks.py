"""Rows of every local task type, shared by the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import mteb

ANIMAL, FINANCE = "animal", "finance"


LABELLED = [
    ("the cat sat on the mat", ANIMAL),
    ("a dog runs in the park", ANIMAL),
    ("stocks fell sharply today", FINANCE),
    ("the market rallied after the news", FINANCE),
    ("a kitten sleeps in the sun", ANIMAL),
    ("the dog barks at the mailman", ANIMAL),
    ("prices rose in early trading", FINANCE),
    ("investors sold their shares", FINANCE),
]


TASK_ROWS = {
    "sts": [
        {"sentence1": a, "sentence2": b, "score": float(i % 5)}
        for i, ((a, _), (b, _)) in enumerate(zip(LABELLED, LABELLED[1:] + LABELLED[:1]))
    ],
    "pair-classification": [
        {"sentence1": a, "sentence2": b, "label": int(la == lb)}
        for (a, la), (b, lb) in zip(LABELLED, LABELLED[1:] + LABELLED[:1])
    ],
    "classification": [
        {"text": text, "label": label, "split": "train" if i < 5 else "test"}
        for i, (text, label) in enumerate(LABELLED)
    ],
    "clustering": [{"text": text, "label": label} for text, label in LABELLED],
    "retrieval": [
        {"query": "cat", "document": "the cat sat on the mat"},
        {"query": "cat", "document": "a kitten sleeps in the sun"},
        {"query": "dog", "document": "a dog runs in the park"},
        {"query": "stock market", "document": "stocks fell sharply today"},
        {"query": "shares", "document": "investors sold their shares"},
    ],
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def stsbenchmark_in_memory() -> mteb.AbsTask:
    """The registered STSBenchmark task with a few rows supplied in memory, so it runs without a download."""
    import mteb  # here, not at the top: the unit tests that read the rows need no mteb
    from datasets import Dataset, DatasetDict

    task = mteb.get_task("STSBenchmark")
    task.dataset = DatasetDict({"test": Dataset.from_list(TASK_ROWS["sts"])})
    task.data_loaded = True
    return task
