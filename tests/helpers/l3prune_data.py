"""Random triplets from the tiny tokenizer's corpus for the L3Prune tests."""

from __future__ import annotations

import random

from datasets import Dataset
from tiny_models import CORPUS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


WORDS = " ".join(CORPUS).split()


def triplets(rows: int, seed: int = 0, instructions: list[str] | None = None) -> Dataset:
    """Random short texts of uneven length (so padding matters) from the tiny tokenizer's corpus."""
    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))

    data = {column: [text() for _ in range(rows)] for column in ("anchor", "positive", "negative")}
    if instructions:
        data["instruction"] = [instructions[index % len(instructions)] for index in range(rows)]
    return Dataset.from_dict(data)
