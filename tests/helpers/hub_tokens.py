"""The fake Hub's repo and tokens for the publish tests (distinctive, so a leak is easy to catch)."""

from __future__ import annotations

REPO = "st-prune-test/tiny-encoder"


# Distinctive tokens: any leak into an error, a log line or printed output is easy to catch.
WRITE_TOKEN = "hf_WriteTokenThatMustNeverLeak0123456789"
