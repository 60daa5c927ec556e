"""The prune stage: how deep a variant is cut, and how many parameters that keeps (from the scan's record).

No model is loaded: the scan already counted the parameters of every depth, and the train stage builds the cut
encoder itself. The record is ``work/<variant>/prune.json``.
"""

from __future__ import annotations

from typing import Any


def prune_variant(scan: dict[str, Any], layers: int, width: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of keeping ``layers`` of the ``scan["num_layers"]`` decoder layers (refused out of range).

    ``width`` (``mlp_keep``, the base's ``hidden_size`` and ``intermediate_size``) adds a width cut: every kept
    layer keeps ``round(mlp_keep * intermediate_size)`` channels of its gated MLP, each worth three
    ``hidden_size`` weight vectors (a row of gate_proj and up_proj, a column of down_proj)."""
    from st_prune.model import architectures
    architectures.layers_to_keep(scan["num_layers"], layers)
    record = {"layers": layers, "num_layers": scan["num_layers"], "parameters": scan["parameters"][layers - 1],
              "parameters_full": scan["parameters_full"]}
    if width is not None:
        original = width["intermediate_size"]
        kept = max(1, round(width["mlp_keep"] * original))
        record["parameters"] -= layers * 3 * width["hidden_size"] * (original - kept)
        record["width"] = {"mlp_keep": width["mlp_keep"], "intermediate_size": kept,
                           "original_intermediate_size": original}
    return record
