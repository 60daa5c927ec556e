"""The dtype a model is loaded in (``--dtype`` on prune/scan/train/run, ``base.dtype`` in recipes), what ``auto``
means for a given model, whether this machine can run it, and what dtype a saved folder really holds.

``auto`` keeps the checkpoint's own dtype: transformers 5 loads with ``dtype="auto"`` by default (a bf16 Llama-3
checkpoint loads in bfloat16; st-prune's dequantized GGUF folders are float32). transformers 5 takes ``dtype=``
(``torch_dtype=`` is its deprecated spelling). The exported weights keep the dtype the model was loaded in, so
this choice is also what users download; cards and the zoo index read it back from the saved safetensors files.

What this machine supports (refused up front, one line naming ``--dtype float32``):

- a CUDA GPU: float16 always; bfloat16 when ``torch.cuda.is_bf16_supported()`` (Ampere and newer);
- a CPU: bfloat16 always. torch has CPU kernels in bfloat16 for every op a decoder LLM uses, on every CPU:
  native on AVX512-BF16/AMX (``torch.cpu._is_avx512_bf16_supported()``), else computed through float32 inside
  each kernel, which is exact to bfloat16 rounding but slower than float32 (a warning says so). float16 loads,
  saves and runs inference on CPU, but is refused for training there: transformers' Trainer has no float16 on
  CPU (its ``fp16`` needs a GPU), and float16 weights trained without loss scaling under- and overflow.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from st_prune.errors import StPruneError

# The names live apart so the loader (st_prune.model.truncated_llm) can use them without importing this module, which
# imports the loader to read a checkpoint's config.
from st_prune.model.dtype_names import DTYPE_CHOICES, check_dtype_name

logger = logging.getLogger(__name__)

#: safetensors' dtype codes -> torch names (what cards say).
SAFETENSORS_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}


def checkpoint_dtype(source: str, gguf_file: str | None = None) -> str | None:
    """What ``auto`` loads ``source`` in, from its config alone (no weights read): ``None`` when the config does not
    say (transformers then takes the first floating tensor's dtype). A GGUF file is float32: st-prune loads GGUF
    models from the float32 folder it dequantizes them into (``st_prune.model.truncated_llm.dequantized_gguf_folder``)."""
    if gguf_file is not None or str(source).lower().endswith(".gguf"):
        return "float32"
    from st_prune.model.truncated_llm import load_base_config, resolve_source

    value = getattr(load_base_config(resolve_source(source)), "dtype", None)  # resolve_source: "model not found"
    if value is None:
        return None
    name = str(value).removeprefix("torch.")
    return name if name in DTYPE_CHOICES else None


def _machine() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_dtype_supported(dtype: str | None, *, training: bool, fix: str, what: str = "") -> None:
    """Refuse, in one line naming ``fix``, a dtype this machine cannot run (``training``: cannot train in).

    ``dtype`` is a concrete name (``auto`` resolved by the caller); ``None`` (unknown) and float32 always pass.
    ``what`` says where the dtype came from when ``auto`` resolved to it, e.g. "the checkpoint's dtype ".
    """
    if dtype in (None, "float32"):
        return
    import torch

    if _machine() == "cuda":
        if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise StPruneError(
                f"{what}bfloat16 needs a GPU with bfloat16 support and {torch.cuda.get_device_name(0)} has none; "
                f"load in float32 or float16 instead: {fix}"
            )
        return
    if dtype == "float16" and training:
        raise StPruneError(
            f"{what}float16 cannot be trained on CPU (transformers' Trainer has no float16 on CPU and float16 weights "
            f"need loss scaling); train in float32 or bfloat16: {fix}"
        )
    if dtype == "bfloat16" and not _cpu_has_native_bf16():
        logger.warning(
            "This CPU has no native bfloat16 (AVX512-BF16 or AMX): torch computes bfloat16 through float32, "
            "slower than float32 itself. Pass --dtype float32 for speed; bfloat16 halves memory and files."
        )


def _cpu_has_native_bf16() -> bool:
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool((probe and probe()) or (amx and amx()))
    except RuntimeError:  # pragma: no cover - a torch build without the probe
        return False


def saved_weights(folder: str | os.PathLike) -> dict[str, Any]:
    """The dtype and on-disk size of a model folder's weights, read from its safetensors files (headers only).

    ``{"dtype": "bfloat16", "bytes": 12345}``: ``dtype`` is the floating dtype holding most of the tensor bytes
    (``"bfloat16 + float32"``-style when several floating dtypes hold a tenth or more each); ``bytes`` is the
    size of the ``*.safetensors`` files on disk.
    """
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise StPruneError(f"{folder} holds no .safetensors files; export the model first")
    from st_prune.util.safetensors_header import data_bytes, tensors

    by_dtype: dict[str, int] = {}
    for _, entry in tensors(files):
        name = SAFETENSORS_NAMES.get(entry["dtype"])
        if name is not None:
            by_dtype[name] = by_dtype.get(name, 0) + data_bytes(entry)
    total = sum(by_dtype.values())
    ranked = sorted(by_dtype, key=lambda name: -by_dtype[name])
    shown = [name for name in ranked if by_dtype[name] >= 0.1 * total] or ranked[:1]
    return {"dtype": " + ".join(shown) if shown else "unknown", "bytes": sum(path.stat().st_size for path in files)}


def check_load_dtype(model: str, dtype: str | None, *, training: bool, fix: str) -> str | None:
    """``check_dtype_supported`` for loading ``model`` with ``dtype`` (``auto`` read from its config first);
    returns the concrete dtype (``None`` when ``auto`` and the config does not say)."""
    name = check_dtype_name(dtype or "auto")
    if name != "auto":
        check_dtype_supported(name, training=training, fix=fix)
        return name
    if _machine() == "cpu" and not training:
        return None  # a CPU loads and runs every dtype: no need to read the config to find out which
    concrete = checkpoint_dtype(model)
    check_dtype_supported(concrete, training=training, fix=fix, what="the checkpoint's own dtype (auto), ")
    return concrete
