"""One writer per run folder: ``st-prune run`` holds ``DIR/.st-prune-run.lock`` from its first write to its exit.

Two runs on the same folder would interleave their stages and report each other's files, so the second one is
refused in one line naming the first one's process and machine. The lock file is created with ``O_EXCL`` (exactly
one process can create it) and holds its owner: host, pid, and on Linux the boot and the process's start time, so
that a lock left by a killed run (SIGKILL, out of memory, a reboot) is told apart from a live one, even when its
pid now belongs to another process, and taken over. A lock written on another machine (a shared disk) cannot be
checked from here: it is respected, and the message says how to remove it if that machine is gone.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from st_prune.errors import StPruneError

logger = logging.getLogger(__name__)

LOCK_NAME = ".st-prune-run.lock"


@contextmanager
def hold_run_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Create ``folder`` if needed and hold its lock while the block runs (released on errors and Ctrl-C too)."""
    path, owner = _acquire(Path(folder))
    try:
        yield path
    finally:
        # Only our own lock: if it was deleted by hand and another run took the folder, that run's lock stays.
        if _read(path) == owner:
            path.unlink(missing_ok=True)


def _acquire(folder: Path) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    owner = json.dumps(_this_process())
    for _ in range(20):
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            text = _read(path)
            if text is None:  # removed meanwhile by the run that held it
                continue
            holder = _parse(text)
            if holder is None:  # created an instant ago and not written yet, or damaged: look again shortly
                time.sleep(0.1)
                continue
            if not _is_gone(holder):
                raise StPruneError(_in_use(folder, path, holder)) from None
            _remove_stale(path, text)
            logger.info(
                "%s: took over the lock left by process %s, which is no longer running", folder, holder.get("pid")
            )
            continue
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(owner)
        except BaseException:  # a full disk, Ctrl-C: an empty lock would block the folder until deleted by hand
            path.unlink(missing_ok=True)
            raise
        return path, owner
    raise StPruneError(
        f"{path} holds no owner that can be read: if no st-prune run uses {folder}, delete it and run again"
    )


def _this_process() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "boot_id": _boot_id(),
        "start_ticks": _start_ticks(os.getpid()),
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _is_gone(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote ``holder`` has ended (never concluded for another machine's process)."""
    if holder.get("host") != socket.gethostname():
        return False
    if holder.get("boot_id") and holder["boot_id"] != _boot_id():
        return True  # this machine restarted since
    pid = holder["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    # Alive, unless the pid was reused (this process's own included): the process with that pid started at
    # another time than the writer. Without the start times (not Linux) a live pid is taken for the writer.
    ticks = holder.get("start_ticks")
    return ticks is not None and _start_ticks(pid) not in (None, ticks)


def _remove_stale(path: Path, text: str) -> None:
    """Remove a dead writer's lock without removing a live one that replaced it an instant ago (two runs that found
    the same stale lock): the file is moved aside first, and put back if it is not the stale one after all."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # the other run removed it first
        return
    if _read(aside) != text:
        try:
            os.link(aside, path)  # fails if yet another run created the lock meanwhile; that one holds the folder
        except OSError:
            pass
    aside.unlink(missing_ok=True)


def _in_use(folder: Path, path: Path, holder: dict[str, Any]) -> str:
    who = f"process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
    if holder.get("host") == socket.gethostname():
        return f"{folder} is in use by another st-prune run ({who}): wait for it to end, or stop it, and run again"
    return (
        f"{folder} is in use by an st-prune run on another machine ({who}); if that machine is gone, delete "
        f"{path} and run again"
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""


def _parse(text: str | None) -> dict[str, Any] | None:
    try:
        holder = json.loads(text or "")
    except json.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux
        return None


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); with the pid, it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name before ")" may hold spaces
    except (OSError, IndexError, ValueError):
        return None
