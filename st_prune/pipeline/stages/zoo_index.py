"""The zoo index: ``zoo.json`` and its ``README.md`` table, one row per variant a run has carded (or published).

The runner calls it after the card and publish stages, for its own ``DIR/models/`` and for ``--zoo-index`` (e.g. the
repository's ``model_cards/``); rows are merged by recipe + variant, so several runs share one index.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from st_prune.card.render import megabytes, millions
from st_prune.model.dtypes import saved_weights
from st_prune.util.files import read_json, write_json_atomic, write_text_atomic


def zoo_entry(*, recipe: str, variant: str, base_model: str, repo_id: str, prune: dict[str, Any],
              final: dict[str, Any], evaluation: dict[str, Any] | None, folder: Path, published: bool) -> dict[str, Any]:
    """One variant's row, from its prune record, the record of its folder as shipped (``final``: trim or export) and
    its evaluation record (None when it was not evaluated): repo id, base, layers, parameters, score, where."""
    evaluation = evaluation or {}
    return {
        "repo_id": repo_id,
        "recipe": recipe,
        "variant": variant,
        "base_model": base_model,
        "layers": prune["layers"],
        "num_layers": prune["num_layers"],
        "parameters": final["parameters"],
        "score": evaluation.get("average"),
        "tasks": sorted(evaluation.get("scores", {})),
        "published": published,
        **_weights_entry(folder),
    }


def _weights_entry(folder: Path) -> dict[str, Any]:
    """The zoo row's ``dtype`` and ``weight_bytes``, read from the model folder's safetensors files (if it has them)."""
    if not any(folder.glob("*.safetensors")):
        return {}
    weights = saved_weights(folder)
    return {"dtype": weights["dtype"], "weight_bytes": weights["bytes"]}


def update_zoo_index(folder: str | os.PathLike, entries: list[dict[str, Any]]) -> Path:
    """Merge ``entries`` into ``folder/zoo.json`` (keyed by recipe + variant) and re-render ``folder/README.md``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index_file = folder / "zoo.json"
    existing = read_json(index_file, fix="repair or delete it (it lists every variant built with --zoo-index)") if index_file.is_file() else []
    merged = {(entry["recipe"], entry["variant"]): entry for entry in existing}
    for entry in entries:
        merged[(entry["recipe"], entry["variant"])] = entry
    rows = sorted(merged.values(), key=lambda entry: (entry["base_model"], -entry["layers"], entry["repo_id"]))
    write_json_atomic(index_file, rows, sort_keys=False)
    write_text_atomic(folder / "README.md", render_zoo_readme(rows))
    return folder / "README.md"


def render_zoo_readme(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# st-prune model zoo",
        "",
        "Every variant that `st-prune run` has produced or published. Generated from `zoo.json`: do not edit by hand;",
        "`st-prune run RECIPE --zoo-index model_cards` merges a run's variants and re-renders this file.",
        "Score: mean main score ×100 over the recipe's evaluation tasks (listed per row), not comparable across",
        "rows with different task lists.",
        "",
        "| Model | Base | Layers | Parameters | Score | Tasks | Weights | Where |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for row in rows:
        score = f"{100 * row['score']:.2f}" if row.get("score") is not None else "–"
        where = f"[Hub](https://huggingface.co/{row['repo_id']})" if row.get("published") else "local"
        tasks = ", ".join(row.get("tasks") or []) or "–"
        # Rows written before the index recorded them have no dtype/size: "–", never a guess.
        weights = f"{row['dtype']}, {megabytes(row['weight_bytes'])}" if row.get("dtype") and row.get("weight_bytes") else "–"
        lines.append(
            f"| {row['repo_id']} | {row['base_model']} | {row['layers']}/{row['num_layers']} | "
            f"{millions(row['parameters'])} | {score} | {tasks} | {weights} | {where} |"
        )
    return "\n".join(lines) + "\n"
