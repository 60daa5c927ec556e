"""Unit tier: building a transformers model or starting a Python process fails the test (tests/helpers/tiers.py)."""

from __future__ import annotations

import pytest
from tiers import forbid_models_and_python_processes


@pytest.fixture(autouse=True)
def no_model_and_no_python_process(monkeypatch):
    forbid_models_and_python_processes(monkeypatch)
