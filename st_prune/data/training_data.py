"""The one training-data type: ``TrainingData``, datasets by name with each dataset's column prompts, which the L3Prune
scan, the trainer and the distillation all read, so that they see the same texts with the same prompts.

``to_training_data(data, prompts)`` is the one normaliser: a ``Dataset`` or a path (``st_prune.data.triplets``; an
``instruction`` column becomes one dataset per instruction, the instruction as the anchor's prompt), a
``DatasetDict`` or mapping of datasets, an E5-mix folder (``st_prune.data.echo``), or a ``TrainingData`` as it is.
``prepare_training_data`` adds what training needs: datasets too small to fill a batch are dropped.
``TrainingData.prompt(dataset, column)`` is the one prompt resolver.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, DatasetDict

from st_prune.data.echo import is_echo_data_folder, load_training_source
from st_prune.data.triplets import TEXT_COLUMNS, load_triplets, split_by_instruction
from st_prune.errors import StPruneError
from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE

logger = logging.getLogger(__name__)

#: What ``prompts`` may be, as sentence-transformers' trainer takes them: one string for every column,
#: {column: prompt}, or {dataset name: {column: prompt}}.
Prompts = str | Mapping[str, str] | Mapping[str, Mapping[str, str]] | None


@dataclass
class TrainingData:
    """Training data as ST's trainer takes it: one dataset per instruction, and each dataset's column prompts."""

    datasets: dict[str, Dataset]
    prompts: dict[str, dict[str, str]]
    dropped: dict[str, int] = field(default_factory=dict)  # dataset name -> rows, too few to fill a batch

    def prompt(self, dataset: str, column: str) -> str | None:
        """The prompt put before ``column``'s texts of ``dataset`` (None: none), as the trainer's collator applies it."""
        return (self.prompts.get(dataset) or {}).get(column)

    @property
    def num_rows(self) -> int:
        return sum(len(dataset) for dataset in self.datasets.values())

    def for_trainer(self) -> tuple[Dataset | DatasetDict, dict[str, Any] | None]:
        """``(train_dataset, prompts)`` for ``SentenceTransformerTrainer`` (and ``L3Prune.select``): a single
        dataset stays a plain ``Dataset`` with ``{column: prompt}``; several form a ``DatasetDict`` with
        ``{dataset: {column: prompt}}``."""
        if len(self.datasets) == 1:
            name, dataset = next(iter(self.datasets.items()))
            return dataset, (dict(self.prompts.get(name) or {}) or None)
        prompts = {name: dict(prompt) for name, prompt in self.prompts.items() if prompt}
        return DatasetDict(self.datasets), (prompts or None)


def _per_dataset_prompts(prompts: Prompts, names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Trainer-style prompts spelled out as {dataset: {column: prompt}} for the given dataset names."""
    if not prompts:
        return {}
    if isinstance(prompts, str):
        return {name: {column: prompts for column in TEXT_COLUMNS} for name in names}
    if all(isinstance(value, str) for value in prompts.values()):
        return {name: dict(prompts) for name in names}
    unknown = [name for name in prompts if name not in names]
    if unknown:
        raise StPruneError(
            f"prompts name dataset(s) {', '.join(map(str, unknown))} that the data does not have "
            f"(datasets: {', '.join(names)})"
        )
    return {name: dict(prompts[name]) for name in names if name in prompts}


