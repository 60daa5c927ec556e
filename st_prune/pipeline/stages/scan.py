"""The scan stage: L3Prune's per-layer contrastive loss of the full-depth base over training batches, its picks
(``small``, ``large``) and how sure they are, the curve, and the full-depth model's speed for the cards.

The record is ``scan/scan.json`` (with ``scan/l3prune.png``); the prune and train stages read the picks from it.
Under several processes only rank 0 runs it; the others wait and then read the record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    from st_prune.util.files import write_json_atomic
    from st_prune.l3prune.scan import L3Prune
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
