"""Names and defaults the CLI, the recipe schema and the models share, importable without torch.

`st-prune --help` and recipe validation import only this module and the standard library, so they answer in well
under a second; the modules that need torch (truncated_llm, training) import their defaults from here.
"""

from __future__ import annotations

#: The paper's LoRA target modules (attention and MLP projections); families that fuse them are mapped in training.
PAPER_LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: L3Prune's scan in the paper: the per-layer loss averaged over 100 batches of 64 training triplets.
SCAN_BATCH_SIZE = 64
SCAN_BATCHES = 100

#: InfoNCE scale (1 / temperature) of the paper's training; the scan's loss uses the same.
INFONCE_SCALE = 50.0

#: The seed of training and of the scan's row sampling.
SEED = 42

#: CLI / recipe pooling names -> sentence-transformers Pooling modes.
POOLING_MODES: dict[str, str] = {"weighted_mean": "weightedmean", "last_token": "lasttoken", "mean": "mean"}
