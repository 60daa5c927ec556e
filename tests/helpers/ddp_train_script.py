"""Run by tests/e2e/test_training_ddp.py under ``torchrun --nproc_per_node 2`` (gloo on CPU).

Trains a tiny model with ``st_prune.training.trainer.train_pruned`` exactly as a user would, and records what the
loss saw: the shape of each query-to-document similarity matrix. With in-batch negatives gathered across
processes it is ``batch x (processes * batch * 2)`` (positives and hard negatives of every process).
Each process writes ``OUTPUT/rank<N>.json``; rank 0 alone writes the export to ``OUTPUT/export``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from datasets import Dataset
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesRankingLoss,
)
from transformers import TrainerCallback

from st_prune import encoder_from_llm
from st_prune.training import trainer as training

SHAPES: list[list[int]] = []


class RecordingLoss(MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss that records the similarity matrix shape (test instrumentation only)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plain = self.similarity_fct

        def recording(a, b):
            scores = plain(a, b)
            if a.requires_grad and scores.shape[0] == a.shape[0]:
                SHAPES.append(list(scores.shape))
            return scores

        self.similarity_fct = recording


class FinalStep(TrainerCallback):
    step = None

    def on_train_end(self, args, state, control, **kwargs):
        FinalStep.step = state.global_step


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=3)
    args = parser.parse_args()

    training.MultipleNegativesRankingLoss = RecordingLoss  # what build_loss constructs, in this process only
    rows = [
        {
            "anchor": f"query {i} about item {i * 7}",
            "positive": f"item {i * 7} answers query {i}",
            "negative": f"unrelated note {i + 500}",
            "instruction": "Retrieve the matching item",
        }
        for i in range(64)
    ]
    model = encoder_from_llm(args.model, layers=2, max_seq_length=64)
    config = training.TrainingConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=1e-3,
        warmup_steps=0,
        lora_r=4,
        lora_alpha=8,
        max_seq_length=64,
        logging_steps=1,
        save_steps=100,
    )
    output = Path(args.output)
    trained = training.train_pruned(
        model, Dataset.from_list(rows), config, output / "export", work_dir=output / "work", callbacks=[FinalStep()]
    )
    rank = int(os.environ.get("RANK", "0"))
    checksum = float(sum(parameter.double().sum() for parameter in trained[0].auto_model.parameters()))
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    report = {
        "rank": rank,
        "world_size": world,
        "global_step": FinalStep.step,
        "similarity_shapes": SHAPES,
        "weights_checksum": checksum,
    }
    (output / f"rank{rank}.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
