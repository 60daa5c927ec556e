"""The trim stage: the exported folder with its vocabulary cut to what a corpus uses (``st_prune.trim.vocab``).

The record (``work/<variant>/trim.json``) holds the trimmed folder's parameters and weight bytes (the figures the
card and the zoo index show for a trimmed variant) and the trim's full report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from st_prune.pipeline.stage import Stage, digest
from st_prune.pipeline.stages.export import EXPORT


def training_corpus(rows, instructions: Iterable[str], template: str | None = None) -> list[str]:
    """The texts a trimmed model must embed exactly when no corpus file is given: every training text, and the
    instruction prompts of training (the rows' ``instruction`` column) and of ``instructions`` (queries, tasks), in
    the model's instruction format ``template`` (st-prune's by default)."""
    from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE, instruction_prompt

    template = template or QUERY_PROMPT_TEMPLATE
    texts = [
        text
        for column in ("anchor", "positive", "negative")
        if column in rows.column_names
        for text in rows[column]
        if text
    ]
    prompts = set(rows["instruction"]) if "instruction" in rows.column_names else set()
    prompts |= set(instructions)
    return texts + [instruction_prompt(text, template) or "" for text in sorted(i for i in prompts if i)]


def trim_variant(
    source: Path,
    folder: Path,
    corpus: list[str],
    *,
    vocab_size: int | None,
    min_frequency: int | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trim ``source`` (the export) into ``folder``, rebuilt whole from st-prune's own files (the runner's model
    folder)."""
    from st_prune.errors import StPruneError
    from st_prune.model.export import weight_bytes
    from st_prune.trim.vocab import trim_vocabulary
    from st_prune.util import ownership

    left = ownership.remove_owned(folder)  # an earlier trim's (or export's) output; never the user's files
    if left:
        raise StPruneError(
            f"{folder} holds files st-prune did not write ({', '.join(left[:3])}), and the trim rebuilds "
            "that folder whole: move them away and run again"
        )
    # The model folder's README.md is the card stage's alone: the trim leaves it to that stage.
    report = trim_vocabulary(source, corpus, folder, vocab_size=vocab_size, min_frequency=min_frequency, card=False)
    log(f"       {report.summary().splitlines()[0]}")
    return {"parameters": report.parameters_after, "weight_bytes": weight_bytes(folder), "report": report.to_dict()}


def trim_corpus(ctx) -> list[str]:
    """The texts a trimmed model must embed exactly: the recipe's corpus file, or its training texts with the
    instruction prompts of training, queries and the evaluation tasks."""
    from st_prune.errors import StPruneError
    from st_prune.pipeline.recipe import recipe_relative
    from st_prune.trim.vocab import read_corpus

    recipe = ctx.recipe
    if recipe.trim is not None and recipe.trim.corpus:
        path = recipe_relative(recipe, recipe.trim.corpus)
        if not path.is_file():
            raise StPruneError(f"trim.corpus {recipe.trim.corpus} does not exist: fix it or --set trim.corpus=FILE")
        return read_corpus(path)
    instructions = {recipe.query_instruction} | {task.instruction for task in recipe.evaluation.local_tasks}
    return training_corpus(ctx.rows(), instructions, ctx.instruction_template())


class TrimStage(Stage):
    name = "trim"
    record = "trim.json"

    def applies(self, ctx, variant) -> bool:
        return ctx.recipe.trims(variant)

    def key(self, recipe, variant, layers, folder) -> str:
        trim = dataclasses.asdict(recipe.trim) if recipe.trim is not None else None
        return digest("trim", EXPORT.key(recipe, variant, layers, folder), trim)

    def check_inputs(self, ctx, variant) -> None:
        ctx.folder.record(variant.name, EXPORT.record, stage="export")

    def run(self, ctx, variant) -> dict[str, Any]:
        spec = ctx.recipe.trim
        data = ctx.folder.write_record(
            variant.name,
            self.record,
            trim_variant(
                ctx.export_dir(variant),
                ctx.zoo_dir(variant),
                trim_corpus(ctx),
                vocab_size=spec.vocab_size,
                min_frequency=spec.min_frequency,
                log=ctx.log,
            ),
        )
        return {
            "vocab_before": data["report"]["vocab_before"],
            "vocab_after": data["report"]["vocab_after"],
            "parameters": data["parameters"],
        }


TRIM = TrimStage()


def final_key(recipe, variant, layers: int, folder: str) -> str:
    """The key of the model folder as shipped: after the trim where the recipe trims, else after export."""
    stage = TRIM if recipe.trims(variant) else EXPORT
    return stage.key(recipe, variant, layers, folder)
