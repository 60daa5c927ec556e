"""A saved sentence-transformers model folder: its ``modules.json``, read and checked in one place for every verb
(publish, deploy, trim, export, the integrity check)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from st_prune.errors import StPruneError
from st_prune.util.files import read_json

MODULES_JSON = "modules.json"


def read_modules(folder: Path, *, fix: str) -> list[dict[str, Any]]:
    """``modules.json``'s entries (each a dict with a ``path``); missing or malformed: one line ending in ``fix``."""
    path = folder / MODULES_JSON
    if not path.is_file():
        raise StPruneError(f"{folder} is not a sentence-transformers model folder (no {MODULES_JSON}); {fix}")
    modules = read_json(path, fix=fix)
    if not (
        isinstance(modules, list)
        and modules
        and all(isinstance(module, dict) and isinstance(module.get("path"), str) for module in modules)
    ):
        raise StPruneError(f"{path} lists no modules; {fix}")
    return modules


def modules_if_any(folder: Path) -> list[dict[str, Any]] | None:
    """``modules.json``'s entries, or None where there is none or it cannot be read (the loader then says why)."""
    try:
        modules = json.loads((folder / MODULES_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return [module for module in modules if isinstance(module, dict)] if isinstance(modules, list) else None


def transformer_folder(folder: Path) -> Path:
    """The folder of the Transformer module (config, weights, tokenizer): its path in an ST folder, or ``folder``
    itself for a plain transformers folder."""
    for module in modules_if_any(folder) or []:
        if str(module.get("type", "")).endswith("Transformer") or module.get("idx") == 0:
            return folder / module.get("path", "")
    return folder


def check_model_folder(folder: str | os.PathLike, *, fix: str) -> tuple[Path, list[dict[str, Any]]]:
    """``folder`` as a Path and its modules, if it is a saved SentenceTransformer whose module folders all exist."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise StPruneError(f"{path} is not a folder; {fix}")
    modules = read_modules(path, fix=fix)
    for module in modules:
        if not (path / module["path"]).is_dir():
            raise StPruneError(f"module folder {module['path']!r} listed in {path / MODULES_JSON} is missing; {fix}")
    return path, modules
