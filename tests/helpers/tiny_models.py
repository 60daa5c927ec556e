"""Tiny random decoder LLMs of every supported family, saved as local folders with a small real tokenizer.

The tokenizer is a byte-level BPE trained on a few sentences (vocab ~300) with BOS/EOS and a chat
template, so the traps of real LLM tokenizers (chat templates, no pad token, BOS prefix) are present.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    BertConfig,
    BertModel,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street.",
    "Given a question, retrieve passages that answer the question.",
    "Sentence embeddings map text to vectors for semantic search.",
    "Large language models are overparameterized text encoders.",
    "How do I reset my online banking password?",
    "Debian packages ship software with long descriptions.",
    "Two dogs run across a green field in the sun.",
] * 4

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

COMMON = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, vocab_size=320)

FAMILIES = {
    "llama": lambda layers: LlamaConfig(num_hidden_layers=layers, **COMMON),
    "mistral": lambda layers: MistralConfig(num_hidden_layers=layers, sliding_window=16, **COMMON),
    "qwen2": lambda layers: Qwen2Config(
        num_hidden_layers=layers, use_sliding_window=True, sliding_window=16, max_window_layers=2, **COMMON
    ),
    "qwen3": lambda layers: Qwen3Config(num_hidden_layers=layers, head_dim=8, **COMMON),
    "phi3": lambda layers: Phi3Config(num_hidden_layers=layers, pad_token_id=0, **COMMON),
    "gemma": lambda layers: GemmaConfig(num_hidden_layers=layers, head_dim=8, **COMMON),
    "gemma2": lambda layers: Gemma2Config(num_hidden_layers=layers, head_dim=8, sliding_window=16, **COMMON),
    "gemma3_text": lambda layers: Gemma3TextConfig(
        num_hidden_layers=layers, head_dim=8, sliding_window=16, sliding_window_pattern=2, **COMMON
    ),
}


def build_tokenizer(*, bos: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with <s>, </s>, chat tokens and a chat template; no pad token (like Llama)."""
    specials = ["<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=COMMON["vocab_size"],
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
        )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=128
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def make_tiny_llm(folder: str | Path, family: str = "llama", layers: int = 4, seed: int = 0) -> Path:
    """Save a random ``family`` causal LM with ``layers`` decoder layers and the tiny tokenizer into ``folder``."""
    folder = Path(folder)
    torch.manual_seed(seed)
    config = FAMILIES[family](layers)
    tokenizer = build_tokenizer()
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_config(config)
    # Random init leaves norms at exactly 1 or 0 (Gemma); perturb them so a skipped norm cannot hide.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_bert(folder: str | Path) -> Path:
    """An encoder-only model, which st-prune must refuse."""
    folder = Path(folder)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=320
    )
    BertModel(config).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return folder
