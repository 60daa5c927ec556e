"""Training a pruned encoder with the paper's recipe on sentence-transformers' trainer (LoRA, InfoNCE), and the
optional distillation from a stronger variant.

``TrainingConfig`` and ``train_pruned`` are public API (``st_prune.training.TrainingConfig``); they live in
``st_prune.training.config`` (the settings, also the recipe's ``training:`` section and ``st-prune train``'s flags) and
``st_prune.training.trainer``, imported on first use so that ``import st_prune.training`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from st_prune.training.config import TrainingConfig
    from st_prune.training.trainer import train_encoder, train_pruned

__all__ = ["TrainingConfig", "train_encoder", "train_pruned"]


def __getattr__(name: str) -> Any:
    if name == "TrainingConfig":  # the settings need no torch (st_prune.training.config)
        return importlib.import_module("st_prune.training.config").TrainingConfig
    if name in __all__:
        return getattr(importlib.import_module("st_prune.training.trainer"), name)
    raise AttributeError(f"module 'st_prune.training.trainer' has no attribute {name!r}")
