"""The format of local evaluation task files (JSONL, one row a line), light enough to import without mteb."""

from __future__ import annotations

#: The text fields of the local task files (every task type), in the order the deploy check draws its texts.
TEXT_FIELDS: tuple[str, ...] = ("sentence1", "sentence2", "query", "document", "text")
