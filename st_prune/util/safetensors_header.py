"""A safetensors file's header, read without torch or the tensor data: names, dtypes, shapes and byte ranges.

A safetensors file is an 8-byte little-endian header length, a JSON header (tensor name -> dtype, shape, data
offsets; plus ``__metadata__``) and the tensor bytes. Sizes, parameter counts and dtypes of a saved model come from
the header alone, which reads in microseconds however large the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def read_header(path: str | Path) -> dict[str, dict[str, Any]]:
    """Tensor name -> ``{"dtype": "BF16", "shape": [...], "data_offsets": [start, end]}`` (metadata left out).

    Raises OSError/ValueError for a file that is not whole; ``st_prune.util.file_integrity`` says which."""
    with Path(path).open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{Path(path).name} is shorter than a safetensors header")
        header = json.loads(handle.read(int.from_bytes(prefix, "little")))
    return {name: entry for name, entry in header.items() if name != "__metadata__"}


def tensors(files: Iterable[str | Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, entry)`` of every tensor in ``files``."""
    for path in files:
        yield from read_header(path).items()


def data_bytes(entry: dict[str, Any]) -> int:
    start, end = entry["data_offsets"]
    return end - start


def numel(entry: dict[str, Any]) -> int:
    return math.prod(entry["shape"])
