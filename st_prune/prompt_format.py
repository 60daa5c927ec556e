"""How an instruction becomes the prompt put before a query: st-prune's format, and a trained embedder's own.

One home for the format, below every package that uses it: the data loaders (``st_prune.data``), the cut of a
trained embedder (``st_prune.model.embedder``), the scan, training and evaluation all format instructions the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: How an instruction becomes the prompt put before a text (LLM2Vec / E5-Mistral: the instruction, then the text).
#: Two properties decide the format, and ``Pooling(include_prompt=False)`` needs both to exclude exactly the prompt:
#:
#: - it tokenizes the same alone as in front of any text, or the prompt length cuts into the text (or leaves a
#:   prompt token in). A trailing space merges into the text's first word; a trailing ":" does in Llama-3 and Qwen2/3
#:   (their pre-tokenizer glues one punctuation character to the letters after it: ":music" is one piece, 19 of 31
#:   test texts broke) and, in SmolLM2 and Gemma-3, into a text starting with a quote, bracket or dash;
#: - it ends in non-whitespace: sentence-transformers 5.x strips every text, the prompt included, before measuring
#:   its length, so a trailing "\n" (the previous format, "{instruction}:\n") was pooled with the text under 5.x
#:   and excluded under 6.x (one-word queries: cosine 0.84 between the two).
#:
#: " →" (space, arrow) is a piece of its own in the SmolLM2, Gemma-3, Llama-3.2 and Qwen2 tokenizers and no
#: text's first character merges into it (126 texts starting with every ASCII letter, digit and punctuation
#: character, accented, CJK, Cyrillic, emoji, arrows; tests/e2e/test_prompt_format_smollm2.py keeps checking SmolLM2).
#: ``st_prune.evaluation.prompts.INSTRUCTION_TEMPLATE`` is this same object.
QUERY_PROMPT_TEMPLATE = "{instruction} →"

#: A trained embedder's own instruction format, recognised from its query prompt: ``Instruct: ...\nQuery:`` is the
#: format of Qwen3-Embedding, e5-mistral-7b-instruct and gte-Qwen2 (with or without a space after "Query:"). A cut of
#: such a model is scanned, trained and evaluated with instructions in that format, the one it was trained on. The
#: trailing ":" that rules it out as st-prune's format (it can merge into the text's first token) costs nothing here:
#: these models pool the last token (EOS), so no prompt is excluded from pooling, and a cut keeps the model's pooling.
INSTRUCT_QUERY_PROMPT = re.compile(r"Instruct: .+\nQuery:(?P<tail>\s*)", re.DOTALL)


def instruction_prompt(instruction: str | None, template: str = QUERY_PROMPT_TEMPLATE) -> str | None:
    """The prompt for a query with this instruction (``None`` for no or an empty instruction), in ``template``
    (st-prune's format unless a trained embedder has its own: ``instruction_template``).

    >>> instruction_prompt("Retrieve semantically similar text.")
    'Retrieve semantically similar text →'
    >>> instruction_prompt("Retrieve semantically similar text.", "Instruct: {instruction}\\nQuery:")
    'Instruct: Retrieve semantically similar text\\nQuery:'
    """
    if instruction is None:
        return None
    text = instruction.strip().rstrip(".:").strip()
    return template.replace("{instruction}", text) if text else None


def instruction_template(prompts: Mapping[str, str] | None) -> str:
    """How a model puts an instruction before a query, read from its own ``query`` prompt: the ``Instruct: ...\\nQuery:``
    format of Qwen3-Embedding and e5-mistral when its prompt has that shape, else st-prune's ``"{instruction} →"``
    (the format of every model st-prune made, and of a base LLM, which has none of its own).

    >>> instruction_template({"query": "Instruct: Given a web search query, retrieve relevant passages\\nQuery: "})
    'Instruct: {instruction}\\nQuery: '
    >>> instruction_template(None)
    '{instruction} →'
    """
    match = INSTRUCT_QUERY_PROMPT.fullmatch((prompts or {}).get("query") or "")
    return "Instruct: {instruction}\nQuery:" + match["tail"] if match else QUERY_PROMPT_TEMPLATE
