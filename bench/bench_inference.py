"""Inference throughput of SmolLM2-135M-Instruct cut to k layers vs the full 30, measured side by side.

Goal: measured speedup >= 0.95 x the ideal speedup from per-token FLOPs (embedding lookup excluded,
decoder layers and final norm included; the LM head is never run by an encoder). Also checks that the
exported folder's weight bytes equal the kept parameters x 4 bytes.

    python bench/bench_inference.py [--layers 7 15 28] [--tokens 64] [--batch 16] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from functools import partial
from pathlib import Path

import torch
from common import round_robin_seconds, smollm2_gguf  # noqa: E402  (bench/ is on sys.path)

from st_prune import encoder_from_llm, export_model
from st_prune.model import architectures
from st_prune.model.export import weight_bytes
from st_prune.util.machine import machine_description

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


def round_robin_tokens_per_second(
    models: dict[int, torch.nn.Module], batch: dict, rounds: int
) -> dict[int, tuple[float, float]]:
    """Tokens/s of each model (median and fastest of ``rounds`` forward passes), timed round-robin."""
    with torch.inference_mode():
        seconds = round_robin_seconds({kept: partial(inner, **batch) for kept, inner in models.items()}, rounds)
    tokens = batch["input_ids"].numel()
    return {
        kept: (tokens / statistics.median(taken["wall"]), tokens / min(taken["wall"]))
        for kept, taken in seconds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[7, 15, 28])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.manual_seed(0)

    full = encoder_from_llm(str(SMOLLM2))
    total = full[0].num_layers
    vocab = full[0].auto_model.get_input_embeddings().num_embeddings
    batch = {
        "input_ids": torch.randint(100, vocab, (args.batch, args.tokens)),
        "attention_mask": torch.ones(args.batch, args.tokens, dtype=torch.long),
    }
    models = {total: full, **{kept: encoder_from_llm(str(SMOLLM2), layers=kept) for kept in args.layers}}
    speeds = round_robin_tokens_per_second(
        {kept: model[0].auto_model for kept, model in models.items()}, batch, args.rounds
    )
    full_flops = per_token_flops(full[0].auto_model, args.tokens)

    print(
        f"SmolLM2-135M-Instruct, {args.batch} x {args.tokens} tokens, {args.rounds} round-robin rounds, "
        f"{machine_description()}"
    )
    print(
        f"{'layers':>6} {'tok/s':>9} {'speedup':>8} {'ideal':>7} {'ratio':>6} {'ratio (fastest)':>15} {'params':>8} "
        f"{'size ratio':>10}"
    )
    print(f"{total:>6} {speeds[total][0]:>9.0f} {1:>8.2f} {1:>7.2f} {1:>6.2f} {1:>15.2f}")
    for kept in args.layers:
        model = models[kept]
        ideal = full_flops / per_token_flops(model[0].auto_model, args.tokens)
        parameters = sum(parameter.numel() for parameter in model.parameters())
        with tempfile.TemporaryDirectory() as folder:
            saved = weight_bytes(export_model(model, Path(folder) / "model", create_model_card=False))
        speedup, fastest_speedup = (speeds[kept][i] / speeds[total][i] for i in (0, 1))
        print(
            f"{kept:>6} {speeds[kept][0]:>9.0f} {speedup:>8.2f} {ideal:>7.2f} {speedup / ideal:>6.2f} "
            f"{fastest_speedup / ideal:>15.2f} {parameters / 1e6:>7.1f}M {saved / (4 * parameters):>10.4f}"
        )
    print("(tok/s and speedup from the median round; ratio = measured speedup / ideal FLOPs speedup, goal >= 0.95)")


if __name__ == "__main__":
    main()
