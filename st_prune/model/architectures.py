"""Where each decoder family keeps its layer stack, its final norm and its per-layer config lists.

Most decoder LLMs in transformers (Llama, Mistral, Qwen2/2.5/3, Phi-3, Gemma 1/2/3, SmolLM, OLMo, ...)
expose ``<base>.layers`` (an ``nn.ModuleList``) and ``<base>.norm`` on the base model that
``AutoModel`` returns. Families that name them differently are listed in ``LAYOUTS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from st_prune.errors import StPruneError


@dataclass(frozen=True)
class Layout:
    """Attribute paths, relative to the base model, of the decoder layer stack and the final norm."""

    layers: str = "layers"
    final_norm: str = "norm"


DEFAULT_LAYOUT = Layout()

# Families whose base model does not follow the `layers` / `norm` convention.
LAYOUTS: dict[str, Layout] = {
    "gpt2": Layout("h", "ln_f"),
    "gpt_neox": Layout("layers", "final_layer_norm"),
    "falcon": Layout("h", "ln_f"),
    "gptj": Layout("h", "ln_f"),
    "phi": Layout("layers", "final_layernorm"),
    "opt": Layout("decoder.layers", "decoder.final_layer_norm"),
    "bloom": Layout("h", "ln_f"),
}

# Families tested end to end (tests/integration/test_truncated_llm.py builds a tiny random model of each).
TESTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text")

# Config attributes that hold layer *indices* (not one value per layer): kept entries are those < k.
LAYER_INDEX_LISTS = ("mlp_only_layers",)


def text_config(config: PretrainedConfig) -> PretrainedConfig:
    """The config that describes the decoder stack (multimodal wrappers keep it in ``text_config``)."""
    inner = getattr(config, "text_config", None)
    if inner is not None and getattr(inner, "num_hidden_layers", None) is not None:
        return inner
    return config


def num_layers(config: PretrainedConfig) -> int:
    layers = getattr(text_config(config), "num_hidden_layers", None)
    if not isinstance(layers, int):
        raise StPruneError(
            f"{config.model_type!r} config has no integer `num_hidden_layers`; st-prune cuts decoder LLMs "
            "(Llama, Mistral, Qwen, Phi-3, Gemma, ...)."
        )
    return layers


def check_is_decoder(config: PretrainedConfig) -> None:
    """Refuse encoder-only and encoder-decoder models before any weights are loaded."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    model_type = config.model_type
    if getattr(config, "is_encoder_decoder", False):
        raise StPruneError(
            f"{model_type!r} is an encoder-decoder model; st-prune cuts decoder-only LLMs "
            "(Llama, Mistral, Qwen, Phi-3, Gemma, ...)."
        )
    # Masked-LM families (BERT, RoBERTa, DeBERTa, ModernBERT, ...) are encoders; no decoder LLM is in that table.
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise StPruneError(
            f"{model_type!r} is an encoder-only model; st-prune cuts decoder-only LLMs (Llama, Mistral, Qwen, "
            "Phi-3, Gemma, ...). Use it with sentence_transformers.SentenceTransformer directly."
        )


def layers_to_keep(total: int, layers: int | None = None, fraction: float | None = None) -> int:
    """Number of layers kept: ``layers`` itself, or ``int(total * (1 - fraction))`` (the paper's rule)."""
    if layers is not None and fraction is not None:
        raise StPruneError("give either layers=K or fraction=P, not both")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
            raise StPruneError(f"fraction must be in [0, 1) (the share of layers to drop), got {fraction!r}")
        kept = int(total * (1 - fraction))
        if kept < 1:
            raise StPruneError(
                f"fraction={fraction} keeps int({total} * (1 - {fraction})) = 0 of {total} layers; "
                f"use a fraction below {1 - 1 / total:.4f}"
            )
        return kept
    if layers is None:
        return total
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= total:
        raise StPruneError(f"layers must be an integer in [1, {total}] for this {total}-layer model, got {layers!r}")
    return layers


def cut_config_overrides(config: PretrainedConfig, kept: int) -> dict[str, Any]:
    """Config values that make ``config`` describe its first ``kept`` decoder layers.

    Besides ``num_hidden_layers``, any top-level list with one entry per layer is cut (``layer_types``
    of Qwen2/3 and Gemma 2/3, ``no_rope_layers``, ...), layer-index lists keep indices below ``kept``,
    and ``max_window_layers`` (Qwen2) is clipped so it never names a layer that is gone.
    """
    inner = text_config(config)
    total = num_layers(config)
    overrides: dict[str, Any] = {"num_hidden_layers": kept}
    for key, value in inner.to_dict().items():
        if key in LAYER_INDEX_LISTS and isinstance(value, (list, tuple)):
            overrides[key] = [index for index in value if index < kept]
        elif isinstance(value, (list, tuple)) and len(value) == total and key != "architectures":
            overrides[key] = list(value[:kept])
    if isinstance(getattr(inner, "max_window_layers", None), int):
        overrides["max_window_layers"] = min(inner.max_window_layers, kept)
    return overrides


def apply_cut_to_config(config: PretrainedConfig, kept: int) -> None:
    inner = text_config(config)
    for key, value in cut_config_overrides(config, kept).items():
        setattr(inner, key, value)


def _get_path(root: nn.Module, path: str) -> Any:
    target: Any = root
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model that owns the decoder stack, under any PEFT or ``*ForCausalLM`` wrapping."""
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and _find_layers(module) is not None:
            return module
    return model


def _layout(model: nn.Module) -> Layout:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return LAYOUTS.get(model_type, DEFAULT_LAYOUT)


def _find_layers(module: nn.Module) -> nn.ModuleList | None:
    layers = _get_path(module, _layout(module).layers)
    return layers if isinstance(layers, nn.ModuleList) else None


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layer stack of ``model`` (a transformers model, possibly PEFT-wrapped)."""
    owner = base_model(model)
    layers = _find_layers(owner)
    if layers is None:
        model_type = getattr(getattr(owner, "config", None), "model_type", type(owner).__name__)
        raise StPruneError(
            f"cannot find the decoder layer stack of {model_type!r} ({type(owner).__name__}); add its layout "
            "(layer list and final norm attribute names) to st_prune.model.architectures.LAYOUTS"
        )
    return layers


def final_norm(model: nn.Module) -> nn.Module:
    """The norm applied after the last decoder layer (kept by every cut)."""
    owner = base_model(model)
    norm = _get_path(owner, _layout(owner).final_norm)
    if not isinstance(norm, nn.Module):
        raise StPruneError(
            f"cannot find the final norm of {type(owner).__name__}; add its layout to st_prune.model.architectures.LAYOUTS"
        )
    return norm


def cut_model(model: nn.Module, kept: int) -> None:
    """Physically drop decoder layers ``kept..L-1`` of a loaded model and update its config to match."""
    layers = decoder_layers(model)
    total = len(layers)
    if not 1 <= kept <= total:
        raise StPruneError(f"layers must be an integer in [1, {total}] for this {total}-layer model, got {kept!r}")
    del layers[kept:]
    owner = base_model(model)
    configs = {id(owner.config): owner.config}
    top_config = getattr(model, "config", None)
    if isinstance(top_config, PretrainedConfig):
        configs[id(top_config)] = top_config
    for config in configs.values():
        if num_layers(config) != kept:
            apply_cut_to_config(config, kept)
