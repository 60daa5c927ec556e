"""Packages only some features need: a missing one is one line naming the `pip install` that fixes it.

All of them are installed by `pip install st-prune`; they can still be missing from an environment assembled by
hand (e.g. `pip install --no-deps`) or removed later, and a library's own ImportError traceback (transformers'
"Please install torch and gguf>=0.10.0 ...") does not tell a user which command to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from st_prune.errors import StPruneError

#: import name -> the pip requirement that provides it (kept equal to pyproject.toml's by a test)
REQUIREMENTS: dict[str, str] = {
    "gguf": "gguf>=0.10",
    "matplotlib": "matplotlib>=3.8",
    "mteb": "mteb>=2.26,<3",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "onnx": "onnx",
    "nncf": "nncf",
}


class MissingDependency(StPruneError):
    """A package a feature needs is not installed."""


def install_hint(module: str) -> str:
    top = module.split(".")[0]
    return f'pip install "{REQUIREMENTS.get(top, top)}"'


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a one-line :class:`MissingDependency` naming ``purpose`` and the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing = getattr(error, "name", None) or module
        raise MissingDependency(
            f"{purpose} needs the {missing.split('.')[0]} package: run `{install_hint(missing)}`"
        ) from None
