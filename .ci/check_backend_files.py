"""Run the ONNX and OpenVINO files a model folder ships with onnxruntime and the OpenVINO runtime (no optimum)
and compare their embeddings with the folder's torch model: fp32 files within 1e-4, quantized files at cosine >= 0.99.

    python .ci/check_backend_files.py zoo/models/SmolLM2-135M-Instruct-l3prune-small --expect onnx openvino
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from st_prune.deploy.runtime import encode_with_graph, onnx_runner, openvino_runner

QUERIES = [
    "how do I reset my online banking password?",
    "a tool to compress files",
    "Why was my card payment declined?",
    "music player for the terminal",
]
DOCUMENTS = [
    "Reset your password from the login page.",
    "Debian ships packages.",
    "A small library to read and write ZIP archives.",
    "Plays MP3 and Ogg files from the command line.",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--expect", nargs="+", default=["onnx", "openvino"], help="backends that must ship files")
    args = parser.parse_args()
    model = SentenceTransformer(str(args.folder), device="cpu")
    query_prompt = model.prompts.get("query")
    reference = np.concatenate([model.encode(QUERIES, prompt=query_prompt), model.encode(DOCUMENTS)])
    files = {
        "onnx": sorted((args.folder / "onnx").glob("*.onnx")),
        "openvino": sorted((args.folder / "openvino").glob("*.xml")),
    }
    failures = [f"{args.folder}: ships no {backend} file" for backend in args.expect if not files[backend]]
    for backend, paths in files.items():
        for path in paths:
            run = onnx_runner(path) if backend == "onnx" else openvino_runner(path)
            got = np.concatenate(
                [encode_with_graph(model, run, QUERIES, prompt=query_prompt), encode_with_graph(model, run, DOCUMENTS)]
            )
            cosine = float(
                np.min(
                    np.sum(got * reference, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
                )
            )
            diff = float(np.max(np.abs(got - reference)))
            quantized = "int8" in path.name or "quint" in path.name or "qint" in path.name
            ok = cosine >= 0.99 if quantized else diff <= 1e-4
            print(
                f"{path.relative_to(args.folder)}: max |diff| {diff:.1e}, min cosine {cosine:.4f} "
                f"({'ok' if ok else 'FAILS'}: {'cosine >= 0.99' if quantized else '|diff| <= 1e-4'})"
            )
            if not ok:
                failures.append(f"{path}: max |diff| {diff:.1e}, min cosine {cosine:.4f}")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
