"""Tokens and organisation of the recipe tests' fake Hub."""

from __future__ import annotations

WRITE_TOKEN = "hf_RecipeWriteTokenThatMustNeverLeak0123"


READ_TOKEN = "hf_RecipeReadTokenThatMustNeverLeak01234"


ORG = "st-prune-test"
