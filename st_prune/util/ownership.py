"""What st-prune wrote: the one rule behind every file it replaces or removes.

st-prune replaces or removes a file only if st-prune wrote it and it is still as st-prune wrote it. A file or folder
the user made, or one of st-prune's files the user has edited since, is never replaced or removed: the command stops
first with one line naming the fix.

The record: every folder st-prune writes output into holds ``.st-prune-files.json``, listing what st-prune wrote
there (paths relative to the folder): each file with the verb that wrote it, its size, modification time and sha256,
and the sub-folders st-prune created. A listed file is st-prune's while its size matches and its modification time or
its sha256 does (a copy with a new time still counts, an edit does not). A new folder gets its record inside the
staging folder before the rename that puts it in place, so a complete folder never lacks it; files installed into an
existing folder are recorded before they are moved in, so a kill part-way leaves only records of files not yet there
(which count for nothing).

Writers use three calls: ``check_replace`` (before any long work and again just before writing), ``install`` (a
complete staging folder into its destination) and ``write_text``/``write_file`` (one file). ``remove_owned`` removes
what st-prune wrote and nothing else (the folders it created, once empty). Files written by an st-prune from before the
record are recognised by writer-specific proofs (``adopt``), e.g. a zoo index that is exactly what st-prune renders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from st_prune.errors import StPruneError

MANIFEST = ".st-prune-files.json"
ABOUT = (
    "The files st-prune wrote in this folder; st-prune replaces or removes only these, and only while they are "
    "unchanged. Not part of the model: safe to delete (st-prune then treats every file here as yours)."
)
_CHUNK = 1 << 20  # bytes read at a time when hashing

Legacy = Callable[[Path], bool]  # writer-specific proof for files an older st-prune wrote without a record


# ------------------------------------------------------------------------------------------------ the record
def read_record(folder: str | os.PathLike) -> dict[str, Any]:
    """``{"files": {relative: entry}, "dirs": [relative, ...]}`` of ``folder``; empty when absent.

    A damaged or foreign record counts as empty: nothing in the folder is then st-prune's (the safe reading)."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {"files": {}, "dirs": []}
    files = data.get("files") if isinstance(data, dict) else None
    dirs = data.get("dirs") if isinstance(data, dict) else None
    return {
        "files": {name: entry for name, entry in (files or {}).items() if isinstance(entry, dict)},
        "dirs": [name for name in (dirs or []) if isinstance(name, str)],
    }


def has_record(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def _write_record(folder: Path, record: dict[str, Any], pending: Iterable[str] = ()) -> None:
    """Write ``record`` atomically; ``pending``: files about to be moved in (kept though not there yet)."""
    from st_prune.util.files import write_json_atomic

    # Records of files that are gone (removed, rotated away) say nothing: drop them so the record stays small.
    pending = set(pending)
    files = {
        name: entry for name, entry in record["files"].items() if name in pending or os.path.lexists(folder / name)
    }
    dirs = sorted(
        {
            name
            for name in record["dirs"]
            if name == "." or (folder / name).is_dir() or any(p.startswith(name + "/") for p in pending)
        }
    )
    if not files and not dirs:
        (folder / MANIFEST).unlink(missing_ok=True)
        return
    write_json_atomic(folder / MANIFEST, {"about": ABOUT, "files": dict(sorted(files.items())), "dirs": dirs})


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One record update at a time per folder (two st-prune processes writing into one folder)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): updates are still atomic, a race can only forget a file (safe)
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(path: Path, by: str, *, digest: bool) -> dict[str, Any]:
    status = path.lstat()
    entry: dict[str, Any] = {"by": by, "size": status.st_size, "mtime_ns": status.st_mtime_ns}
    if digest:
        entry["sha256"] = _sha256(path)
    return entry


def _unchanged(path: Path, entry: dict[str, Any]) -> bool:
    try:
        status = path.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(status.st_mode) or status.st_size != entry.get("size"):
        return False  # a link or folder in its place, or other content
    if status.st_mtime_ns == entry.get("mtime_ns"):
        return True
    return bool(entry.get("sha256")) and _sha256(path) == entry["sha256"]  # copied or touched: same bytes?


def record(
    folder: str | os.PathLike, relatives: Iterable[str], *, by: str, digest: bool = True, dirs: Iterable[str] = ()
) -> None:
    """Record ``relatives`` (files under ``folder``, as they are now) as written by st-prune ``by``, and ``dirs`` as
    folders it created. ``digest=False`` skips the sha256 (checkpoints: large, and never copied around)."""
    folder = Path(folder)
    with _locked(folder):
        current = read_record(folder)
        for relative in relatives:
            current["files"][relative] = _entry(folder / relative, by, digest=digest)
        current["dirs"] = [*current["dirs"], *dirs]
        _write_record(folder, current)


