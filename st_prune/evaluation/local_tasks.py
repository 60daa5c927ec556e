"""Local tasks: the user's own JSONL files as mteb tasks that never touch the network.

One file is one task of a ``LOCAL_TASK_TYPES`` type (STS, pair classification, classification, clustering,
retrieval). Every row is checked when the file is read, before any model loads, and the first bad one is reported
with its file, row and field; the file's hash is the task's dataset revision, so results of an edited file are not
mixed with older ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from mteb.abstasks import (
    AbsTask,
    AbsTaskClassification,
    AbsTaskClustering,
    AbsTaskPairClassification,
    AbsTaskRetrieval,
    AbsTaskSTS,
)
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from st_prune.errors import StPruneError
from st_prune.evaluation.task_files import TEXT_FIELDS
from st_prune.evaluation.tasks import is_mteb_task


@dataclass(frozen=True)
class _LocalTaskType:
    """How one `--task-type` maps onto mteb: the fields a row needs, the mteb type and its main score."""

    fields: tuple[str, ...]
    mteb_type: str
    main_score: str


LOCAL_TASK_TYPES: dict[str, _LocalTaskType] = {
    "sts": _LocalTaskType(("sentence1", "sentence2", "score"), "STS", "cosine_spearman"),
    "pair-classification": _LocalTaskType(("sentence1", "sentence2", "label"), "PairClassification", "max_ap"),
    "classification": _LocalTaskType(("text", "label", "split"), "Classification", "accuracy"),
    "clustering": _LocalTaskType(("text", "label"), "Clustering", "v_measure"),
    "retrieval": _LocalTaskType(("query", "document"), "Retrieval", "ndcg_at_10"),
}

_TASK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CLASSIFICATION_SPLITS = ("train", "test")


class LocalTask:
    """Mixin for tasks whose rows were read (and checked) from a local JSONL file; no network involved.

    A subclass per file carries `metadata` and `rows` as class attributes, because mteb's `unload_data` drops
    instance-level metadata.
    """

    metadata: TaskMetadata
    rows: tuple[dict[str, Any], ...] = ()

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self.dataset = self._build_dataset(list(self.rows))
        self.data_loaded = True

    def _build_dataset(self, rows: list[dict[str, Any]]) -> Any:
        raise NotImplementedError


class LocalSTSTask(LocalTask, AbsTaskSTS):
    """Rows `{"sentence1", "sentence2", "score"}`; main score: Spearman correlation of cosine similarities."""

    def _build_dataset(self, rows: list[dict[str, Any]]) -> DatasetDict:
        columns = {key: [row[key] for row in rows] for key in ("sentence1", "sentence2", "score")}
        return DatasetDict({"test": Dataset.from_dict(columns)})


class LocalPairClassificationTask(LocalTask, AbsTaskPairClassification):
    """Rows `{"sentence1", "sentence2", "label"}` with label 0/1; main score: best average precision."""

    def _build_dataset(self, rows: list[dict[str, Any]]) -> DatasetDict:
        columns = {
            "sentence1": [row["sentence1"] for row in rows],
            "sentence2": [row["sentence2"] for row in rows],
            "labels": [int(row["label"]) for row in rows],
        }
        return DatasetDict({"test": Dataset.from_dict(columns)})


class LocalClassificationTask(LocalTask, AbsTaskClassification):
    """Rows `{"text", "label", "split"}`; a logistic regression fit on `train` rows is scored on `test` rows."""

    def _build_dataset(self, rows: list[dict[str, Any]]) -> DatasetDict:
        label_ids = _label_ids(rows)
        return DatasetDict(
            {
                split: Dataset.from_dict(
                    {
                        "text": [row["text"] for row in rows if row["split"] == split],
                        "label": [label_ids[row["label"]] for row in rows if row["split"] == split],
                    }
                )
                for split in _CLASSIFICATION_SPLITS
            }
        )


class LocalClusteringTask(LocalTask, AbsTaskClustering):
    """Rows `{"text", "label"}`; k-means on the embeddings, scored by V-measure against the labels."""

    # A local file is small enough to embed whole (mteb's default samples 4 % of a Hub dataset).
    max_fraction_of_documents_to_embed = None

    def _build_dataset(self, rows: list[dict[str, Any]]) -> DatasetDict:
        label_ids = _label_ids(rows)
        columns = {"sentences": [row["text"] for row in rows], "labels": [label_ids[row["label"]] for row in rows]}
        return DatasetDict({"test": Dataset.from_dict(columns)})


def _label_ids(rows: list[dict[str, Any]]) -> dict[str | int, int]:
    """Labels as integer ids: mteb's binary metrics (average precision) assume integer labels."""
    return {label: index for index, label in enumerate(sorted({row["label"] for row in rows}, key=str))}


