"""The repository and a folder snapshot, shared by the ownership tests."""

from __future__ import annotations

from pathlib import Path

from paths import ROOT

REPO = ROOT


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (content) and folder (None) under ``folder``, hidden ones included."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() if path.is_file() else None
        for path in sorted(folder.rglob("*"))
    }