def adopt(
    folder: str | os.PathLike, relatives: Iterable[str], *, by: str, legacy: Legacy, digest: bool = True
) -> list[str]:
    """Record those of ``relatives`` that ``legacy`` proves an older st-prune wrote (before it kept this record);
    the adopted names. Files already recorded are left as they are."""
    folder = Path(folder)
    listed = read_record(folder)["files"]
    found = [
        name
        for name in relatives
        if name not in listed
        and (folder / name).is_file()
        and not (folder / name).is_symlink()
        and legacy(folder / name)
    ]
    if found:
        record(folder, found, by=by, digest=digest)
        # The sub-folders holding these files and nothing else were made by that st-prune too.
        theirs = foreign(folder)
        holders = {part for name in found for part in _parents(name)}
        record(
            folder,
            [],
            by=by,
            dirs=[
                name for name in holders if not any(other == name or other.startswith(name + "/") for other in theirs)
            ],
        )
    return found


def _parents(relative: str) -> list[str]:
    parts = Path(relative).parts[:-1]
    return ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]


def record_tree(folder: str | os.PathLike, relative: str, *, by: str, digest: bool = True) -> None:
    """Record every file and folder under ``folder/relative`` (a folder st-prune just wrote whole)."""
    folder = Path(folder)
    files, dirs = _walk(folder / relative, folder)
    record(folder, files, by=by, digest=digest, dirs=[relative, *dirs])


def _walk(top: Path, base: Path) -> tuple[list[str], list[str]]:
    """Files and folders under ``top`` (not following links), relative to ``base``; the record file left out."""
    files, dirs = [], []
    for root, folders, names in os.walk(top):
        for name in folders:
            dirs.append((Path(root) / name).relative_to(base).as_posix())
        for name in names:
            path = Path(root) / name
            if name != MANIFEST or path.parent != base:
                files.append(path.relative_to(base).as_posix())
    return sorted(files), sorted(dirs)


# ------------------------------------------------------------------------------------------------ the question
def owner(
    folder: str | os.PathLike, relative: str, *, legacy: Legacy | None = None, recorded: dict[str, Any] | None = None
) -> str | None:
    """The verb that wrote ``folder/relative`` if it is st-prune's and unchanged, else None.

    ``legacy`` decides for a file the record does not list (written by an st-prune from before the record);
    ``recorded``: the folder's record, when the caller has read it already."""
    folder = Path(folder)
    entry = (recorded or read_record(folder))["files"].get(relative)
    if entry is not None and _unchanged(folder / relative, entry):
        return str(entry.get("by", "st-prune"))
    if entry is None and legacy is not None and (folder / relative).is_file() and legacy(folder / relative):
        return "st-prune"
    return None


def check_replace(
    folder: str | os.PathLike,
    relative: str,
    *,
    by: str,
    overwrite: bool = False,
    legacy: Legacy | None = None,
    fix: str,
) -> None:
    """May st-prune ``by`` write ``folder/relative``? Yes when nothing is there, or st-prune's own unchanged file that
    ``by`` itself wrote (a re-run) or that ``overwrite`` allows replacing; else one ``StPruneError`` line ending
    in ``fix``."""
    path = Path(folder) / relative
    if not os.path.lexists(path):
        return
    writer = owner(folder, relative, legacy=legacy)
    if writer is not None and (overwrite or writer in (by, "st-prune")):
        return
    if writer is not None:
        raise StPruneError(
            f"{path} was written by st-prune {writer}, not {by}, and is not replaced without --overwrite; {fix}"
        )
    listed = relative in read_record(folder)["files"]
    why = "was changed since st-prune wrote it" if listed else "was not written by st-prune"
    raise StPruneError(f"{path} exists and {why}, so it is never replaced; {fix}")


def foreign(folder: str | os.PathLike, *, legacy: Legacy | None = None) -> list[str]:
    """What ``folder`` holds that st-prune did not write: files (and empty folders) not recorded, or changed since."""
    folder = Path(folder)
    current = read_record(folder)
    files, dirs = _walk(folder, folder)
    found = [name for name in files if owner(folder, name, legacy=legacy, recorded=current) is None]
    holding = {str(Path(name).parent.as_posix()) for name in files}
    found += [
        name
        for name in dirs
        if name not in current["dirs"] and not any(other == name or other.startswith(name + "/") for other in holding)
    ]
    return sorted(found)