def _split(data: Any, prompts: Prompts, template: str) -> tuple[dict[str, Dataset], dict[str, dict[str, str]]]:
    """Named text-only datasets and their prompts; ``instruction`` columns become anchor prompts in ``template``."""
    if is_echo_data_folder(data):  # the same loader as `st-prune train` and `st-prune run` (st_prune.data.echo)
        if prompts:
            raise StPruneError("an E5-mix folder brings its own instructions; do not pass prompts with it")
        source = load_training_source(data, template=template)
        return dict(source.data), dict(source.prompts or {})
    if isinstance(data, (DatasetDict, Mapping)):
        named = {str(name): dataset for name, dataset in data.items()}
        if not named:
            raise StPruneError("the training data holds no datasets; give at least one anchor/positive dataset")
    else:
        named = {"train": data}
    datasets: dict[str, Dataset] = {}
    split_prompts: dict[str, dict[str, str]] = {}
    plain: list[str] = []
    for name, source in named.items():
        checked = load_triplets(source)
        if "instruction" not in checked.column_names:
            datasets[name] = checked
            plain.append(name)
            continue
        if prompts:
            raise StPruneError("the data has an instruction column; give either that column or prompts, not both")
        parts, part_prompts = split_by_instruction(checked, template=template)
        for part, dataset in parts.items():
            full_name = name if len(parts) == 1 else f"{name}-{part}"
            datasets[full_name] = dataset
            if part in part_prompts:
                split_prompts[full_name] = part_prompts[part]
    split_prompts.update(_per_dataset_prompts(prompts, plain))
    return datasets, split_prompts


def to_training_data(data: Any, prompts: Prompts = None, template: str = QUERY_PROMPT_TEMPLATE) -> TrainingData:
    """``data`` (see the module docstring) validated, one dataset per instruction, with every prompt spelled out per
    dataset and column; ``prompts`` are trainer-style prompts for data without an ``instruction`` column;
    ``template`` is how an instruction becomes a prompt: the model's own (``instruction_template(model.prompts)``)."""
    if isinstance(data, TrainingData):
        if prompts:
            raise StPruneError("the training data carries its prompts; do not pass prompts with it")
        return data
    datasets, split_prompts = _split(data, prompts, template)
    return TrainingData(datasets, {name: p for name, p in split_prompts.items() if p})


def prepare_training_data(
    data: Any, batch_size: int, prompts: Prompts = None, template: str = QUERY_PROMPT_TEMPLATE
) -> TrainingData:
    """Validated training data, one dataset per instruction, with the prompts ST's trainer applies.

    Args:
        data: a ``datasets.Dataset``; a ``DatasetDict`` or dict of name -> Dataset; a JSONL/CSV/Parquet file or a
            folder of them (``st_prune.data.triplets.load_triplets``); or a folder of E5-mix task files (``load_e5_mix``).
            An ``instruction`` column becomes the anchor's prompt (``st_prune.data.triplets.split_by_instruction``), so
            its tokens are excluded from pooling just as with ``model.encode(texts, prompt=...)``.
        batch_size: datasets with fewer rows cannot fill a batch and are dropped with a warning (all: an error).
        prompts: trainer-style prompts for data without an ``instruction`` column.
        template: the instruction format (``st_prune.prompt_format.instruction_template`` of the model trained).
    """
    whole = to_training_data(data, prompts, template)
    datasets, split_prompts = whole.datasets, whole.prompts
    kept: dict[str, Dataset] = {}
    dropped: dict[str, int] = {}
    for name, dataset in datasets.items():
        if len(dataset) >= batch_size:
            kept[name] = dataset
        else:
            dropped[name] = len(dataset)
    if not kept:
        largest = max(dropped.values(), default=0)
        if largest < 2:  # no batch size helps: a batch needs 2 rows, the other row being the in-batch negative
            raise StPruneError(
                f"the training data has at most {largest} row(s) per instruction, and a batch needs at least 2 "
                "(each row's in-batch negatives are the other rows); add data"
            )
        raise StPruneError(
            f"no dataset (one per instruction) has batch_size={batch_size} rows to fill a batch (largest: {largest}); "
            f"lower the batch size to at most {largest} or add data"
        )
    if dropped:
        logger.warning(
            "Skipping %d dataset(s) with fewer than batch_size=%d rows: %s",
            len(dropped),
            batch_size,
            ", ".join(f"{name} ({rows})" for name, rows in dropped.items()),
        )
    return TrainingData(kept, {name: p for name, p in split_prompts.items() if name in kept and p}, dropped)
