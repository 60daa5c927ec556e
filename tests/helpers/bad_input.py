"""What a killed or refused write may leave behind, shared by the bad-input tests of every tier."""

from __future__ import annotations

from pathlib import Path


def _left_in(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}
