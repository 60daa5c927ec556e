"""Cheap "is this file whole?" checks for what a kill in the middle of a checkpoint save leaves behind.

Each returns None for a complete file, else a few words saying what is wrong. Nothing is loaded: only headers
and sizes are read, so checking every checkpoint of a large model takes milliseconds.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path


def json_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"no {path.name}"
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return f"{path.name} is incomplete"
    return None


def safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header and the tensor bytes the header accounts for."""
    if not path.is_file():
        return f"no {path.name}"
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return f"{path.name} is truncated ({size} bytes)"
            header_size = int.from_bytes(prefix, "little")
            if 8 + header_size > size:
                return f"{path.name} is truncated ({size:,} bytes)"
            header = json.loads(handle.read(header_size))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError):
        return f"{path.name} has a damaged header"
    if 8 + header_size + end != size:
        return f"{path.name} is truncated ({size:,} of {8 + header_size + end:,} bytes)"
    return None


def torch_zip_problem(path: Path) -> str | None:
    """``torch.save`` writes a zip archive; a cut-short one lacks the directory at its end."""
    if not path.is_file():
        return f"no {path.name}"
    if not zipfile.is_zipfile(path):
        return f"{path.name} is truncated"
    return None
