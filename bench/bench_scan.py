"""L3Prune scan cost vs one plain forward over the same batches, and the picks on real LLMs, measured in one run.

Goals: scan time <= 1.15 x the plain forward pass; extra peak memory <= 10 % of the plain forward's peak.

- time: the public ``st_prune.l3prune.scan`` (tokenization, one hooked forward per text group, per-layer norm +
  pooling, L losses) against the same tokenization + plain ``SentenceTransformer`` forwards of the same batches,
  batch by batch back to back in alternating order, ``--repeats`` times; best per batch, summed (a shared CPU
  makes single runs noisy, so the median per-batch ratio is printed too);
- memory: each mode in a fresh subprocess over the first ``--memory-batches`` batches; on CPU the resident-set high-water mark of the pass (``VmHWM`` after
  resetting it through ``/proc/self/clear_refs``), on CUDA ``torch.cuda.max_memory_allocated``; "peak" includes
  the weights, "working" is the peak minus what was resident before the pass;
- picks: small/large, parameter counts and the curve (PNG + JSON in ``--output-dir``).

    python bench/bench_scan.py [--gemma] [--batch-size 16] [--num-batches 4] [--max-seq-length 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import TASK_INSTRUCTIONS, add_data_argument, data_file, gemma_gguf, smollm2_gguf  # noqa: E402  (bench/ is on sys.path)

from st_prune import encoder_from_llm
from st_prune.data.triplets import load_triplets
from st_prune.l3prune.scan import L3Prune, L3PruneResult, ScanBatch, scan


def plain_pass(model, batches: list[ScanBatch]) -> None:
    """What a normal forward of the same batches costs: same tokenization and text groups, no hooks."""
    with torch.inference_mode():
        for batch in batches:
            by_prompt: dict[str | None, list[str]] = {}
            for column in batch.texts:
                by_prompt.setdefault(batch.prompts.get(column), []).append(column)
            for prompt, columns in by_prompt.items():
                texts = [text for column in columns for text in batch.texts[column]]
                features = model.preprocess(texts, prompt=prompt)
                features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
                model(features)["sentence_embedding"]
    _sync(model)


def scan_pass(model, batches: list[ScanBatch], scale: float):
    result = scan(model, batches, scale=scale, show_progress_bar=False)
    _sync(model)
    return result


def _sync(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def setup(args: argparse.Namespace, model_path: str):
    model = encoder_from_llm(model_path, pooling=args.pooling, max_seq_length=args.max_seq_length, device=args.device)
    data = load_triplets(data_file(args.data, "train", "triplets.jsonl"), instructions=TASK_INSTRUCTIONS)
    selector = L3Prune(batch_size=args.batch_size, num_batches=args.num_batches, seed=args.seed, scale=args.scale)
    return model, selector.sample(data)


# --- memory, one mode per fresh process --------------------------------------------------------------------------
def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(args: argparse.Namespace) -> None:
    model, batches = setup(args, args.model_path)
    batches = batches[: args.memory_batches]
    gc.collect()
    if model.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
        before = _rss_kb("VmRSS") * 1024
    if args.memory_child == "plain":
        plain_pass(model, batches)
    else:
        scan_pass(model, batches, args.scale)
    peak = torch.cuda.max_memory_allocated() if model.device.type == "cuda" else _rss_kb("VmHWM") * 1024
    print(json.dumps({"before": before, "peak": peak}))


def measure_memory(args: argparse.Namespace, model_path: str, mode: str) -> dict[str, int]:
    command = [
        sys.executable,
        __file__,
        "--memory-child",
        mode,
        "--model-path",
        model_path,
        "--data",
        str(args.data),
        "--batch-size",
        str(args.batch_size),
        "--num-batches",
        str(args.num_batches),
        "--seed",
        str(args.seed),
        "--scale",
        str(args.scale),
        "--memory-batches",
        str(args.memory_batches),
        "--pooling",
        args.pooling,
        "--max-seq-length",
        str(args.max_seq_length),
    ]
    if args.device:
        command += ["--device", args.device]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory child ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- one model ---------------------------------------------------------------------------------------------------
def bench_model(args: argparse.Namespace, name: str, model_path: str) -> dict:
    start = time.perf_counter()
    model, batches = setup(args, model_path)
    load_s = time.perf_counter() - start
    tokens = sum(
        int(model.preprocess(texts, prompt=batch.prompts[column])["attention_mask"].sum())
        for batch in batches
        for column, texts in batch.texts.items()
    )
    plain_pass(model, batches[:1])  # warm-up (kernels, allocator)
    # Batch by batch, plain and scan back to back in alternating order, so load from other processes hits both alike.
    plain_times = [[0.0] * len(batches) for _ in range(args.repeats)]
    scan_times = [[0.0] * len(batches) for _ in range(args.repeats)]
    per_batch_losses: list[list[float]] = [[] for _ in batches]
    for repeat in range(args.repeats):
        for index, batch in enumerate(batches):
            for mode in ("plain", "scan") if (index + repeat) % 2 == 0 else ("scan", "plain"):
                start = time.perf_counter()
                if mode == "plain":
                    plain_pass(model, [batch])
                    plain_times[repeat][index] = time.perf_counter() - start
                else:
                    part = scan_pass(model, [batch], args.scale)
                    scan_times[repeat][index] = time.perf_counter() - start
                    per_batch_losses[index] = part.losses
    losses = torch.tensor(per_batch_losses, dtype=torch.float64)
    result = L3PruneResult(
        losses=losses.mean(0).tolist(),
        stds=losses.std(0, unbiased=False).tolist(),
        parameters=part.parameters,
        other_parameters=part.other_parameters,
        model=name,
        batch_size=args.batch_size,
        num_batches=len(batches),
        seed=args.seed,
        scale=args.scale,
    )
    del model
    gc.collect()

    memory = {mode: measure_memory(args, model_path, mode) for mode in ("plain", "scan")}
    out = Path(args.output_dir)
    stem = name.lower().replace(" ", "-")
    result.save(out / f"{stem}-scan.json")
    result.plot(out / f"{stem}-scan.png", title=f"L3Prune scan of {name} ({len(batches)} x {args.batch_size} triplets)")
    # Best of the repeats per batch, summed: the least disturbed time of each batch in each mode.
    plain_best = sum(min(times[i] for times in plain_times) for i in range(len(batches)))
    scan_best = sum(min(times[i] for times in scan_times) for i in range(len(batches)))
    pair_ratios = sorted(s / p for ps, ss in zip(plain_times, scan_times) for p, s in zip(ps, ss))
    return {
        "name": name,
        "result": result,
        "plain_s": plain_best,
        "scan_s": scan_best,
        "median_pair_ratio": pair_ratios[len(pair_ratios) // 2],
        "pair_ratios": pair_ratios,
        "memory": memory,
        "tokens": tokens,
        "load_s": load_s,
        "batches": len(batches),
    }


def report(row: dict) -> None:
    result, memory = row["result"], row["memory"]
    plain, scanned = memory["plain"], memory["scan"]
    plain_working = plain["peak"] - plain["before"]
    scan_working = scanned["peak"] - scanned["before"]
    time_ratio = row["scan_s"] / row["plain_s"]
    peak_ratio = scanned["peak"] / plain["peak"] - 1
    mib = 2**20
    print(
        f"\n== {row['name']}: {result.num_layers} layers, {row['batches']} batches x {result.batch_size} triplets, "
        f"{row['tokens']} tokens (model load {row['load_s']:.0f} s)"
    )
    print(
        f"time   plain forward {row['plain_s']:.2f} s | scan (all {result.num_layers} depths) {row['scan_s']:.2f} s | "
        f"ratio {time_ratio:.3f} x (goal <= 1.15) {'OK' if time_ratio <= 1.15 else 'MISSED'}"
    )
    print(
        f"       median of per-batch scan/plain ratios {row['median_pair_ratio']:.3f} x "
        f"(range {row['pair_ratios'][0]:.3f}..{row['pair_ratios'][-1]:.3f}, {len(row['pair_ratios'])} pairs)"
    )
    print(
        f"memory peak plain {plain['peak'] / mib:.0f} MiB | scan {scanned['peak'] / mib:.0f} MiB | extra "
        f"{peak_ratio:+.1%} of the plain peak (goal <= 10 %) {'OK' if peak_ratio <= 0.10 else 'MISSED'}"
    )
    print(
        f"       working (peak - resident before the pass) plain {plain_working / mib:.0f} MiB | "
        f"scan {scan_working / mib:.0f} MiB"
    )
    print(result.summary())
    print("curve  " + " ".join(f"{k}:{loss:.3f}" for k, loss in enumerate(result.losses, start=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gemma", action="store_true", help="also scan Gemma-3-270M (first load ~3 min)")
    parser.add_argument("--no-smollm2", action="store_true", help="skip SmolLM2-135M-Instruct")
    add_data_argument(parser)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=float, default=50.0)
    parser.add_argument("--pooling", default="weighted_mean")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each batch in each mode")
    parser.add_argument("--memory-batches", type=int, default=2, help="batches run for the memory peak")
    parser.add_argument("--device", default=None)
    parser.add_argument("--output-dir", default="bench/out/scan")
    parser.add_argument("--memory-child", choices=("plain", "scan"), help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args)
        return

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    where = (
        torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else (f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    )
    print(f"L3Prune scan benchmark on {where}; torch {torch.__version__}; data {args.data}")
    models = [] if args.no_smollm2 else [("SmolLM2-135M-Instruct", smollm2_gguf())]
    if args.gemma:
        models.append(("Gemma-3-270M", gemma_gguf()))
    for name, path in models:
        report(bench_model(args, name, path))
    print(f"\nplots and scan files in {args.output_dir}")


if __name__ == "__main__":
    main()
