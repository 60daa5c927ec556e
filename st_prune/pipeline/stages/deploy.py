"""The deploy stage: backend files (ONNX, OpenVINO; quantized where the recipe asks) beside the model folder's
weights, each checked against torch and timed (``st_prune.deploy.deploy``).

The record (``work/<variant>/deploy.json``) lists every file built, shipped or not (with why), its agreement with
torch and its speed on this machine: the card's backend table is rendered from it.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from st_prune.evaluation.task_files import TEXT_FIELDS
from st_prune.pipeline.stage import Stage, digest
from st_prune.pipeline.stages.trim import final_key


def deploy_variant(
    folder: Path,
    *,
    backends: Sequence[str],
    quantize: Sequence[str],
    check_texts: list[str],
    speed_texts: list[str],
    check_source: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build and check the backend files in ``folder``: agreement on ``check_texts`` (``check_source`` says what
    they are, for the card), speed on ``speed_texts``."""
    from st_prune.deploy.deploy import deploy, measure_backend_speed
    from st_prune.util.machine import machine_description

    report = deploy(folder, backends=backends, quantize=quantize, overwrite=True, texts=check_texts)
    speed = measure_backend_speed(folder, report, speed_texts)
    record = {
        "files": report["files"],
        "speed": speed,
        "machine": machine_description(),
        "versions": report["versions"],
        "checked_on": {**report.get("checked_on", {}), "source": check_source},
    }
    best = max(speed.values(), key=lambda entry: entry["speedup"], default=None)
    if best is not None:
        log(f"       shipped {', '.join(shipped_files(record))}; fastest {best['file']}: {best['speedup']:.2f}x torch")
    return record


def shipped_files(record: dict[str, Any]) -> list[str]:
    """The backend files a deploy record ships (the rest were built, checked and left out, with the reason)."""
    return [name for name, entry in record["files"].items() if entry.get("shipped")]


def held_out_texts(task_files: Sequence[Path], count: int = 64, seed: int = 0) -> list[str]:
    """Up to ``count`` texts drawn (seeded) from the recipe's local evaluation task files: dev data the model never
    trained on, so a quantized file is judged on texts it was not fitted to (empty when the recipe has none)."""
    texts: list[str] = []
    for path in task_files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    texts += [row[name] for name in TEXT_FIELDS if isinstance(row.get(name), str) and row[name].strip()]
    unique = list(dict.fromkeys(texts))
    return random.Random(seed).sample(unique, min(count, len(unique)))


class DeployStage(Stage):
    name = "deploy"
    record = "deploy.json"

    def applies(self, ctx, variant) -> bool:
        return ctx.recipe.deploys(variant)

    def key(self, recipe, variant, layers, folder) -> str:
        deploy = dataclasses.asdict(recipe.deploy) if recipe.deploy is not None else None
        return digest("deploy", final_key(recipe, variant, layers, folder), deploy)

    def check_inputs(self, ctx, variant) -> None:
        ctx.final_record(variant)

    def run(self, ctx, variant) -> dict[str, Any]:
        from st_prune.util.machine import speed_texts

        spec = ctx.recipe.deploy
        # Checked on held-out dev texts (the recipe's local evaluation tasks) with each prompt and without, else on
        # the recipe's own training texts: a quantized file must hold on texts it was not fitted to.
        check_texts = held_out_texts([ctx.local_task_path(task) for task in ctx.recipe.evaluation.local_tasks])
        source = "held-out dev texts of the evaluation tasks"
        if not check_texts:
            check_texts, source = speed_texts(ctx.rows(), count=32), "the recipe's training texts"
        data = ctx.folder.write_record(
            variant.name,
            self.record,
            deploy_variant(
                ctx.zoo_dir(variant),
                backends=spec.backends,
                quantize=spec.quantize,
                log=ctx.log,
                check_texts=check_texts,
                check_source=source,
                speed_texts=speed_texts(ctx.rows()),
            ),
        )
        return {"shipped": shipped_files(data)}


DEPLOY = DeployStage()
