"""Names and defaults the CLI, the recipe schema and the models share, importable without torch.

`st-prune --help` and recipe validation import only this module and the standard library, so they answer in well
under a second; the modules that need torch (truncated_llm, training) import their defaults from here.
"""

from __future__ import annotations

#: The paper's LoRA target modules (attention and MLP projections); families that fuse them are mapped in training.
PAPER_LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: CLI / recipe pooling names -> sentence-transformers Pooling modes.
POOLING_MODES: dict[str, str] = {"weighted_mean": "weightedmean", "last_token": "lasttoken", "mean": "mean"}