# ------------------------------------------------------------------------------------------------ the writers
def remove_owned(
    folder: str | os.PathLike, *, under: Iterable[str] = ("",), root: bool = False, legacy: Legacy | None = None
) -> list[str]:
    """Remove what st-prune wrote in ``folder`` (only under the ``under`` sub-paths; "" is all), and the folders it
    created once empty; ``root`` also removes ``folder`` itself if st-prune created it and it is empty now.

    Returns what is left there that st-prune did not write (it stays)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefixes = tuple(under)
    with _locked(folder):
        current = read_record(folder)
        names = set(current["files"])
        if legacy is not None:
            names |= {name for name in _walk(folder, folder)[0] if name not in current["files"]}
        for name in sorted(names):
            if _under(name, prefixes) and owner(folder, name, legacy=legacy, recorded=current) is not None:
                (folder / name).unlink()
                current["files"].pop(name, None)
        for name in sorted(current["dirs"], key=lambda d: d.count("/"), reverse=True):
            if name != "." and _under(name, prefixes):
                try:
                    (folder / name).rmdir()  # only if empty: a folder holding the user's files stays
                except OSError:
                    pass
        _write_record(folder, current)
    if root and "." in current["dirs"] and [path.name for path in folder.iterdir()] == [MANIFEST]:
        (folder / MANIFEST).unlink()
        folder.rmdir()
        return []
    return foreign(folder)


def _under(relative: str, prefixes: Iterable[str]) -> bool:
    """``relative`` is one of ``prefixes`` or lies under one ("" is the whole folder)."""
    return any(not prefix or relative == prefix or relative.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


def make_folder(folder: str | os.PathLike, *, by: str) -> Path:
    """``folder``, created (and recorded as st-prune's, so ``remove_owned(root=True)`` may remove it) if absent."""
    folder = Path(folder)
    if folder.is_dir():
        return folder
    folder.mkdir(parents=True)
    record(folder, [], by=by, dirs=["."])
    return folder


def write_text(
    folder: str | os.PathLike,
    relative: str,
    text: str,
    *,
    by: str,
    overwrite: bool = False,
    legacy: Legacy | None = None,
    fix: str,
) -> Path:
    """Write ``folder/relative`` atomically and record it, after ``check_replace``."""
    return write_file(
        folder,
        relative,
        lambda path: path.write_text(text, encoding="utf-8"),
        by=by,
        overwrite=overwrite,
        legacy=legacy,
        fix=fix,
    )


def write_file(
    folder: str | os.PathLike,
    relative: str,
    produce: Callable[[Path], Any],
    *,
    by: str,
    overwrite: bool = False,
    legacy: Legacy | None = None,
    fix: str,
) -> Path:
    """``produce(temporary)`` writes the content, which is then renamed to ``folder/relative`` and recorded
    (``st_prune.util.files.atomic_path``: all of it or nothing), after ``check_replace``."""
    from st_prune.util.files import atomic_path

    folder = Path(folder)
    check_replace(folder, relative, by=by, overwrite=overwrite, legacy=legacy, fix=fix)
    with atomic_path(folder / relative) as temporary:
        try:
            produce(temporary)
        except OSError as error:  # a writer that stages its own temporary file: name the file it was writing
            if error.filename and Path(error.filename).name.startswith(f".{Path(relative).name}."):
                error.filename = None
            raise
        check_replace(folder, relative, by=by, overwrite=overwrite, legacy=legacy, fix=fix)  # nothing came meanwhile
    record(folder, [relative], by=by)
    return folder / relative


def install(
    staging: Path, destination: Path, *, by: str, clear: Iterable[str] = (), overwrite: bool = False, fix: str
) -> None:
    """Put the files of the complete ``staging`` folder (``st_prune.util.staging``) into ``destination`` and record them.

    A new (or empty) destination is the staging folder renamed, its record written inside it first. Into an
    existing one: nothing is touched until every staged file is known to land on a free path or on st-prune's own
    file that may be replaced (``check_replace``; anything under the ``clear`` sub-paths, "" for all, may be);
    then st-prune's files under ``clear`` are removed (the user's stay), the new files recorded and moved in.
    """
    from st_prune.util.staging import MARKER, apply_umask_modes, commit_staging

    clear = tuple(clear)
    files, dirs = _walk(staging, staging)
    files = [name for name in files if name not in (MARKER, MANIFEST)]
    if not destination.exists() or (destination.is_dir() and not any(destination.iterdir())):
        (staging / MANIFEST).unlink(missing_ok=True)  # a copied folder's record describes other files
        apply_umask_modes(staging)
        record(staging, files, by=by, dirs=dirs)
        commit_staging(staging, destination)
        return
    for name in files:
        _check_parents(destination, name, fix)
        check_replace(destination, name, by=by, overwrite=overwrite or _under(name, clear), fix=fix)
    if clear:
        remove_owned(destination, under=clear)
    apply_umask_modes(staging)
    new_dirs = [name for name in dirs if not (destination / name).is_dir()]
    with _locked(destination):
        current = read_record(destination)
        for name in files:  # a rename keeps size and time: the entry made here describes the file moved in
            current["files"][name] = _entry(staging / name, by, digest=True)
        current["dirs"] = [*current["dirs"], *new_dirs]
        _write_record(destination, current, pending=files)
    for name in files:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, destination / name)
    shutil.rmtree(staging, ignore_errors=True)


def _check_parents(destination: Path, relative: str, fix: str) -> None:
    """Every folder on the way to ``relative`` is absent or a real folder (a file or link there is not replaced)."""
    parts = Path(relative).parts[:-1]
    for depth in range(1, len(parts) + 1):
        path = destination.joinpath(*parts[:depth])
        if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
            raise StPruneError(f"{path} is in the way of st-prune's {relative} and is never replaced; {fix}")
