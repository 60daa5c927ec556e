"""Tiny random sentence-transformers embedders over tiny random decoders, in the layouts of real ones.

- ``qwen3_last_token``: Qwen3-Embedding's layout: last-token pooling, left padding, EOS appended by the tokenizer's
  post-processor, Normalize, query/document prompts;
- ``mistral_eos``: e5-mistral's: a ``<s> $A </s>`` post-processor, right padding, last-token pooling, Normalize, an
  instruction prompt for queries;
- ``llama_mean_dense``: mean pooling, then a Dense projection (32 -> 16, Tanh), dot-product similarity.

Each is saved by plain sentence-transformers (no st_prune involved), as a user's trained model would be.
"""

from __future__ import annotations

from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import (
    Dense,
    Normalize,
    Pooling,
    Transformer,
)
from tiny_models import make_tiny_llm
from tokenizers import processors

PLAIN_TEXT = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
QWEN3_PROMPTS = {"query": "Instruct: Given a web search query, retrieve relevant passages\nQuery:", "document": ""}
MISTRAL_PROMPTS = {"query": "Instruct: Retrieve semantically similar text.\nQuery: "}

SHAPES = ("qwen3_last_token", "mistral_eos", "llama_mean_dense")


def _append_eos(transformer: Transformer) -> None:
    """A post-processor that ends every text with EOS (after BOS), saved in tokenizer.json."""
    tokenizer = transformer.tokenizer
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 $B:1 {eos}:1",
        special_tokens=[(bos, tokenizer.bos_token_id), (eos, tokenizer.eos_token_id)],
    )


def make_tiny_embedder(folder: str | Path, shape: str, layers: int = 4, seed: int = 0) -> Path:
    """Save a tiny random sentence-transformers embedder of ``shape`` (see ``SHAPES``) into ``folder``."""
    folder = Path(folder)
    family = {"qwen3_last_token": "qwen3", "mistral_eos": "mistral", "llama_mean_dense": "llama"}[shape]
    llm = make_tiny_llm(folder.with_name(folder.name + "-llm"), family, layers, seed=seed)
    # Qwen3-Embedding pads on the left, set where sentence-transformers saves it (sentence_bert_config.json).
    processor_kwargs = {"padding_side": "left"} if shape == "qwen3_last_token" else None
    transformer = Transformer(
        str(llm),
        modality_config=PLAIN_TEXT,
        module_output_name="token_embeddings",
        max_seq_length=96,
        processor_kwargs=processor_kwargs,
    )
    tokenizer = transformer.tokenizer
    tokenizer.pad_token = tokenizer.eos_token
    hidden = transformer.get_embedding_dimension()
    torch.manual_seed(seed)
    if shape == "qwen3_last_token":
        _append_eos(transformer)
        modules = [transformer, Pooling(hidden, pooling_mode="lasttoken"), Normalize()]
        model = SentenceTransformer(modules=modules, prompts=QWEN3_PROMPTS)
    elif shape == "mistral_eos":
        _append_eos(transformer)
        tokenizer.padding_side = "right"
        modules = [transformer, Pooling(hidden, pooling_mode="lasttoken"), Normalize()]
        model = SentenceTransformer(modules=modules, prompts=MISTRAL_PROMPTS)
    else:
        tokenizer.padding_side = "right"
        dense = Dense(hidden, 16, activation_function=torch.nn.Tanh())
        modules = [transformer, Pooling(hidden, pooling_mode="mean"), dense]
        model = SentenceTransformer(modules=modules, similarity_fn_name="dot")
    model.save(str(folder))
    return folder
