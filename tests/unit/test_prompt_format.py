"""The one instruction format: excluded exactly from pooling, and measured alike by sentence-transformers 5.x and 6.x.

ST 6.x measures a prompt as ``len(tokenize(prompt))``; ST 5.x as ``len(tokenize(prompt.strip()))`` (it strips every
text). Both run the model on the same ``prompt + text`` tokens, so they pool the same tokens exactly when the
prompt survives ``strip()`` and its tokens are a prefix of the prompted text's.
"""

from __future__ import annotations

import pytest
from datasets import Dataset
from prompt_texts import INSTRUCTIONS

from st_prune.data.triplets import split_by_instruction
from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE, instruction_prompt, instruction_template


def test_every_prompt_survives_sentence_transformers_5_strip():
    for instruction in INSTRUCTIONS:
        prompt = instruction_prompt(instruction)
        assert prompt == prompt.strip(), prompt
    assert QUERY_PROMPT_TEMPLATE.format(instruction="x") == QUERY_PROMPT_TEMPLATE.format(instruction="x").strip()


@pytest.mark.parametrize(
    ("query_prompt", "template"),
    [
        ("Instruct: Given a web search query, retrieve relevant passages\nQuery:", "Instruct: {instruction}\nQuery:"),
        ("Instruct: Retrieve semantically similar text.\nQuery: ", "Instruct: {instruction}\nQuery: "),
        ("Given a query, retrieve relevant passages that answer the query →", QUERY_PROMPT_TEMPLATE),
        ("query: ", QUERY_PROMPT_TEMPLATE),
        (None, QUERY_PROMPT_TEMPLATE),
    ],
)
def test_instruction_template_is_the_models_own_format(query_prompt, template):
    """Qwen3-Embedding / e5-mistral prompts give their "Instruct: ...\\nQuery:" format; anything else st-prune's."""
    assert instruction_template({"query": query_prompt} if query_prompt is not None else None) == template


def test_instructions_become_prompts_in_the_given_format():
    assert instruction_prompt("Retrieve text.", "Instruct: {instruction}\nQuery:") == "Instruct: Retrieve text\nQuery:"
    rows = Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"], "instruction": ["Find {it}", None]})
    _, prompts = split_by_instruction(rows, template="Instruct: {instruction}\nQuery:")
    assert [p["anchor"] for p in prompts.values()] == ["Instruct: Find {it}\nQuery:"]  # braces in it are kept
