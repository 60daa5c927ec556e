"""Can st-prune write where it was asked to? Checked before the long work, so a bad destination costs seconds.

Without this, an unwritable ``--output`` (no permission, a read-only disk, a file where a folder should be)
surfaced as a ``PermissionError`` traceback after minutes of scanning or training. The check creates nothing
the user would see: it probes the nearest existing folder with a temporary file that is removed at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from st_prune.errors import StPruneError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def check_writable_folder(folder: str | os.PathLike, flag: str = "--output") -> None:
    """``folder`` (existing or to be created) can be created and written; else one line naming ``flag``."""
    folder = Path(folder).expanduser()
    existing = _nearest_existing(folder.absolute())
    if not existing.is_dir():
        raise StPruneError(f"{flag} {folder}: {existing} is a file, not a folder; choose another {flag}")
    _probe(existing, folder, flag)


def check_writable_file(path: str | os.PathLike, flag: str = "--output") -> None:
    """A file can be written at ``path`` (an existing file is replaced); else one line naming ``flag``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise StPruneError(f"{flag} {path} is a folder; give a file name, e.g. {flag} {path / 'scan.json'}")
    existing = _nearest_existing(path.absolute().parent)
    if not existing.is_dir():
        raise StPruneError(f"{flag} {path}: {existing} is a file, not a folder; choose another {flag}")
    _probe(existing, path, flag)


def _probe(folder: Path, target: Path, flag: str) -> None:
    # os.access says yes to root even on read-only mounts; creating a file is the only sure answer.
    try:
        handle, name = tempfile.mkstemp(prefix=".st-prune-write-test.", dir=folder)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise StPruneError(f"cannot write {target} ({reason} in {folder}); choose a {flag} you can write to") from None
    os.close(handle)
    os.unlink(name)
