"""Load every model folder under MODELS_DIR with plain sentence-transformers, in a fresh process per model where
st_prune cannot be imported, and check that queries and documents embed to finite, normalised vectors.

    python .ci/check_plain_load.py zoo/models --expect small large
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

PLAIN_LOAD = r"""
import sys
sys.modules["st_prune"] = None  # the published folder must need nothing from st_prune
import numpy as np
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], trust_remote_code=False)
queries = model.encode_query(["how do I reset my online banking password?", "music"])
documents = model.encode_document(["Reset your password from the login page.", "Debian ships packages."])
for name, array in (("queries", queries), ("documents", documents)):
    assert np.isfinite(array).all(), f"{name}: non-finite embeddings"
    assert np.allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-3), f"{name}: not normalised"
similarity = model.similarity(queries, documents)
assert similarity[0, 0] > similarity[0, 1], f"the banking query prefers the wrong document: {similarity}"
print(f"{sys.argv[1]}: dim {queries.shape[1]}, prompts {sorted(model.prompts)}, similarity {similarity.numpy().round(3).tolist()}")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("--expect", nargs="+", default=[], help="variant names that must be present (folder suffixes)")
    args = parser.parse_args()
    folders = sorted(path.parent for path in args.models_dir.glob("*/modules.json"))
    missing = [name for name in args.expect if not any(folder.name.endswith(f"-{name}") for folder in folders)]
    if missing:
        print(f"no model folder for variant(s) {', '.join(missing)} under {args.models_dir}", file=sys.stderr)
        return 1
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    for folder in folders:
        # cwd=/ so that nothing of the checkout is importable either
        subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(folder.resolve())], check=True, env=env, cwd="/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
