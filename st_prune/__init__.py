"""st_prune: decoder LLMs -> small, fast sentence-transformers encoders (L3Prune, arXiv 2410.14578).

The public names are imported on first use (PEP 562), so that `import st_prune` and the `st-prune` command's
`--help` do not load torch and sentence-transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from st_prune.errors import StPruneError

# public name -> module that defines it
_LAZY = {
    "export_model": "st_prune.model.export",
    "L3Prune": "st_prune.l3prune.scan",
    "L3PruneResult": "st_prune.l3prune.scan",
    "TruncatedLLM": "st_prune.model.truncated_llm",
    "encoder_from_llm": "st_prune.model.truncated_llm",
    "shrink": "st_prune.l3prune.shrink",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from st_prune.l3prune.scan import L3Prune, L3PruneResult
    from st_prune.l3prune.shrink import shrink
    from st_prune.model.export import export_model
    from st_prune.model.truncated_llm import TruncatedLLM, encoder_from_llm

__all__ = ["L3Prune", "L3PruneResult", "StPruneError", "TruncatedLLM", "encoder_from_llm", "export_model", "shrink"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'st_prune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
