"""The export stage: the trained, merged encoder saved as a plain sentence-transformers folder, and what it costs.

The record (``work/<variant>/export.json``) holds the folder's weight bytes, parameters and tokens/s, measured on the
saved folder loaded back the way a user loads it (so the figure is the shipped model's, not the training object's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from st_prune.pipeline.stage import Stage, digest
from st_prune.pipeline.stages.prune import PRUNE
from st_prune.pipeline.stages.train import TRAIN, load_trained


def export_variant(model, folder: Path, *, model_name: str, texts: list[str]) -> dict[str, Any]:
    """Export ``model`` (LoRA attached: merged by ``export_model``) into ``folder``; tokens/s measured on ``texts``."""
    from st_prune.model.export import export_model, weight_bytes
    from st_prune.util.local_only import load_model_folder
    from st_prune.util.machine import machine_description, measure_tokens_per_second

    model.model_card_data.model_name = model_name
    # No card yet: the model folder's README.md is the card stage's alone (rendered from every stage's record).
    export_model(model, folder, overwrite=True, create_model_card=False)
    exported = load_model_folder(folder)
    return {
        "folder": folder.name,
        "weight_bytes": weight_bytes(folder),
        "tokens_per_second": round(measure_tokens_per_second(exported, texts), 1),
        "parameters": sum(parameter.numel() for parameter in exported.parameters()),
        "machine": machine_description(),
    }


class ExportStage(Stage):
    name = "export"
    record = "export.json"

    def key(self, recipe, variant, layers, folder) -> str:
        return digest("export", TRAIN.key(recipe, variant, layers), folder)

    def check_inputs(self, ctx, variant) -> None:
        ctx.folder.record(variant.name, PRUNE.record, stage="prune")

    def run(self, ctx, variant) -> dict[str, Any]:
        from st_prune.util.machine import speed_texts

        data = export_variant(
            load_trained(ctx, variant),
            ctx.export_dir(variant),
            texts=speed_texts(ctx.rows()),
            model_name=f"{ctx.recipe.base_short_name} L3Prune {variant.name}",
        )
        return ctx.folder.write_record(variant.name, self.record, data)


EXPORT = ExportStage()
