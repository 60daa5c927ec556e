"""Inference throughput of SmolLM2-135M-Instruct cut to k layers vs the full 30, measured side by side.

Goal: measured speedup >= 0.95 x the ideal speedup from per-token FLOPs (embedding lookup excluded,
decoder layers and final norm included; the LM head is never run by an encoder). Also checks that the
exported folder's weight bytes equal the kept parameters x 4 bytes.

    python bench/bench_inference.py [--layers 7 15 28] [--tokens 64] [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from st_prune import architectures, encoder_from_llm, export_model
from st_prune.export import weight_bytes
from st_prune.recipe import machine_description

from common import smollm2_gguf  # noqa: E402  (bench/ is on sys.path)

SMOLLM2 = smollm2_gguf()


def per_token_flops(model: torch.nn.Module, tokens: int) -> float:
    """Multiply-adds x 2 of one token through the decoder stack and final norm at sequence length ``tokens``."""
    config = model.config
    layers = architectures.decoder_layers(model)
    matmul = sum(m.weight.numel() for layer in layers for m in layer.modules() if isinstance(m, torch.nn.Linear))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    # Scores and weighted values: 2 matmuls of (tokens x head_dim) per head, averaged over a causal sequence.
    attention = len(layers) * config.num_attention_heads * 2 * head_dim * (tokens + 1) / 2
    norm = config.hidden_size * (2 * len(layers) + 1)
    return 2 * (matmul + attention) + norm


def tokens_per_second(model, batch: dict, repeats: int) -> float:
    inner = model[0].auto_model
    timings = []
    with torch.inference_mode():
        inner(**batch)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            inner(**batch)
            timings.append(time.perf_counter() - start)
    return batch["input_ids"].numel() / statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[7, 15, 28])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)

    full = encoder_from_llm(str(SMOLLM2))
    vocab = full[0].auto_model.get_input_embeddings().num_embeddings
    batch = {
        "input_ids": torch.randint(100, vocab, (args.batch, args.tokens)),
        "attention_mask": torch.ones(args.batch, args.tokens, dtype=torch.long),
    }
    total = full[0].num_layers
    full_flops = per_token_flops(full[0].auto_model, args.tokens)
    full_speed = tokens_per_second(full, batch, args.repeats)
    del full

    print(f"SmolLM2-135M-Instruct, {args.batch} x {args.tokens} tokens, {machine_description()}")
    print(f"{'layers':>6} {'tok/s':>9} {'speedup':>8} {'ideal':>7} {'ratio':>6} {'params':>8} {'size ratio':>10}")
    print(f"{total:>6} {full_speed:>9.0f} {1:>8.2f} {1:>7.2f} {1:>6.2f}")
    for kept in args.layers:
        model = encoder_from_llm(str(SMOLLM2), layers=kept)
        speed = tokens_per_second(model, batch, args.repeats)
        ideal = full_flops / per_token_flops(model[0].auto_model, args.tokens)
        parameters = sum(parameter.numel() for parameter in model.parameters())
        with tempfile.TemporaryDirectory() as folder:
            saved = weight_bytes(export_model(model, Path(folder) / "model", create_model_card=False))
        speedup = speed / full_speed
        print(f"{kept:>6} {speed:>9.0f} {speedup:>8.2f} {ideal:>7.2f} {speedup / ideal:>6.2f} "
              f"{parameters / 1e6:>7.1f}M {saved / (4 * parameters):>10.4f}")


if __name__ == "__main__":
    main()
