"""The st_prune under test, for the interrupt tests' subprocesses too."""

from __future__ import annotations

from pathlib import Path

import st_prune

SOURCE = Path(st_prune.__file__).resolve().parent.parent  # the st_prune under test, for the subprocess too
