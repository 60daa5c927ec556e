"""A tiny recipe file around a model folder, with overrides, shared by the recipe tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

# ------------------------------------------------------------------------------------------ helpers
WORDS = ["cat", "dog", "fox", "bank", "money", "music", "guitar", "field", "sun", "road", "debian", "package"]


def write_triplets(folder: Path) -> Path:
    """``folder/triplets.jsonl``: 24 triplets over ``WORDS`` in two tasks ("pairs", "other"), for the tiny recipes."""
    path = folder / "triplets.jsonl"
    rows = []
    for index in range(24):
        a, b, c = WORDS[index % 12], WORDS[(index + 1) % 12], WORDS[(index + 5) % 12]
        task = "pairs" if index % 2 else "other"
        rows.append(
            {
                "task": task,
                "anchor": f"the {a} and {b}",
                "positive": f"a {a} with a {b}",
                "negative": f"the {c} on the road",
            }
        )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_sts_task(folder: Path) -> Path:
    """``folder/sts.jsonl``: a 12-pair local STS task over ``WORDS`` (the tiny recipes' evaluation)."""
    path = folder / "sts.jsonl"
    rows = [
        {"sentence1": f"the {WORDS[i]} runs", "sentence2": f"a {WORDS[(i * 7) % 12]} runs", "score": float(i % 5)}
        for i in range(12)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_recipe(folder: Path, model: Path, **changes) -> Path:
    """A tiny recipe on `model`: 2-batch scan, 3 training steps, a 12-pair local STS task."""
    write_triplets(folder)
    write_sts_task(folder)
    recipe = {
        "name": "tiny-test",
        "base": {"model": str(model), "id": "st-prune-test/tiny-llama", "max_seq_length": 32},
        "variants": [{"name": "small", "pick": "small"}, {"name": "large", "pick": "large"}],
        "scan": {"batch_size": 4, "num_batches": 2},
        "training": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "logging_steps": 1},
        "data": {
            "path": "triplets.jsonl",
            "instructions": {"pairs": "Retrieve matching pairs"},
            "names": ["st-prune-test/triplets"],
        },
        "evaluation": {"local_tasks": [{"path": "sts.jsonl", "type": "sts", "name": "TinySTS"}]},
        "publish": {"org": "recipe-org", "repo_name": "{base}-l3prune-{variant}", "private": False},
        "card": {"license": "apache-2.0", "language": ["en"]},
    }
    for dotted, value in changes.items():
        section, key = dotted.split("__") if "__" in dotted else (None, dotted)
        (recipe[section] if section else recipe)[key] = value
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
