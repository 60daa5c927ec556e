"""Folders assembled beside their destination and renamed into place when complete.

A staging folder is named ``.<destination name>.st-prune-staging-<random>`` and holds a marker file naming the
process that writes it. A process killed mid-write (SIGKILL, out of memory, power loss) cannot clean up, so the
next write to the same destination removes that destination's stale staging folders: only those with the exact
prefix *and* the marker (so only what st-prune wrote) *and* whose writer is gone (so a concurrent writer's
folder is left alone). The marker is removed just before the rename and never reaches the final folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from st_prune.util.files import umask_mode

logger = logging.getLogger(__name__)

MARKER = ".st-prune-staging"
# A writer on another machine (shared disk) cannot be asked whether it still runs; after this long it is gone.
FOREIGN_STALE_SECONDS = 24 * 3600


# `st-prune deploy` before the record of what st-prune wrote staged inside the model folder, under this name
# (tempfile.mkdtemp's 8 random characters): a killed deploy left it there, and it has no marker.
LEGACY_DEPLOY_STAGING = re.compile(r"\.deploy-staging-[a-z0-9_]{8}")


def staging_prefix(destination: Path) -> str:
    return f".{destination.name}.st-prune-staging-"


def is_staging_name(name: str) -> bool:
    """A staging folder's name (never part of a finished folder: publish skips it)."""
    return (name.startswith(".") and ".st-prune-staging-" in name) or bool(LEGACY_DEPLOY_STAGING.fullmatch(name))


def remove_legacy_deploy_staging(folder: str | os.PathLike) -> list[Path]:
    """Remove the ``.deploy-staging-*`` folders an older, killed ``st-prune deploy`` left inside ``folder``."""
    removed = []
    for candidate in Path(folder).glob(".deploy-staging-*"):
        if LEGACY_DEPLOY_STAGING.fullmatch(candidate.name) and candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
            logger.info("Removed %s, left by an interrupted deploy", candidate)
            removed.append(candidate)
    return removed


def new_staging_dir(destination: str | os.PathLike) -> Path:
    """An empty, marked folder beside ``destination`` (same filesystem, so the final rename is atomic)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(destination)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(destination), dir=destination.parent))
    (staging / MARKER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}), encoding="utf-8")
    return staging


def commit_staging(staging: Path, destination: str | os.PathLike) -> None:
    """Rename the complete ``staging`` folder to ``destination`` (absent or empty), with the umask's modes.

    mkdtemp creates folders 0700 and transformers writes its weight shards 0600 (through a temporary file); a
    model folder is meant to be shared and served, so every folder and file in it gets the mode any the user
    creates gets (0755/0644 under umask 022).
    """
    (staging / MARKER).unlink(missing_ok=True)
    apply_umask_modes(staging)
    os.replace(staging, destination)


def apply_umask_modes(staging: Path) -> None:
    """Give every folder and file under ``staging`` (and itself) the mode the umask gives new ones."""
    folder_mode, file_mode = umask_mode(directory=True), umask_mode(directory=False)
    for root, folders, files in os.walk(staging):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):  # chmod would change a link's target
                os.chmod(os.path.join(root, name), file_mode)
        for name in folders:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), folder_mode)
    os.chmod(staging, folder_mode)


def remove_stale_staging(destination: str | os.PathLike) -> list[Path]:
    """Remove the staging folders a killed writer left beside ``destination``; the removed paths."""
    destination = Path(destination)
    prefix = staging_prefix(destination)
    removed = []
    try:
        candidates = [path for path in destination.parent.iterdir() if path.name.startswith(prefix)]
    except OSError:  # no parent folder yet: nothing left behind
        return removed
    for candidate in candidates:
        if candidate.is_symlink() or not candidate.is_dir() or not _writer_is_gone(candidate / MARKER):
            continue
        shutil.rmtree(candidate, ignore_errors=True)
        logger.info("Removed %s, left by an interrupted write of %s", candidate, destination)
        removed.append(candidate)
    return removed


def _writer_is_gone(marker: Path) -> bool:
    try:
        writer = json.loads(marker.read_text(encoding="utf-8"))
        host, pid = writer["host"], int(writer["pid"])
        age = time.time() - marker.stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):  # no marker (not ours) or an unreadable one: keep it
        return False
    if host != socket.gethostname():
        return age > FOREIGN_STALE_SECONDS
    if pid == os.getpid():
        return False  # this process is writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's process
        return False
    return False
