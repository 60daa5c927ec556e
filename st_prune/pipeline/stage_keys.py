"""What each stage of a recipe run depends on: one short key per stage, kept in the stage's marker.

A re-run of ``st-prune run`` redoes a stage when its key differs from the one in its marker. Each key hashes
the recipe settings the stage reads *and the key of the stage it builds on*, so a changed setting reaches
exactly the stages downstream of it: a new ``training.learning_rate`` re-runs train, export, trim, deploy,
evaluate and card and keeps the scan; a new evaluation task re-runs evaluate and card only; a new scan size
re-runs everything (the picks may move).

The keys are pure functions of the recipe and the variant's layer count, so ``--dry-run`` can tell which
stages a changed recipe would redo before any work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from st_prune.pipeline.runner import Recipe, VariantSpec

# Base-model fields that change the loaded model (id, short_name and layers only name or describe it).
_LOAD_FIELDS = ("model", "pooling", "max_seq_length", "dtype")
# Data fields that change the rows (description and names only go to the card).
_DATA_EXCLUDED = ("description", "names")


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _asdict(spec: Any) -> Any:
    return dataclasses.asdict(spec) if spec is not None else None


def scan_key(recipe: Recipe) -> str:
    base = {name: getattr(recipe.base, name, None) for name in _LOAD_FIELDS}
    data = {key: value for key, value in dataclasses.asdict(recipe.data).items() if key not in _DATA_EXCLUDED}
    return _hash("scan", base, dataclasses.asdict(recipe.scan), data, recipe.query_instruction)


def prune_key(recipe: Recipe, layers: int) -> str:
    return _hash("prune", scan_key(recipe), layers)


# Training fields that do not change the trained weights: how often a checkpoint is saved.
_TRAINING_EXCLUDED = ("save_steps",)


def _training_settings(recipe: Recipe, variant: VariantSpec) -> dict[str, Any]:
    return {key: value for key, value in dataclasses.asdict(recipe.training_for(variant)).items()
            if key not in _TRAINING_EXCLUDED}


def train_key(recipe: Recipe, variant: VariantSpec, layers: int) -> str:
    training = _training_settings(recipe, variant)
    teacher = recipe.teacher_of(variant)
    if teacher is None:
        return _hash("train", prune_key(recipe, layers), training)
    # A distilled student also depends on its teacher's training. The teacher is named by its spec, not its layer
    # count: its depth follows from the scan (in scan_key) and the spec, so the key stays a function of the recipe.
    distill = {key: value for key, value in dataclasses.asdict(recipe.distill).items() if key != "variants"}
    teacher_part = (dataclasses.asdict(teacher), _training_settings(recipe, teacher), scan_key(recipe))
    return _hash("train", prune_key(recipe, layers), training, distill, teacher_part)


def export_key(recipe: Recipe, variant: VariantSpec, layers: int, folder_name: str) -> str:
    return _hash("export", train_key(recipe, variant, layers), folder_name)


def trim_key(recipe: Recipe, variant: VariantSpec, layers: int, folder_name: str) -> str:
    return _hash("trim", export_key(recipe, variant, layers, folder_name), _asdict(recipe.trim))


def final_key(recipe: Recipe, variant: VariantSpec, layers: int, folder_name: str) -> str:
    """The key of the model folder as shipped: after the trim where the recipe trims, else after export."""
    if recipe.trims(variant):
        return trim_key(recipe, variant, layers, folder_name)
    return export_key(recipe, variant, layers, folder_name)


def deploy_key(recipe: Recipe, variant: VariantSpec, layers: int, folder_name: str) -> str:
    return _hash("deploy", final_key(recipe, variant, layers, folder_name), _asdict(recipe.deploy))


def evaluate_key(recipe: Recipe, variant: VariantSpec, layers: int, folder_name: str) -> str:
    return _hash("evaluate", final_key(recipe, variant, layers, folder_name), dataclasses.asdict(recipe.evaluation))


def card_key(recipe: Recipe, variant: VariantSpec, layers: int, folder_name: str) -> str:
    """Everything the card shows: the folder, its backend files, its scores, and the recipe's words about it."""
    deployed = deploy_key(recipe, variant, layers, folder_name) if recipe.deploys(variant) else None
    words = (recipe.description, dataclasses.asdict(recipe.card), recipe.base.id, recipe.base.short_name,
             recipe.data.description, recipe.data.names)
    return _hash("card", final_key(recipe, variant, layers, folder_name), deployed,
                 evaluate_key(recipe, variant, layers, folder_name), words)


#: stage -> key function taking (recipe, variant, layers, folder_name); scan takes the recipe alone.
VARIANT_KEYS = {
    "prune": lambda recipe, variant, layers, folder: prune_key(recipe, layers),
    "train": lambda recipe, variant, layers, folder: train_key(recipe, variant, layers),
    "export": export_key,
    "trim": trim_key,
    "deploy": deploy_key,
    "evaluate": evaluate_key,
    "card": card_key,
}