class LocalRetrievalTask(LocalTask, AbsTaskRetrieval):
    """Rows `{"query", "document"}`, one relevant document per row; the corpus is every distinct document."""

    def _build_dataset(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, RetrievalSplitData]]:
        query_ids: dict[str, str] = {}
        document_ids: dict[str, str] = {}
        relevant: dict[str, dict[str, int]] = {}
        for row in rows:
            query_id = query_ids.setdefault(row["query"], f"q{len(query_ids)}")
            document_id = document_ids.setdefault(row["document"], f"d{len(document_ids)}")
            relevant.setdefault(query_id, {})[document_id] = 1
        split = RetrievalSplitData(
            queries=Dataset.from_dict({"id": list(query_ids.values()), "text": list(query_ids)}),
            corpus=Dataset.from_dict({"id": list(document_ids.values()), "text": list(document_ids)}),
            relevant_docs=relevant,
            top_ranked=None,
        )
        return {"default": {"test": split}}


_LOCAL_TASK_CLASSES: dict[str, type[LocalTask]] = {
    "sts": LocalSTSTask,
    "pair-classification": LocalPairClassificationTask,
    "classification": LocalClassificationTask,
    "clustering": LocalClusteringTask,
    "retrieval": LocalRetrievalTask,
}


def load_local_task(
    path: str | Path,
    task_type: str,
    *,
    name: str | None = None,
    instruction: str | None = None,
    language: str = "eng-Latn",
) -> AbsTask:
    """Read a JSONL file as an mteb task of `task_type` (one of `LOCAL_TASK_TYPES`), checking every row now.

    Columns: sts `sentence1, sentence2, score`; pair-classification `sentence1, sentence2, label` (0/1);
    classification `text, label, split` (train/test); clustering `text, label`; retrieval `query, document`.
    The task is named `name` or after the file; its dataset revision is a hash of the file, so results from an
    edited file are not mixed with old ones. `instruction` is the task's instruction (default: mteb's for the type).
    """
    path = Path(path)
    if task_type not in LOCAL_TASK_TYPES:
        raise StPruneError(f"unknown task type {task_type!r}: use one of {', '.join(LOCAL_TASK_TYPES)}")
    if not path.is_file():
        raise StPruneError(f"task file {path} does not exist: pass a JSONL file with one JSON object per line")
    name = name or path.stem
    if not _TASK_NAME_PATTERN.match(name):
        raise StPruneError(f"task name {name!r} is not a valid file name: pass --task-name with letters, digits, _ . -")
    if is_mteb_task(name):
        raise StPruneError(
            f"task name {name!r} is an MTEB task; pass a different --task-name so local results are not taken "
            "for MTEB's"
        )

    spec = LOCAL_TASK_TYPES[task_type]
    rows = _read_task_rows(path, task_type)
    metadata = TaskMetadata(
        name=name,
        description=f"Local {task_type} task read from {path.name} ({len(rows)} rows).",
        dataset={"path": str(path.resolve()), "revision": hashlib.sha256(path.read_bytes()).hexdigest()[:16]},
        type=spec.mteb_type,
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=[language],
        main_score=spec.main_score,
        prompt=instruction,
        is_public=False,
        bibtex_citation="",
    )
    attributes: dict[str, Any] = {"metadata": metadata, "rows": tuple(rows)}
    if task_type == "sts":
        scores = [row["score"] for row in rows]
        attributes.update(min_score=min(scores), max_score=max(scores))
    task_cls = type(f"Local_{re.sub(r'[^0-9A-Za-z_]', '_', name)}", (_LOCAL_TASK_CLASSES[task_type],), attributes)
    return task_cls()


