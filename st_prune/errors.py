"""Errors that carry a one-line, user-facing message naming the fix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class StPruneError(ValueError):
    """Bad input or an unsupported model. The CLI prints the message alone and exits with status 2."""


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
