"""JSON and text files: read with one-line errors that name the fix, written atomically (never half a file)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def read_utf8(path: str | os.PathLike) -> str:
    """The text of ``path``; a file that is not UTF-8 is one ``StPruneError`` line naming the first bad byte, its
    offset and line, and the fix (a file saved as Latin-1 or Windows-1252 otherwise fails as a traceback)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise StPruneError(
            f"{path} is not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start:,} (line {line}) is not "
            f"valid UTF-8; re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > "
            f"{path.stem}.utf8{path.suffix}` for a Latin-1 file"
        ) from None


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


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` for a writer that takes a file name, renamed over ``path`` when the block ends.

    The file gets the umask's mode (0644 under umask 022), not mkstemp's private 0600: cards, indexes, curves and
    run records are read by other users and served from shared disks. When the block fails (a full disk, a
    file-size limit, Ctrl-C) the temporary file is removed and ``path`` is left as it was, never half written; an
    ``OSError`` that names no file is given ``path``, so its one-line message says what was being written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, umask_mode(directory=False))
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through ``atomic_path`` (creating the folder): all of it or nothing."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, data: Any, *, sort_keys: bool = True) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")
