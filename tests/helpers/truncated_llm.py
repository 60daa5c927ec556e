"""Reference embeddings of a model cut to k layers, computed with plain transformers."""

from __future__ import annotations

import torch
from transformers import AutoModel, AutoTokenizer

from st_prune.model import architectures

TEXTS = ["The quick brown fox jumps over the lazy dog.", "How do I reset my password?", "Two dogs"]


def reference_embeddings(folder, kept: int, texts=TEXTS) -> torch.Tensor:
    """The paper's definition, computed without st_prune: final_norm(hidden state after layer k), weighted-mean pooled."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states[kept]
        hidden = architectures.final_norm(model)(hidden)
    mask = batch["attention_mask"].float()
    weights = mask * torch.arange(1, mask.shape[1] + 1).float()  # 1..n over each text's tokens (right padding)
    return (hidden * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True)
