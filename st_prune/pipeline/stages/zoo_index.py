"""The zoo index: ``zoo.json`` and its ``README.md`` table, one row per variant a run has carded (or published).

The runner calls it after the card and publish stages, for its own ``DIR/models/`` and for ``--zoo-index`` (e.g. the
repository's ``model_cards/``); rows are merged by recipe + variant, so several runs share one index. Only a zoo index
st-prune wrote is replaced (``st_prune.util.ownership``): a folder's own README.md or zoo.json is refused before any stage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from st_prune.card.render import megabytes, millions
from st_prune.model.dtypes import saved_weights
from st_prune.util import ownership


def zoo_entry(
    *,
    recipe: str,
    variant: str,
    base_model: str,
    repo_id: str,
    prune: dict[str, Any],
    final: dict[str, Any],
    evaluation: dict[str, Any] | None,
    folder: Path,
    published: bool,
) -> dict[str, Any]:
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


INDEX_FILE, README_FILE = "zoo.json", "README.md"
WRITER = "zoo index"
#: Every key of a row, as ``zoo_entry`` writes it: a zoo.json whose rows lack one is not st-prune's.
ROW_KEYS = frozenset({"repo_id", "recipe", "variant", "base_model", "layers", "num_layers", "parameters", "published"})


def check_zoo_index(folder: str | os.PathLike, flag: str = "--zoo-index") -> None:
    """``folder``'s zoo.json and README.md are absent or the zoo index st-prune wrote (else one line naming the fix):
    checked before any stage, so a user's README.md is never replaced by the index."""
    folder = Path(folder)
    for name in (INDEX_FILE, README_FILE):
        ownership.check_replace(
            folder, name, by=WRITER, legacy=_legacy_index, fix=f"choose another {flag} folder or move {name} away"
        )


def _rows(path: Path) -> list[dict[str, Any]] | None:
    """The rows of a zoo.json st-prune wrote, else None."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(rows, list) and all(isinstance(row, dict) and ROW_KEYS <= row.keys() for row in rows):
        return rows
    return None


def _legacy_index(path: Path) -> bool:
    """A zoo index written before st-prune recorded its files: a zoo.json of st-prune's rows, and a README.md that
    is exactly the table st-prune renders from them (a hand-edited one is the user's)."""
    rows = _rows(path.parent / INDEX_FILE)
    if rows is None:
        return False
    return path.name == INDEX_FILE or path.read_text(encoding="utf-8", errors="replace") == render_zoo_readme(rows)


def update_zoo_index(folder: str | os.PathLike, entries: list[dict[str, Any]], flag: str = "--zoo-index") -> Path:
    """Merge ``entries`` into ``folder/zoo.json`` (keyed by recipe + variant) and re-render ``folder/README.md``;
    files there that st-prune did not write are never replaced (``check_zoo_index``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    check_zoo_index(folder, flag)
    # Adopted together: once zoo.json changes, the old README.md no longer matches it.
    ownership.adopt(folder, (INDEX_FILE, README_FILE), by=WRITER, legacy=_legacy_index)
    index_file = folder / INDEX_FILE
    existing = (_rows(index_file) or []) if index_file.is_file() else []
    merged = {(entry["recipe"], entry["variant"]): entry for entry in existing}
    for entry in entries:
        merged[(entry["recipe"], entry["variant"])] = entry
    rows = sorted(merged.values(), key=lambda entry: (entry["base_model"], -entry["layers"], entry["repo_id"]))
    fix = f"choose another {flag} folder or move it away"
    ownership.write_text(
        folder, INDEX_FILE, json.dumps(rows, indent=2) + "\n", by=WRITER, legacy=_legacy_index, fix=fix
    )
    ownership.write_text(folder, README_FILE, render_zoo_readme(rows), by=WRITER, legacy=_legacy_index, fix=fix)
    return folder / README_FILE


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
        weights = (
            f"{row['dtype']}, {megabytes(row['weight_bytes'])}" if row.get("dtype") and row.get("weight_bytes") else "–"
        )
        lines.append(
            f"| {row['repo_id']} | {row['base_model']} | {row['layers']}/{row['num_layers']} | "
            f"{millions(row['parameters'])} | {score} | {tasks} | {weights} | {where} |"
        )
    return "\n".join(lines) + "\n"
