"""JSON and text files: read with one-line errors that name the fix, written atomically (never half a file)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from st_prune.errors import StPruneError


def read_json(path: str | os.PathLike, *, fix: str) -> Any:
    """The JSON in ``path``; a missing, unreadable or malformed file is one ``StPruneError`` line ending in ``fix``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StPruneError(f"{path} not found; {fix}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StPruneError(f"{path} is unreadable ({type(error).__name__}); {fix}") from None
    except json.JSONDecodeError as error:
        raise StPruneError(f"{path} is not valid JSON ({error.msg}, line {error.lineno}); {fix}") from None


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask can only set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def umask_mode(*, directory: bool) -> int:
    """The mode ``open``/``mkdir`` would give a new file or folder: 0644/0755 under umask 022."""
    return (0o777 if directory else 0o666) & ~current_umask()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path`` (creating the folder).

    The file gets the umask's mode (0644 under umask 022), not mkstemp's private 0600: cards, indexes and run
    records are read by other users and served from shared disks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(handle, umask_mode(directory=False))
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any, *, sort_keys: bool = True) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")
