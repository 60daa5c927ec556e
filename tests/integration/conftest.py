"""Fixtures of the integration tier."""

from __future__ import annotations

import pytest


@pytest.fixture()
def no_model_load(monkeypatch):
    """Loading a model fails the test: the checks a command makes first (data, destination, device) must refuse
    before any model is loaded."""
    import st_prune.model.truncated_llm

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the checks that must come first")

    monkeypatch.setattr(st_prune.model.truncated_llm, "encoder_from_llm", refuse)
