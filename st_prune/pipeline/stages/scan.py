"""The scan stage: L3Prune's per-layer contrastive loss of the full-depth base over training batches, its picks
(``small``, ``large``) and how sure they are, the curve, and the full-depth model's speed for the cards.

The record is ``scan/scan.json`` (with ``scan/l3prune.png``); the prune and train stages read the picks from it.
Under several processes only rank 0 runs it; the others wait and then read the record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from st_prune.pipeline.stage import Stage, digest

# Base-model fields that change the loaded model (id, short_name and layers only name or describe it).
_LOAD_FIELDS = ("model", "pooling", "max_seq_length", "dtype")
# Data fields that change the rows (description and names only go to the card).
_DATA_EXCLUDED = ("description", "names")
# The scan settings L3Prune takes (the recipe's scan section also holds max_seq_length, which shapes the model).
_L3PRUNE_OPTIONS = ("batch_size", "num_batches", "seed", "scale")


def scan_base(
    model: Any,
    data: Any,
    prompts: Any,
    settings: dict[str, Any],
    folder: Path,
    *,
    texts: list[str],
    title: str,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Scan ``model`` (the full-depth encoder) on ``data``/``prompts`` (as the trainer batches them) with the recipe's
    scan ``settings``; writes ``folder/scan.json`` and ``folder/l3prune.png`` and returns the record. ``texts`` are
    the documents the full-depth tokens/s is measured on."""
    from st_prune.l3prune.scan import L3Prune
    from st_prune.util.files import write_json_atomic
    from st_prune.util.machine import machine_description, measure_tokens_per_second

    result = L3Prune(**{name: settings[name] for name in _L3PRUNE_OPTIONS}).select(model, data, prompts=prompts)
    scan = result.to_dict()
    scan["tokens_per_second_full"] = round(measure_tokens_per_second(model, texts), 1)
    scan["parameters_full"] = scan["parameters"][-1]
    scan["machine"] = machine_description()
    scan["settings"] = dict(settings)
    result.plot(folder / "l3prune.png", title=title)
    write_json_atomic(folder / "scan.json", scan)
    log(f"       L3Prune picks: small = {scan['small']} layers, large = {scan['large']} of {scan['num_layers']}")
    if scan["pick_confidence"]:  # how sure: bootstrap over the scan's batches (in scan.json too)
        log("       " + "; ".join(result.confidence_text(pick, scan["pick_confidence"]) for pick in ("small", "large")))
    return scan


class ScanStage(Stage):
    name = "scan"
    per_variant = False

    def key(self, recipe, variant=None, layers=None, folder=None) -> str:
        base = {name: getattr(recipe.base, name, None) for name in _LOAD_FIELDS}
        if getattr(recipe.base, "kind", None) is not None:  # only when set, so the keys of earlier runs stay the same
            base["kind"] = recipe.base.kind
        data = {key: value for key, value in dataclasses.asdict(recipe.data).items() if key not in _DATA_EXCLUDED}
        return digest("scan", base, dataclasses.asdict(recipe.scan), data, recipe.query_instruction)

    def run(self, ctx, variant=None) -> dict[str, Any]:
        from st_prune.util.machine import speed_texts

        recipe, source, folder = ctx.recipe, ctx.training_source(), ctx.folder
        scan = scan_base(
            ctx.encoder(None, recipe.scan.max_seq_length),
            source.data,
            source.prompts,
            dataclasses.asdict(recipe.scan),
            folder.scan_dir,
            texts=speed_texts(ctx.rows()),
            title=f"L3Prune scan of {recipe.base_id}",
            log=ctx.log,
        )
        folder.forget(folder.scan_record)  # rewritten: the picks may have moved
        return {"small": scan["small"], "large": scan["large"]}


SCAN = ScanStage()
