"""Triplet rows and fast training settings shared by the training and distillation tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = "red green blue small large quick lazy happy dog cat fox bird tree river house car".split()


INSTRUCTION = "Retrieve semantically similar text"


FAST = {
    "batch_size": 4,
    "learning_rate": 2e-3,
    "warmup_steps": 0,
    "lora_r": 4,
    "lora_alpha": 8,
    "max_seq_length": 64,
    "logging_steps": 1,
    "save_steps": 100,
}


def triplet_rows(count: int, instruction: str | None = None, seed: int = 0) -> list[dict[str, str]]:
    """Distinct texts (NO_DUPLICATES needs them); the positive shares the anchor's words, the negative does not."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        first, second, other = rng.sample(WORDS, 3)
        row = {
            "anchor": f"{index} {first} {second}",
            "positive": f"the {first} {second} number {index}",
            "negative": f"a {other} thing {index + 1000}",
        }
        if instruction:
            row["instruction"] = instruction
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
