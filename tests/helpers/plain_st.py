"""Load a saved model with plain sentence-transformers in a fresh process where st_prune cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

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
