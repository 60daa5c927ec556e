"""The repository root and the libraries `--help` must not import."""

from __future__ import annotations

from paths import ROOT  # noqa: F401  (re-exported for the first-contact tests)

HEAVY = ("torch", "sentence_transformers", "transformers", "mteb", "datasets", "peft")
