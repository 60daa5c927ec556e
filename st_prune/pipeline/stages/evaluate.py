"""The evaluate stage: the model folder as shipped, through mteb (``st_prune.evaluation.evaluate``).

mteb's results land in ``<run>/results/`` (its own layout, with the model's ``ModelMeta``); the record
(``work/<variant>/eval.json``) keeps the main score per task, the task types and main-score names the card's table
and model-index need, the average, and where the results are (relative to the run folder, so the folder can move).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from st_prune.pipeline.stage import Stage, digest
from st_prune.pipeline.stages.trim import final_key


def evaluation_tasks(names: Sequence[str] | str | None, local_tasks: Iterable[tuple[Path, Any]]) -> list[Any]:
    """mteb task objects: the named tasks (or task set), then each ``(file, spec)`` local task (type, name,
    instruction from the spec)."""
    from st_prune.evaluation.local_tasks import load_local_task
    from st_prune.evaluation.tasks import resolve_tasks

    tasks = list(resolve_tasks(names)) if names else []
    tasks += [
        load_local_task(path, spec.type, name=spec.name, instruction=spec.instruction) for path, spec in local_tasks
    ]
    return tasks


def evaluate_variant(
    folder: Path, tasks: list[Any], *, repo_id: str, base_model: str, license: str, batch_size: int, run_dir: Path
) -> dict[str, Any]:
    """Evaluate the model in ``folder`` on ``tasks``; mteb's files go under ``run_dir/results``."""
    from st_prune.evaluation.evaluate import evaluate_model
    from st_prune.evaluation.model_meta import build_model_meta
    from st_prune.util.local_only import load_model_folder

    model = load_model_folder(folder)
    meta = build_model_meta(model, name=repo_id, revision="main", base_model=base_model, license=license)
    run = evaluate_model(model, tasks, meta=meta, output_dir=run_dir / "results", batch_size=batch_size, overwrite=True)
    scores = {name: round(score, 6) for name, score in run.main_scores.items()}
    return {
        "scores": scores,
        "task_types": run.task_types,
        "main_score_names": {task.metadata.name: task.metadata.main_score for task in tasks},
        "average": round(sum(scores.values()) / len(scores), 6) if scores else None,
        "results_dir": str(run.results_dir.relative_to(run_dir)),
    }


class EvaluateStage(Stage):
    name = "evaluate"
    record = "eval.json"

    def applies(self, ctx, variant) -> bool:
        return bool(ctx.recipe.evaluation.tasks or ctx.recipe.evaluation.local_tasks)

    def key(self, recipe, variant, layers, folder) -> str:
        return digest("evaluate", final_key(recipe, variant, layers, folder), dataclasses.asdict(recipe.evaluation))

    def check_inputs(self, ctx, variant) -> None:
        ctx.final_record(variant)

    def run(self, ctx, variant) -> dict[str, Any]:
        spec, repo_id = ctx.recipe.evaluation, ctx.repo_id(variant)
        repo_id = repo_id if "/" in repo_id else f"local/{repo_id}"
        tasks = evaluation_tasks(spec.tasks, [(ctx.local_task_path(task), task) for task in spec.local_tasks])
        data = ctx.folder.write_record(
            variant.name,
            self.record,
            evaluate_variant(
                ctx.zoo_dir(variant),
                tasks,
                repo_id=repo_id,
                base_model=ctx.recipe.base_id,
                license=ctx.recipe.card.license,
                batch_size=spec.batch_size,
                run_dir=ctx.folder.root,
            ),
        )
        return {"average": data["average"]}


EVALUATE = EvaluateStage()
