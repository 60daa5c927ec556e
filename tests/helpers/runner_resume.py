"""Recipe and records of the runner's resume tests (killed in another process or interrupted in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from recipe_files import write_triplets


def write_recipe(folder: Path, model: Path, steps: int, save_steps: int, **training_changes) -> Path:
    """One 2-layer variant of the tiny model, trained ``steps`` steps on 24 triplets in two instruction groups
    (several epochs, so the resumed data order matters), no evaluation."""
    write_triplets(folder)
    recipe = {
        "name": "tiny-resume",
        "base": {"model": str(model), "id": "st-prune-test/tiny-llama", "max_seq_length": 32},
        "variants": [{"name": "solo", "layers": 2}],
        "scan": {"batch_size": 4, "num_batches": 2},
        "training": {
            "steps": steps,
            "batch_size": 4,
            "warmup_steps": 2,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_steps": save_steps,
            **training_changes,
        },
        "data": {"path": "triplets.jsonl", "instructions": {"pairs": "Retrieve matching pairs"}},
        "card": {"license": "apache-2.0", "language": ["en"]},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def record(output: Path) -> dict:
    return json.loads((output / "work" / "solo" / "train.json").read_text())
