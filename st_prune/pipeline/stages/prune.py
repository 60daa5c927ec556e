"""The prune stage: how deep a variant is cut, and how many parameters that keeps (from the scan's record).

No model is loaded: the scan already counted the parameters of every depth, and the train stage builds the cut
encoder itself. The record is ``work/<variant>/prune.json``.
"""

from __future__ import annotations

from typing import Any


def prune_variant(scan: dict[str, Any], layers: int) -> dict[str, Any]:
    """The record of keeping ``layers`` of the ``scan["num_layers"]`` decoder layers (refused out of range)."""
    from st_prune.model import architectures
    architectures.layers_to_keep(scan["num_layers"], layers)
    return {"layers": layers, "num_layers": scan["num_layers"], "parameters": scan["parameters"][layers - 1],
            "parameters_full": scan["parameters_full"]}
