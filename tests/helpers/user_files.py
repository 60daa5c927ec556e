"""A folder of the user's own files and its snapshot, for the --overwrite safety tests."""

from __future__ import annotations

from pathlib import Path


def _user_files(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("years of work")
    (folder / "notes").mkdir(exist_ok=True)
    (folder / "notes" / "todo.txt").write_text("finish chapter 3")
    return _snapshot(folder)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): path.read_text() for path in sorted(folder.rglob("*")) if path.is_file()}
