"""The prune stage: how deep a variant is cut, and how many parameters that keeps (from the scan's record).

No model is loaded: the scan already counted the parameters of every depth, and the train stage builds the cut
encoder itself. The record is ``work/<variant>/prune.json``.
"""

from __future__ import annotations

from typing import Any

from st_prune.pipeline.stage import Stage, digest
from st_prune.pipeline.stages.scan import SCAN


def prune_variant(scan: dict[str, Any], layers: int) -> dict[str, Any]:
    """The record of keeping ``layers`` of the ``scan["num_layers"]`` decoder layers (refused out of range)."""
    from st_prune.model import architectures
    architectures.layers_to_keep(scan["num_layers"], layers)
    return {"layers": layers, "num_layers": scan["num_layers"], "parameters": scan["parameters"][layers - 1],
            "parameters_full": scan["parameters_full"]}


class PruneStage(Stage):
    name = "prune"
    record = "prune.json"

    def key(self, recipe, variant, layers, folder=None) -> str:
        return digest("prune", SCAN.key(recipe), layers)

    def check_inputs(self, ctx, variant) -> None:
        ctx.folder.scan(required=True)

    def run(self, ctx, variant) -> dict[str, Any]:
        layers = ctx.layers_of(variant)
        assert layers is not None
        return ctx.folder.write_record(variant.name, self.record, prune_variant(ctx.folder.scan(required=True), layers))


PRUNE = PruneStage()
