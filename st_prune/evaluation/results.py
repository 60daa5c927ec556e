"""Reports read back from a results folder: the main score per task, the model card's results table, and the
size/quality plot of a base model's variants (the paper's Figure 5).

A results folder is mteb's ``<org>__<model>/<revision>`` folder (``evaluate.model_results_dir``). It keeps the files
of every evaluation into it, whose task lists may differ, so each reader can be limited to the tasks of one run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mteb.get_tasks import TASK_LIST

from st_prune.errors import StPruneError


def main_score(scores: Mapping[str, Sequence[Mapping[str, Any]]]) -> float:
    """Mean main score over subsets of the `test` split (the leaderboard's), or of all splits if there is none."""
    splits = ["test"] if "test" in scores else list(scores)
    values = [entry["main_score"] for split in splits for entry in scores[split]]
    return float(sum(values) / len(values))


def read_main_scores(results_dir: str | Path, task_names: Sequence[str] | None = None) -> dict[str, float]:
    """Main score per task from a `<org>__<model>/<revision>` results folder, in task-name order.

    `task_names` keeps only those tasks (each must have a result): the folder also holds the files of every earlier
    evaluation into it, whose task list may have been another.
    """
    results_dir = Path(results_dir)
    scores = {}
    for path in sorted(results_dir.glob("*.json")):
        if path.name == "model_meta.json":
            continue
        scores[path.stem] = main_score(json.loads(path.read_text())["scores"])
    if not scores:
        raise StPruneError(f"no task results in {results_dir}: run `st-prune eval` with --output pointing above it")
    if task_names is not None:
        missing = [name for name in task_names if name not in scores]
        if missing:
            raise StPruneError(f"{results_dir} lacks results for {missing}: evaluate the variant on them first")
        scores = {name: score for name, score in scores.items() if name in set(task_names)}
    return scores


def results_table_markdown(
    results_dir: str | Path,
    *,
    task_types: Mapping[str, str] | None = None,
    task_names: Sequence[str] | None = None,
) -> str:
    """A markdown table for the model card: task, type, main score (×100) per task, then the average.

    Types come from `task_types` (e.g. `evaluate.EvaluationRun.task_types`, needed for local tasks) or mteb's registry;
    `task_names` limits the table to those tasks (see `read_main_scores`).
    """
    scores = read_main_scores(results_dir, task_names)
    lines = ["| Task | Type | Main score |", "|---|---|---:|"]
    for task_name, score in scores.items():
        task_type = (task_types or {}).get(task_name) or _registered_task_type(task_name) or "Custom"
        lines.append(f"| {task_name} | {task_type} | {100 * score:.2f} |")
    average = sum(scores.values()) / len(scores)
    tasks = f"{len(scores)} task" + ("s" if len(scores) > 1 else "")
    lines.append(f"| **Average ({tasks})** | | **{100 * average:.2f}** |")
    return "\n".join(lines) + "\n"


def _registered_task_type(task_name: str) -> str | None:
    for task_cls in TASK_LIST:
        if task_cls.metadata.name == task_name:
            return str(task_cls.metadata.type)
    return None


@dataclass(frozen=True)
class VariantScore:
    """One point of the size/quality plot: a model variant, its parameter count and its average main score."""

    label: str
    n_parameters: int
    average_score: float
    kind: str = "fraction"  # "full", "large", "small" (L3Prune picks) or "fraction" (fixed pruning fraction)


def load_variant_score(
    results_dir: str | Path,
    label: str,
    *,
    kind: str = "fraction",
    task_names: Sequence[str] | None = None,
) -> VariantScore:
    """Average main score and parameter count (from `model_meta.json`) of one evaluated variant.

    `task_names` fixes the tasks averaged over, so variants are compared on the same tasks.
    """
    results_dir = Path(results_dir)
    scores = read_main_scores(results_dir, task_names)
    meta_path = results_dir / "model_meta.json"
    if not meta_path.is_file():
        raise StPruneError(f"{results_dir} has no model_meta.json: evaluate with `st-prune eval --model-name ORG/NAME`")
    n_parameters = json.loads(meta_path.read_text())["n_parameters"]
    return VariantScore(label, int(n_parameters), sum(scores.values()) / len(scores), kind)


_VARIANT_STYLES = {
    "full": dict(marker="o", color="black"),
    "large": dict(marker="s", color="tab:blue"),
    "small": dict(marker="D", color="tab:orange"),
    "fraction": dict(marker=".", color="tab:gray"),
}


def plot_score_vs_parameters(
    variants: Sequence[VariantScore],
    output_path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Average score against parameter count for variants of one base model (the paper's Figure 5), as a PNG.

    Fixed-fraction variants are joined by a line; the full model and the L3Prune picks stand out; every point
    is labelled.
    """
    from st_prune.util.optional import require

    matplotlib = require("matplotlib", "plotting scores against parameters")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not variants:
        raise StPruneError("no variants to plot: pass at least one evaluated variant")
    output_path = Path(output_path)
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    fractions = sorted((v for v in variants if v.kind in ("fraction", "full")), key=lambda v: v.n_parameters)
    if len(fractions) > 1:
        axes.plot(
            [v.n_parameters / 1e9 for v in fractions],
            [100 * v.average_score for v in fractions],
            color="tab:gray",
            linewidth=1,
            zorder=1,
        )
    for variant in variants:
        style = _VARIANT_STYLES.get(variant.kind, _VARIANT_STYLES["fraction"])
        x, y = variant.n_parameters / 1e9, 100 * variant.average_score
        axes.scatter([x], [y], s=40, zorder=2, **style)
        axes.annotate(variant.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xlabel("Parameters (billions)")
    axes.set_ylabel("Average main score")
    axes.set_title(title or "Average score against model size")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_path)
    plt.close(figure)
    return output_path
