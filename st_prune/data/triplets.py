"""Training triplets, loaded and validated once, for the L3Prune scan and for training alike.

The scan must see the data exactly as training will, so both go through the same two functions:

- ``load_triplets(source)`` -> a ``datasets.Dataset`` with columns ``anchor``, ``positive``, optional
  ``negative`` and optional ``instruction`` (in that order, nothing else), validated before any model work;
- ``split_by_instruction(dataset)`` -> ``(datasets, prompts)``, exactly what ``SentenceTransformerTrainer``
  takes as ``train_dataset`` and ``prompts``: one dataset per instruction, the instruction as the anchor's
  *prompt* (so ``Pooling(include_prompt=False)`` leaves its tokens out of the embedding). sentence-transformers
  applies one prompt per batch, so each batch comes from one instruction, as in the E5 / echo-embeddings mix.

The prompt format is ``st_prune.prompt_format``'s: st-prune's ``"{instruction} →"``, or a trained embedder's own
(``instruction_template``); scan, training and evaluation must format instructions identically.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from st_prune.errors import StPruneError
from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE, instruction_prompt
from st_prune.util.files import read_json, read_utf8

TEXT_COLUMNS = ("anchor", "positive", "negative")
INSTRUCTION_COLUMN = "instruction"
#: Other spellings of the text columns (echo-embeddings uses query/pos/neg) -> our names.
COLUMN_ALIASES = {"query": "anchor", "pos": "positive", "neg": "negative"}
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def read_task_instructions(value: str, flag: str, *, inline: bool = False) -> dict[str, str]:
    """``{task: instruction}`` for a command-line ``flag``: a JSON file, or with ``inline`` also JSON text itself."""
    if inline and value.lstrip().startswith("{"):
        try:
            mapping = json.loads(value)
        except json.JSONDecodeError as error:
            raise StPruneError(f'{flag} is not valid JSON ({error.msg}); give {{"task": "instruction"}}') from None
    else:
        where = "a JSON file or inline JSON object" if inline else "a JSON file"
        mapping = read_json(value, fix=f'{flag} takes {where} of {{"task": "instruction"}}')
    if not isinstance(mapping, dict) or not all(isinstance(text, str) for text in mapping.values()):
        raise StPruneError(f'{flag} must be a JSON object of task name -> instruction text, e.g. {{"nq": "..."}}')
    return mapping


def load_triplets(
    source: Dataset | str | os.PathLike,
    *,
    instructions: Mapping[str, str] | None = None,
    default_instruction: str | None = None,
) -> Dataset:
    """Load and validate contrastive training data.

    Args:
        source: a ``datasets.Dataset``; a ``.jsonl``/``.json``/``.csv``/``.parquet`` file; or a folder of such files
            (the echo-embeddings layout, one file per task: the file's name is the row's task).
        instructions: task name -> instruction, for data with a ``task`` column (or a folder of task files)
            and no ``instruction`` column.
        default_instruction: the instruction of rows whose task is not in ``instructions`` (or of all rows when
            there is no task). Without it, a task missing from ``instructions`` is an error.

    Returns:
        A ``Dataset`` with columns ``anchor``, ``positive``, [``negative``], [``instruction``], in this order and
        nothing else (sentence-transformers' losses read columns by position). ``query``/``pos``/``neg`` are
        accepted as ``anchor``/``positive``/``negative``; a list-valued ``pos``/``neg`` keeps its first entry.
        ``instruction`` holds the raw instruction (``None`` for none); ``split_by_instruction`` turns it into prompts.

    Raises:
        StPruneError: empty data, missing anchor/positive columns, a non-text value (naming its row and column),
            or a task without an instruction.
    """
    columns, where = _read(source)
    for alias, name in COLUMN_ALIASES.items():
        if alias in columns and name not in columns:
            columns[name] = columns.pop(alias)
    rows = max((len(values) for values in columns.values()), default=0)
    if rows == 0:
        raise StPruneError(f"{where} has no rows; give it anchor/positive(/negative) triplets")
    missing = [column for column in ("anchor", "positive") if column not in columns]
    if missing:
        raise StPruneError(
            f"{where} lacks column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'}); "
            "name the columns anchor, positive and optionally negative (or query, positive, negative)"
        )
    data: dict[str, list[Any]] = {}
    for column in TEXT_COLUMNS:
        if column in columns:
            values = columns[column] if column == "anchor" else _first_of_lists(columns[column])
            _check_texts(values, column, where, optional=False)
            data[column] = values
    instruction_values = _instructions(columns, where, instructions, default_instruction)
    if instruction_values is not None:
        data[INSTRUCTION_COLUMN] = instruction_values
    return Dataset.from_dict(data)


def split_by_instruction(
    dataset: Dataset, columns: Sequence[str] = ("anchor",), template: str = QUERY_PROMPT_TEMPLATE
) -> tuple[dict[str, Dataset], dict[str, dict[str, str]]]:
    """One dataset per instruction and the prompts that go with them, as ``SentenceTransformerTrainer`` takes them.

    ``trainer = SentenceTransformerTrainer(..., train_dataset=DatasetDict(datasets), prompts=prompts)`` and
    ``L3Prune().select(model, datasets, prompts=prompts)`` then see identical batches. Datasets are named
    ``d0, d1, ...`` in the sorted order of their instructions; rows without an instruction form a dataset with no
    prompt. The ``instruction`` column is dropped; ``columns`` are the text columns that carry the prompt (the query
    side by default; add ``"positive"``, ``"negative"`` for symmetric tasks); ``template`` is the prompt format
    (``instruction_prompt``).

    A dataset without an ``instruction`` column comes back whole as ``{"d0": dataset}`` with no prompts.
    """
    if INSTRUCTION_COLUMN not in dataset.column_names:
        return {"d0": dataset}, {}
    instructions = dataset[INSTRUCTION_COLUMN]
    prompts_of_rows = [instruction_prompt(value, template) for value in instructions]
    rows_by_prompt: dict[str | None, list[int]] = {}
    for index, prompt in enumerate(prompts_of_rows):
        rows_by_prompt.setdefault(prompt, []).append(index)
    texts = dataset.remove_columns(INSTRUCTION_COLUMN)
    datasets: dict[str, Dataset] = {}
    prompts: dict[str, dict[str, str]] = {}
    for number, prompt in enumerate(sorted(rows_by_prompt, key=lambda value: (value is not None, value or ""))):
        name = f"d{number}"
        datasets[name] = texts.select(rows_by_prompt[prompt])
        if prompt is not None:
            prompts[name] = {column: prompt for column in columns if column in texts.column_names}
    return datasets, prompts


# --- reading ------------------------------------------------------------------------------------------------------
def _read(source: Dataset | str | os.PathLike) -> tuple[dict[str, list[Any]], str]:
    """The data as column name -> Python list (no Arrow type inference that could fail before a bad value is named)."""
    if isinstance(source, Dataset):
        return source.to_dict(), "the dataset"
    if not isinstance(source, (str, os.PathLike)):
        raise StPruneError(
            f"training data must be a datasets.Dataset or a path to a JSONL/CSV/Parquet file, got {type(source).__name__}"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise StPruneError(f"data file not found: {source}; pass a JSONL, CSV or Parquet file (or a folder of them)")
    if path.is_dir():
        files = sorted(file for file in path.rglob("*") if file.suffix.lower() in FILE_SUFFIXES and file.is_file())
        if not files:
            raise StPruneError(f"{source} holds no {'/'.join(FILE_SUFFIXES)} files; point at your triplets")
        rows: list[dict[str, Any]] = []
        for file in files:
            for row in _read_file(file):
                row.setdefault("task", file.stem)
                rows.append(row)
    else:
        rows = _read_file(path)
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for key in row:
            columns.setdefault(key, [])
    for key, values in columns.items():
        values.extend(row.get(key) for row in rows)
    return columns, str(path)


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        text = read_utf8(path)
        if suffix == ".json" and text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = []
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise StPruneError(
                        f"{path.name} line {number} is not valid JSON ({error.msg}); fix that line"
                    ) from None
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise StPruneError(f"{path.name} row {number} is not a JSON object; write one object per line")
        return rows
    if suffix == ".csv":
        return [dict(row) for row in csv.DictReader(io.StringIO(read_utf8(path), newline=""))]
    if suffix == ".parquet":
        return Dataset.from_parquet(str(path)).to_list()
    raise StPruneError(f"cannot read {path.name}: use a .jsonl, .json, .csv or .parquet file")


def _first_of_lists(values: list[Any]) -> list[Any]:
    return [value[0] if isinstance(value, list) and value else value for value in values]


def _check_texts(values: list[Any], column: str, where: str, *, optional: bool) -> None:
    for row, value in enumerate(values):
        if isinstance(value, str) or (optional and value is None):
            continue
        raise StPruneError(
            f"{where}: row {row} (0-based), column {column!r} is not text ({type(value).__name__}: {value!r:.60}); "
            f"every {column} must be a string"
        )


def _instructions(
    columns: dict[str, list[Any]],
    where: str,
    instructions: Mapping[str, str] | None,
    default_instruction: str | None,
) -> list[str | None] | None:
    if INSTRUCTION_COLUMN in columns:
        values = columns[INSTRUCTION_COLUMN]
        _check_texts(values, INSTRUCTION_COLUMN, where, optional=True)
        return [value if value is not None else default_instruction for value in values]
    if instructions and "task" in columns:
        tasks = columns["task"]
        unknown = sorted({str(task) for task in tasks if task not in instructions})
        if unknown and default_instruction is None:
            raise StPruneError(
                f"{where}: no instruction for task(s) {', '.join(unknown[:5])}; add them to the instructions "
                "or give a default instruction"
            )
        return [instructions.get(task, default_instruction) for task in tasks]
    if default_instruction is not None:
        return [default_instruction] * max(len(values) for values in columns.values())
    return None
