"""Instructions and texts whose tokenization the prompt-format tests check."""

from __future__ import annotations

import string

INSTRUCTIONS = [
    "Given a question, retrieve passages that answer it",
    "Retrieve semantically similar text.",
    "Classify the emotion expressed in the given Twitter message into one of six emotions",
]


# Texts starting with every ASCII letter, digit and punctuation character, and a few non-ASCII scripts.
TEXTS = [start + "usic and more" for start in string.ascii_letters + string.digits + string.punctuation] + [
    "music",
    "2024 tax rules",
    '"quoted" title',
    "(aside) text",
    "¿Qué hora es?",
    "Über alles",
    "日本語のテキスト",
    "Привет мир",
    "😀 emoji",
    "→ arrow",
    "A",
]
