"""Corpora, encoder folders and token lists shared by the vocabulary-trim tests."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import FAMILIES
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from st_prune import encoder_from_llm, export_model

# What the trim sees, and texts made only of tokens it keeps (a subset of the corpus).
TRIM_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street.",
    "How do I reset my online banking password?",
    "Two dogs run across a green field in the sun.",
]


# Words and characters the trim corpus never uses: smaller pieces, byte fallback, never a wrong id.
OTHER_TEXTS = [
    "Sentence embeddings map text to vectors for semantic search.",
    "Zebras café naïve ☃ 12345 ñ!",
    "Debian packages ship software with long descriptions.",
    "   spaced\tout\nlines  ",
]


def encoder_folder(root: Path, family: str, tokenizer: PreTrainedTokenizerFast | None, pooling: str) -> Path:
    """An exported 2-of-4-layer encoder of a tiny random ``family`` model with ``tokenizer``."""
    source = root / f"{family}-source"
    if tokenizer is not None:
        torch.manual_seed(0)
        config = FAMILIES[family](4)
        config.vocab_size = len(tokenizer)
        config.bos_token_id, config.eos_token_id, config.pad_token_id = (
            tokenizer.bos_token_id,
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
        )
        AutoModelForCausalLM.from_config(config).save_pretrained(source)
        tokenizer.save_pretrained(source)
    model = encoder_from_llm(str(source), layers=2, pooling=pooling, max_seq_length=64)
    return export_model(model, root / f"{family}-{pooling}")


def tokens(folder: Path, texts: list[str]) -> list[list[str]]:
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return [encoding.tokens for encoding in tokenizer.encode_batch(texts)]