def _read_task_rows(path: Path, task_type: str) -> list[dict[str, Any]]:
    """Parse and check every row; the first bad one raises an error naming file, row (line number) and field."""
    spec = LOCAL_TASK_TYPES[task_type]
    rows: list[dict[str, Any]] = []
    first_label_type: type | None = None  # labels must not mix 1 and "1"
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                problem = None if isinstance(row, dict) else "is not a JSON object"
            except json.JSONDecodeError as error:
                problem = f"is not valid JSON ({error.msg})"
            field_name = "<row>"
            if problem is None:
                for field_name in spec.fields:
                    problem = _field_problem(task_type, field_name, row)
                    if problem is None and field_name == "label" and task_type != "pair-classification":
                        first_label_type = first_label_type or type(row["label"])
                        if type(row["label"]) is not first_label_type:
                            label_type = type(row["label"]).__name__
                            problem = f"is a {label_type}, earlier labels are {first_label_type.__name__}s"
                    if problem:
                        break
            if problem:
                raise StPruneError(
                    f"{path}: row {line_number}: field {field_name!r} {problem} "
                    f"(a {task_type} row needs {', '.join(spec.fields)})"
                )
            rows.append({field_name: row[field_name] for field_name in spec.fields})
    _check_task_rows(path, task_type, rows)
    return rows


def _field_problem(task_type: str, field_name: str, row: dict[str, Any]) -> str | None:
    """What is wrong with one field of a row, or None."""
    if field_name not in row:
        return "is missing"
    value = row[field_name]
    if field_name in TEXT_FIELDS:
        ok, expected = isinstance(value, str) and bool(value.strip()), "a non-empty string"
    elif field_name == "score":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        expected = "a number"
    elif field_name == "split":
        ok, expected = value in _CLASSIFICATION_SPLITS, "'train' or 'test'"
    elif task_type == "pair-classification":  # label
        ok, expected = not isinstance(value, bool) and value in (0, 1), "0 or 1"
    else:  # label of classification / clustering
        ok, expected = isinstance(value, int | str) and not isinstance(value, bool), "a string or an integer"
    return None if ok else f"must be {expected}, got {value!r}"


def _check_task_rows(path: Path, task_type: str, rows: list[dict[str, Any]]) -> None:
    """File-level checks: enough rows and classes for the task's metric to be defined."""
    if not rows:
        raise StPruneError(f"{path}: no rows; a {task_type} task file needs one JSON object per line")
    if task_type == "sts" and len({row["score"] for row in rows}) < 2:
        raise StPruneError(f"{path}: all 'score' values are equal; STS needs varied scores to correlate with")
    if task_type == "pair-classification" and len({row["label"] for row in rows}) < 2:
        raise StPruneError(f"{path}: 'label' needs both 0 and 1 rows for average precision")
    if task_type == "clustering" and len({row["label"] for row in rows}) < 2:
        raise StPruneError(f"{path}: 'label' needs at least two distinct clusters")
    if task_type == "classification":
        for split in _CLASSIFICATION_SPLITS:
            if not any(row["split"] == split for row in rows):
                raise StPruneError(f"{path}: no rows with split {split!r}; classification needs train and test rows")
        if len({row["label"] for row in rows if row["split"] == "train"}) < 2:
            raise StPruneError(f"{path}: the train rows need at least two distinct labels")
