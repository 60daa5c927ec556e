"""The prune stage: how deep a variant is cut, and how many parameters that keeps (from the scan's record).

No model is loaded: the scan already counted the parameters of every depth, and the train stage builds the cut
encoder itself. The record is ``work/<variant>/prune.json``.
"""

from __future__ import annotations

from typing import Any

from st_prune.pipeline.stage import Stage, digest
from st_prune.pipeline.stages.scan import SCAN


def prune_variant(scan: dict[str, Any], layers: int, width: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of keeping ``layers`` of the ``scan["num_layers"]`` decoder layers (refused out of range).

    ``width`` (``mlp_keep``, the base's ``hidden_size`` and ``intermediate_size``) adds a width cut (issue 25.4):
    every kept layer keeps ``round(mlp_keep * intermediate_size)`` channels of its gated MLP, each worth three
    ``hidden_size`` weight vectors (a row of gate_proj and up_proj, a column of down_proj)."""
    from st_prune.model import architectures

    architectures.layers_to_keep(scan["num_layers"], layers)
    record = {
        "layers": layers,
        "num_layers": scan["num_layers"],
        "parameters": scan["parameters"][layers - 1],
        "parameters_full": scan["parameters_full"],
    }
    if width is not None:
        original = width["intermediate_size"]
        kept = max(1, round(width["mlp_keep"] * original))
        record["parameters"] -= layers * 3 * width["hidden_size"] * (original - kept)
        record["width"] = {
            "mlp_keep": width["mlp_keep"],
            "intermediate_size": kept,
            "original_intermediate_size": original,
        }
    return record


class PruneStage(Stage):
    name = "prune"
    record = "prune.json"

    def key(self, recipe, variant, layers, folder=None) -> str:
        mlp_keep = recipe.mlp_keep_of(variant) if variant is not None else 1.0
        if mlp_keep != 1:  # a width cut (issue 25.4); full width hashes as before, so earlier runs stay done
            return digest("prune", SCAN.key(recipe), layers, {"mlp_keep": mlp_keep})
        return digest("prune", SCAN.key(recipe), layers)

    def check_inputs(self, ctx, variant) -> None:
        ctx.folder.scan(required=True)

    def describe(self, ctx, variant, extra: str = "") -> str:
        keep = ctx.recipe.mlp_keep_of(variant)
        return super().describe(ctx, variant, (f", MLP width {keep:g}" if keep < 1 else "") + extra)

    def run(self, ctx, variant) -> dict[str, Any]:
        layers = ctx.layers_of(variant)
        assert layers is not None
        record = prune_variant(ctx.folder.scan(required=True), layers, ctx.width_plan(variant))
        return ctx.folder.write_record(variant.name, self.record, record)


PRUNE = PruneStage()
