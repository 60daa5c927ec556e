"""``shrink``: cut an LLM or a trained embedder in depth and, optionally, in MLP width; returns the cut and its record.

The record says what was kept (layers of how many, MLP channels of how many, from what), so a later step (training,
self-distillation from the uncut model, the card) knows both the student and its teacher.

>>> model, record = shrink("Qwen/Qwen3-Embedding-0.6B", layers=14, mlp_keep=0.5, data="triplets.jsonl")
>>> record["layers"], record["intermediate_size"]
(14, 1536)
"""

from __future__ import annotations

import os
from typing import Any

from sentence_transformers import SentenceTransformer

from st_prune.data.echo import load_training_source
from st_prune.data.training_data import Prompts, to_training_data
from st_prune.errors import StPruneError
from st_prune.l3prune.scan import L3Prune
from st_prune.model import truncated_llm, width
from st_prune.model.embedder import embedder_instruction_template, embedder_prompts
from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE

#: Texts the MLP channel importance is measured on: a few batches are enough for a stable ranking of means.
IMPORTANCE_BATCHES = 8
IMPORTANCE_BATCH_SIZE = 16


def importance_texts(
    data: Any,
    prompts: Prompts = None,
    *,
    num_batches: int = IMPORTANCE_BATCHES,
    batch_size: int = IMPORTANCE_BATCH_SIZE,
    seed: int = 42,
    template: str = QUERY_PROMPT_TEMPLATE,
) -> list[tuple[list[str], str | None]]:
    """``(texts, prompt)`` batches from training data, drawn and prompted exactly as the L3Prune scan draws them
    (smaller batches when no dataset fills one: the importance needs texts, not in-batch negatives); ``template`` is
    the model's instruction format."""
    largest = max(len(dataset) for dataset in to_training_data(data, prompts, template).datasets.values())
    batch_size = max(2, min(batch_size, largest))
    selector = L3Prune(batch_size=batch_size, num_batches=num_batches, seed=seed, show_progress_bar=False)
    batches = []
    for batch in selector.sample(data, prompts, template):
        by_prompt: dict[str | None, list[str]] = {}
        for column, texts in batch.texts.items():
            by_prompt.setdefault(batch.prompts.get(column), []).extend(texts)
        batches.extend((texts, prompt) for prompt, texts in by_prompt.items())
    return batches


def shrink(
    model_name_or_path: str | os.PathLike,
    *,
    layers: int | None = None,
    fraction: float | None = None,
    mlp_keep: float = 1.0,
    data: Any = None,
    prompts: Prompts = None,
    seed: int = 42,
    **encoder_kwargs: Any,
) -> tuple[SentenceTransformer, dict[str, Any]]:
    """The cut model and the record of what it kept.

    Args:
        model_name_or_path: a decoder LLM or a trained sentence-transformers embedder (see ``encoder_from_llm``).
        layers, fraction: the depth cut (``encoder_from_llm``).
        mlp_keep: share of MLP channels every kept layer keeps, in (0, 1]; below 1 needs ``data``.
        data, prompts: training data (and trainer-style prompts) the channel importance is measured on.
        encoder_kwargs: passed to ``encoder_from_llm`` (pooling, dtype, device, ...).
    """
    keep = width.check_mlp_keep(mlp_keep)
    if keep < 1 and data is None:
        raise StPruneError(
            "MLP width pruning ranks channels by their activations on training texts; give the training data "
            "(--data FILE)"
        )
    batches = None
    if keep < 1:  # data errors before the load
        template = embedder_instruction_template(str(model_name_or_path))
        if isinstance(data, (str, os.PathLike)):  # read as `st-prune prune --data` reads it (an E5-mix folder too)
            source = load_training_source(data, template=template)
            data, prompts = source.data, prompts if prompts is not None else source.prompts
        # An embedder's channels are ranked on texts as it embeds them: its own prompts and instruction format.
        prompts = embedder_prompts(str(model_name_or_path), data, prompts)
        batches = importance_texts(data, prompts, seed=seed, template=template)
    # Looked up at call time (not imported by name): the load is the one place a Ctrl-C test stops every verb.
    model = truncated_llm.encoder_from_llm(str(model_name_or_path), layers=layers, fraction=fraction, **encoder_kwargs)
    module = model[0]
    provenance = module.provenance
    record: dict[str, Any] = {
        "source": provenance.get("cut_from", {}).get("model", provenance.get("base_model")),
        "source_kind": "sentence-transformers" if module.embedder_layout is not None else "llm",
        "layers": module.num_layers,
        "num_layers": provenance.get("cut_from", {}).get("num_layers", module.num_original_layers),
    }
    if batches is not None:
        record.update(width.prune_mlp_width(model, keep, width.channel_importance(model, batches)))
        record["importance_texts"] = sum(len(texts) for texts, _ in batches)
    else:
        size = width.mlps(model)[0].down_proj.in_features if _has_gated_mlp(model) else None
        record.update(mlp_keep=1.0, intermediate_size=size, original_intermediate_size=size)
    return model, record


def _has_gated_mlp(model: SentenceTransformer) -> bool:
    try:
        width.mlps(model)
    except StPruneError:
        return False
    return True
