"""MLP width pruning: keep the same number of MLP channels in every decoder layer, the ones that carry the most.

A gated MLP computes ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``; channel ``c`` of the intermediate activation
reaches the output only through column ``c`` of ``down_proj``. A channel's importance is the mean absolute value
of that activation over the real (non-padding) tokens of a few batches of training texts, each text embedded as the
model embeds it (its prompt included), measured on the model after its depth cut. Each layer keeps its
``round(F * intermediate_size)`` most important channels, in their original order: rows of ``gate_proj`` and
``up_proj``, columns of ``down_proj``. Every layer keeps the same number, so ``config.intermediate_size`` stays one
number and plain transformers and sentence-transformers load the result (the approach of EffiR, arXiv 2512.20612,
after the depth cut).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from torch import nn

from st_prune.errors import StPruneError
from st_prune.model import architectures

#: The gated MLP's projections, as Llama, Mistral, Qwen2/3 and Gemma 1/2/3 name them.
GATE, UP, DOWN = "gate_proj", "up_proj", "down_proj"
IMPORTANCE = "mean |act_fn(gate_proj(x)) * up_proj(x)| per channel over the real tokens of the training texts"


def check_mlp_keep(keep: Any) -> float:
    """``keep`` as a float in (0, 1], the share of MLP channels each layer keeps."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise StPruneError(
            f"the MLP width fraction must be in (0, 1] (the share of MLP channels each layer keeps), got {keep!r}; "
            "e.g. --mlp-keep 0.5"
        )
    return float(keep)


def mlps(model: SentenceTransformer | nn.Module) -> list[nn.Module]:
    """Each decoder layer's gated MLP, refused for families without ``gate_proj``/``up_proj``/``down_proj``."""
    auto_model = model[0].auto_model if isinstance(model, SentenceTransformer) else model
    found = []
    for layer in architectures.decoder_layers(auto_model):
        mlp = getattr(layer, "mlp", None)
        if not all(isinstance(getattr(mlp, name, None), nn.Linear) for name in (GATE, UP, DOWN)):
            model_type = getattr(architectures.base_model(auto_model).config, "model_type", "?")
            raise StPruneError(
                f"MLP width pruning needs gated MLPs with {GATE}/{UP}/{DOWN} projections (Llama, Mistral, Qwen, "
                f"Gemma); {model_type!r} has none; cut its depth only (leave out --mlp-keep)"
            )
        found.append(mlp)
    return found


def channel_importance(
    model: SentenceTransformer, batches: Iterable[tuple[Sequence[str], str | None]]
) -> list[torch.Tensor]:
    """Per layer, the mean |intermediate activation| of each MLP channel over ``batches`` of ``(texts, prompt)``."""
    layers = mlps(model)
    sums = [torch.zeros(mlp.down_proj.in_features, dtype=torch.float64) for mlp in layers]
    tokens = 0
    mask: dict[str, torch.Tensor] = {}

    def hook(index: int):
        def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            # down_proj's input is exactly act_fn(gate_proj(x)) * up_proj(x); padding tokens do not count.
            weights = mask["tokens"].to(args[0].dtype).unsqueeze(-1)
            sums[index] += (args[0].abs() * weights).sum(dim=(0, 1)).double().cpu()

        return record

    handles = [mlp.down_proj.register_forward_pre_hook(hook(index)) for index, mlp in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for texts, prompt in batches:
                features = model.preprocess(list(texts), prompt=prompt)
                features = {
                    key: value.to(model.device) if isinstance(value, torch.Tensor) else value
                    for key, value in features.items()
                }
                mask["tokens"] = features["attention_mask"]
                tokens += int(features["attention_mask"].sum())
                model[0](features)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if tokens == 0:
        raise StPruneError("MLP channel importance needs training texts; give --data with at least one text")
    return [total / tokens for total in sums]


def select_channels(importance: Sequence[torch.Tensor], keep: float) -> list[list[int]]:
    """Per layer, the ``round(keep * I)`` most important channels, in their original order."""
    keep = check_mlp_keep(keep)
    original = len(importance[0])
    kept = max(1, round(keep * original))
    return [sorted(torch.topk(scores, kept).indices.tolist()) for scores in importance]


def prune_mlp_width(model: SentenceTransformer, keep: float, importance: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Keep the ``round(keep * I)`` most important channels of every layer's MLP, in place; returns the record.

    ``keep == 1`` changes nothing. The record (``mlp_keep``, ``intermediate_size``, ``original_intermediate_size``,
    ``importance``) is also stored in the model's config under ``st_prune.width``, so an export carries it; its
    ``channels`` (kept channels per layer) are left out of the config, and ``apply_channels`` repeats the cut.
    """
    layers = mlps(model)
    if len(importance) != len(layers):
        raise StPruneError(f"importance covers {len(importance)} layers, the model has {len(layers)}; measure it again")
    return apply_channels(model, keep, select_channels(importance, keep))


def apply_channels(model: SentenceTransformer, keep: float, channels: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Cut every layer's MLP to its listed ``channels`` (as ``select_channels`` returns them); returns the record."""
    keep = check_mlp_keep(keep)
    layers = mlps(model)
    original = layers[0].down_proj.in_features
    kept = len(channels[0]) if channels else original
    if len(channels) != len(layers) or any(len(c) != kept for c in channels):
        raise StPruneError(
            f"the kept MLP channels name {len(channels)} layers of unequal width for a "
            f"{len(layers)}-layer model; measure the importance again"
        )
    if kept < original:
        for mlp, chosen in zip(layers, channels):
            index = torch.tensor(list(chosen), dtype=torch.long)
            mlp.gate_proj = _rows(mlp.gate_proj, index)
            mlp.up_proj = _rows(mlp.up_proj, index)
            mlp.down_proj = _columns(mlp.down_proj, index)
            if hasattr(mlp, "intermediate_size"):
                mlp.intermediate_size = kept
        owner = architectures.base_model(model[0].auto_model)
        for config in {id(c): c for c in (owner.config, model[0].auto_model.config)}.values():
            architectures.text_config(config).intermediate_size = kept
    record = {
        "mlp_keep": keep,
        "intermediate_size": kept,
        "original_intermediate_size": original,
        "importance": IMPORTANCE,
    }
    config = model[0].auto_model.config
    provenance = dict(getattr(config, "st_prune", None) or {})
    provenance["width"] = record
    config.st_prune = provenance
    return {**record, "channels": [list(map(int, c)) for c in channels]}


def _rows(linear: nn.Linear, channels: torch.Tensor) -> nn.Linear:
    cut = nn.Linear(
        linear.in_features,
        len(channels),
        bias=linear.bias is not None,
        device=linear.weight.device,
        dtype=linear.weight.dtype,
    )
    with torch.no_grad():
        cut.weight.copy_(linear.weight[channels.to(linear.weight.device)])
        if linear.bias is not None:
            cut.bias.copy_(linear.bias[channels.to(linear.bias.device)])
    return cut


def _columns(linear: nn.Linear, channels: torch.Tensor) -> nn.Linear:
    cut = nn.Linear(
        len(channels),
        linear.out_features,
        bias=linear.bias is not None,
        device=linear.weight.device,
        dtype=linear.weight.dtype,
    )
    with torch.no_grad():
        cut.weight.copy_(linear.weight[:, channels.to(linear.weight.device)])
        if linear.bias is not None:
            cut.bias.copy_(linear.bias)
    return cut
