"""The card stage: ``README.md`` of the model folder, rendered from the stage records (``st_prune.card.render``), with
the L3Prune curve copied beside it. It is the only stage that writes the folder's README.md. Its marker records the
repo id the card was rendered for (publish checks it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from st_prune.pipeline.stage import Stage, digest
from st_prune.pipeline.stages.deploy import DEPLOY
from st_prune.pipeline.stages.evaluate import EVALUATE
from st_prune.pipeline.stages.export import EXPORT
from st_prune.pipeline.stages.prune import PRUNE
from st_prune.pipeline.stages.train import TRAIN
from st_prune.pipeline.stages.trim import TRIM, final_key


def card_variant(recipe: Any, variant: Any, *, curve: Path, **inputs: Any) -> dict[str, Any]:
    """Write the card of ``inputs["folder"]``; ``inputs`` are ``card_context``'s (``card_inputs`` reads them)."""
    from st_prune.card.render import card_context, write_card

    write_card(inputs["folder"], card_context(recipe, variant, **inputs), curve)
    return {"repo_id": inputs["repo_id"]}


def card_inputs(ctx, variant) -> dict[str, Any]:
    """``st_prune.card.render.card_context``'s inputs beside the recipe and variant, read from the run folder: the
    records of prune, train and export always, trim where the recipe trims, eval and deploy where they ran."""
    from st_prune.util.machine import speed_texts

    folder, name = ctx.folder, variant.name
    records = {stage.name: folder.record(name, stage.record, stage=stage.name) for stage in (PRUNE, TRAIN, EXPORT)}
    records["trim"] = folder.record(name, TRIM.record, stage="trim") if ctx.recipe.trims(variant) else None
    records["eval"] = folder.record(name, EVALUATE.record)
    records["deploy"] = folder.record(name, DEPLOY.record) if ctx.recipe.deploys(variant) else None
    return {
        "repo_id": ctx.repo_id(variant),
        "folder": ctx.zoo_dir(variant),
        "scan": folder.scan(required=True),
        "records": records,
        "run_dir": folder.root,
        "speed_documents": len(speed_texts(ctx.rows())),
    }


class CardStage(Stage):
    name = "card"

    def describe(self, ctx, variant, extra: str = "") -> str:
        return f"{super().describe(ctx, variant, extra)} -> {ctx.repo_id(variant)}"

    def key(self, recipe, variant, layers, folder) -> str:
        """Everything the card shows: the folder, its backend files, its scores, and the recipe's words about it."""
        deployed = DEPLOY.key(recipe, variant, layers, folder) if recipe.deploys(variant) else None
        words = (
            recipe.description,
            dataclasses.asdict(recipe.card),
            recipe.base.id,
            recipe.base.short_name,
            recipe.data.description,
            recipe.data.names,
        )
        return digest(
            "card",
            final_key(recipe, variant, layers, folder),
            deployed,
            EVALUATE.key(recipe, variant, layers, folder),
            words,
        )

    def marker_key(self, ctx, variant, layers) -> Any:
        key = super().marker_key(ctx, variant, layers)
        # The card's marker also names its repo: publish refuses a card rendered for another one.
        return None if key is None else [ctx.repo_id(variant), key]

    def run(self, ctx, variant) -> dict[str, Any]:
        return card_variant(ctx.recipe, variant, curve=ctx.folder.curve, **card_inputs(ctx, variant))


CARD = CardStage()
