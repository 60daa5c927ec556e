"""The load dtypes st-prune accepts (``--dtype``, ``base.dtype``) and the ``from_pretrained`` kwargs for one.

Kept apart from ``st_prune.model.dtypes`` (which reads a checkpoint's config to resolve ``auto``, through
``st_prune.model.truncated_llm``) so that the loader can use these without the two modules importing each other.
"""

from __future__ import annotations

from typing import Any

from st_prune.errors import StPruneError

DTYPE_CHOICES: tuple[str, ...] = ("auto", "bfloat16", "float16", "float32")


def check_dtype_name(dtype: str, flag: str = "--dtype") -> str:
    if dtype not in DTYPE_CHOICES:
        raise StPruneError(f"{flag} {dtype!r} is not a load dtype; use one of {', '.join(DTYPE_CHOICES)}")
    return dtype


def model_kwargs_for(dtype: str | None) -> dict[str, Any]:
    """``model_kwargs`` for ``from_pretrained`` (through sentence-transformers) that load in ``dtype``."""
    import torch

    name = check_dtype_name(dtype or "auto")
    return {"dtype": "auto" if name == "auto" else getattr(torch, name)}
