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
    if size == 0:
        return f"{path.name} is empty (0 bytes)"
    from st_prune.util.safetensors_header import read_header

    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
        if len(prefix) < 8:
            return f"{path.name} is truncated ({size} bytes)"
        header_size = int.from_bytes(prefix, "little")
        if 8 + header_size > size:
            return f"{path.name} is truncated ({size:,} bytes)"
        end = max((entry["data_offsets"][1] for entry in read_header(path).values()), default=0)
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


def check_model_weights(folder: str | Path) -> None:
    """Refuse a model folder whose safetensors weights are empty or cut short (an interrupted copy or download),
    before transformers fails deep in its loader with a ``SafetensorError`` traceback. Checked: the folder's own
    ``*.safetensors`` files, the shards its index names, and those of the modules a sentence-transformers
    ``modules.json`` lists. Only headers and sizes are read."""
    from st_prune.errors import StPruneError

    folder = Path(folder)
    for path in _weight_files(folder):
        problem = safetensors_problem(path)
        if problem is not None:
            raise StPruneError(
                f"the model in {folder} is damaged or incomplete: {problem}; copy or download the model again "
                "(or re-run the st-prune command that wrote it)"
            )


def _weight_files(folder: Path) -> list[Path]:
    from st_prune.util.model_folder import modules_if_any

    # None, or not ours to judge: the loader says.
    folders = [folder] + [folder / entry["path"] for entry in modules_if_any(folder) or [] if entry.get("path")]
    files: set[Path] = set()
    for module in folders:
        files.update(module.glob("*.safetensors"))
        try:  # a sharded checkpoint: a shard that is missing altogether counts too
            index = json.loads((module / "model.safetensors.index.json").read_text(encoding="utf-8"))
            files.update(module / name for name in index["weight_map"].values())
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass
    return sorted(files)
