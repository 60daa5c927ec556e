"""SmolLM2's real tokenizer tokenizes every prompt alone exactly as in front of any text."""

from __future__ import annotations

import pytest
from prompt_texts import INSTRUCTIONS, TEXTS

from st_prune.prompt_format import instruction_prompt


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
