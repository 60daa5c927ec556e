"""CPU inference of a pruned model: torch vs the ONNX and OpenVINO files `st-prune deploy` ships, side by side.

For each backend file (fp32 and int8): seconds to encode the same texts (timed round-robin, so all backends
share the machine's conditions), speedup over torch, cosine to torch's embeddings, and nDCG@10 on the Debian dev
retrieval task of the shared data (one-line summaries -> package descriptions). Files run with their runtimes
directly (onnxruntime, openvino) around the model's own tokenizer and pooling, as sentence-transformers'
backends run them; OpenVINO with the runtime's default precision (what a user gets).

    nice -n 10 python bench/bench_deploy.py --model /tmp/smollm2-small [--data DIR] [--pairs 300] [--timing-texts 128]

A --model folder that already has deploy files (deploy.json) is timed as it is (nothing is re-exported); the
machine's load average is printed before and after, since timings on a shared machine move with it.

Without --model, SmolLM2-135M-Instruct cut to 5 layers (the main job's `small` variant, untrained) is built.
The model folder is copied; the deploy files are written to the copy.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np
from common import TASK_INSTRUCTIONS, add_data_argument, data_file, round_robin_seconds, smollm2_gguf  # noqa: E402

from st_prune.deploy.deploy import deploy
from st_prune.deploy.runtime import encode_with_graph, onnx_runner, openvino_runner
from st_prune.prompt_format import instruction_prompt
from st_prune.util.machine import machine_description


def ndcg_at_10(queries: np.ndarray, documents: np.ndarray) -> float:
    """nDCG@10 with one relevant document per query (query i <-> document i), on normalized embeddings."""
    scores = queries @ documents.T
    ranks = (scores > scores[np.arange(len(queries)), np.arange(len(queries))][:, None]).sum(axis=1) + 1
    return float(np.mean(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0.0)))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a folder st-prune prune/train wrote (default: build SmolLM2 5/30)")
    add_data_argument(parser)
    parser.add_argument("--pairs", type=int, default=300, help="Debian dev query/document pairs for nDCG@10")
    parser.add_argument("--timing-texts", type=int, default=128, help="documents encoded per timed call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    rows = [json.loads(line) for line in data_file(args.data, "dev", "debian-dev.jsonl").read_text().splitlines()]
    rows = rows[: args.pairs]
    queries, documents = [row["query"] for row in rows], [row["document"] for row in rows]
    prompt = instruction_prompt(TASK_INSTRUCTIONS["debian"])
    timing_texts = documents[: args.timing_texts]

    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as work:
        folder = Path(work) / "model"
        if args.model and (args.model / "deploy.json").is_file():
            folder = args.model  # already deployed (e.g. by the recipe's stage): time what ships
            report = json.loads((folder / "deploy.json").read_text())
        else:
            if args.model:
                shutil.copytree(args.model, folder)
            else:
                from st_prune import encoder_from_llm, export_model

                export_model(encoder_from_llm(smollm2_gguf(), layers=5), folder)
            # The quantized files are checked on the dev texts themselves (prompted queries and documents).
            report = deploy(folder, quantize=["int8"], texts=queries[:100] + documents[:100])
        load_before = os.getloadavg()
        model = SentenceTransformer(str(folder), device="cpu")
        model.eval()

        encoders = {
            "torch": lambda texts, prompt=None: model.encode(
                texts, prompt=prompt, batch_size=args.batch_size, convert_to_numpy=True
            )
        }
        for name, entry in report["files"].items():
            if not entry["shipped"]:
                continue
            path = folder / name
            runner = onnx_runner(path) if name.startswith("onnx/") else openvino_runner(path, precision=None)
            encoders[name] = lambda texts, prompt=None, runner=runner: encode_with_graph(
                model, runner, texts, prompt=prompt, batch_size=args.batch_size
            )

        steps = {name: (lambda encode=encode: encode(timing_texts)) for name, encode in encoders.items()}
        seconds = round_robin_seconds(steps, args.rounds)
        embeddings = {name: (encode(queries, prompt), encode(documents)) for name, encode in encoders.items()}

    torch_seconds = statistics.median(seconds["torch"]["wall"])
    torch_queries, torch_documents = embeddings["torch"]
    torch_ndcg = ndcg_at_10(torch_queries, torch_documents)
    print(f"{args.model or 'SmolLM2-135M-Instruct 5/30 layers (untrained)'}; {machine_description()}")
    before, after = (" ".join(f"{value:.1f}" for value in loads) for loads in (load_before, os.getloadavg()))
    print(f"load average (1, 5, 15 min) before timing: {before}, after: {after}")
    print(
        "versions: "
        + ", ".join(
            f"{name} {importlib.metadata.version(name)}"
            for name in ("torch", "sentence-transformers", "onnxruntime", "openvino", "nncf")
        )
    )
    import openvino

    # The runtime's default precision (what optimum-intel / sentence-transformers' backend gets): bf16 only on
    # CPUs with AVX512-BF16 or AMX, else f32 - then the OpenVINO rows below are fp32 arithmetic.
    print(
        "OpenVINO CPU default inference precision here:",
        openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"),
    )
    print(
        f"timing: {len(timing_texts)} Debian descriptions, batch {args.batch_size}, median of {args.rounds} "
        f"round-robin rounds; quality: {len(rows)} Debian dev queries vs their {len(rows)} descriptions"
    )
    print(f"{'file':<42} {'seconds':>8} {'speedup':>8} {'cos min':>8} {'cos mean':>9} {'nDCG@10':>8} {'Δ nDCG':>7}")
    for name, taken in seconds.items():
        median = statistics.median(taken["wall"])
        query_vectors, document_vectors = embeddings[name]
        similar = np.concatenate([cosines(query_vectors, torch_queries), cosines(document_vectors, torch_documents)])
        ndcg = ndcg_at_10(query_vectors, document_vectors)
        print(
            f"{name:<42} {median:>8.2f} {torch_seconds / median:>7.2f}x {similar.min():>8.4f} {similar.mean():>9.4f} "
            f"{100 * ndcg:>8.2f} {100 * (ndcg - torch_ndcg):>+7.2f}"
        )
    for name, entry in report["files"].items():
        if not entry["shipped"]:
            print(f"{name:<42} not shipped: {entry['reason']}")


if __name__ == "__main__":
    main()
