"""The one instruction format: excluded exactly from pooling, and measured alike by sentence-transformers 5.x and 6.x.

ST 6.x measures a prompt as ``len(tokenize(prompt))``; ST 5.x as ``len(tokenize(prompt.strip()))`` (it strips every
text). Both run the model on the same ``prompt + text`` tokens, so they pool the same tokens exactly when the
prompt survives ``strip()`` and its tokens are a prefix of the prompted text's.
"""

from __future__ import annotations

from prompt_texts import INSTRUCTIONS

from st_prune.data.triplets import QUERY_PROMPT_TEMPLATE, instruction_prompt


def test_every_prompt_survives_sentence_transformers_5_strip():
    for instruction in INSTRUCTIONS:
        prompt = instruction_prompt(instruction)
        assert prompt == prompt.strip(), prompt
    assert QUERY_PROMPT_TEMPLATE.format(instruction="x") == QUERY_PROMPT_TEMPLATE.format(instruction="x").strip()
