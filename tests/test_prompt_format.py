"""The one instruction format: excluded exactly from pooling, and measured alike by sentence-transformers 5.x and 6.x.

ST 6.x measures a prompt as ``len(tokenize(prompt))``; ST 5.x as ``len(tokenize(prompt.strip()))`` (it strips every
text). Both run the model on the same ``prompt + text`` tokens, so they pool the same tokens exactly when the
prompt survives ``strip()`` and its tokens are a prefix of the prompted text's.
"""

from __future__ import annotations

import string

import pytest

from st_prune.data.triplets import QUERY_PROMPT_TEMPLATE, instruction_prompt

INSTRUCTIONS = ["Given a question, retrieve passages that answer it", "Retrieve semantically similar text.",
                "Classify the emotion expressed in the given Twitter message into one of six emotions"]
# Texts starting with every ASCII letter, digit and punctuation character, and a few non-ASCII scripts.
TEXTS = [start + "usic and more" for start in string.ascii_letters + string.digits + string.punctuation] + [
    "music", "2024 tax rules", '"quoted" title', "(aside) text", "¿Qué hora es?", "Über alles", "日本語のテキスト",
    "Привет мир", "😀 emoji", "→ arrow", "A",
]


def test_every_prompt_survives_sentence_transformers_5_strip():
    for instruction in INSTRUCTIONS:
        prompt = instruction_prompt(instruction)
        assert prompt == prompt.strip(), prompt
    assert QUERY_PROMPT_TEMPLATE.format(instruction="x") == QUERY_PROMPT_TEMPLATE.format(instruction="x").strip()


@pytest.mark.real_llm
def test_smollm2_tokenizes_the_prompt_alone_as_in_front_of_any_text(smollm2_gguf):
    from transformers import AutoTokenizer

    from st_prune.model.truncated_llm import dequantized_gguf_folder

    tokenizer = AutoTokenizer.from_pretrained(str(dequantized_gguf_folder(smollm2_gguf)))

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    for instruction in INSTRUCTIONS:
        prompt = instruction_prompt(instruction)
        alone = ids(prompt)
        assert len(ids(prompt.strip())) == len(alone)  # ST 5.x's measure == ST 6.x's
        broken = [text for text in TEXTS if ids(prompt + text)[: len(alone)] != alone]
        assert broken == [], prompt
    # The previous format's trailing newline is a token of its own that ST 5.x's strip dropped from the measure.
    old = f"{INSTRUCTIONS[0]}:\n"
    assert len(ids(old.strip())) == len(ids(old)) - 1
