"""The paper's Figures 3 and 5 at small scale: score against depth and parameters, untrained and trained (issue 13.1).

SmolLM2-135M-Instruct (GGUF, 30 layers) is cut to pruned fractions 0, 25, 50 and 75 % -- it keeps
``floor(30 * (1 - fraction) + 1/2)`` layers, halves rounding up: 30, 23 (22.5), 15, 8 (7.5) -- and to the L3Prune
``small`` and ``large`` picks; Gemma-3-270M (GGUF, 18 layers) to full depth, ``small`` and ``large``. A pick that
equals a fraction's depth is trained once and labelled both. The picks come from an L3Prune scan with the CPU
recipes' scan settings (8 batches of 8, seed 42, scale 50) on the training sample below.

Every variant is trained with ``st_prune.training.trainer`` at ONE equal budget, the CPU recipe's settings: ``--steps``
(default 64) x batch 8 triplets x 64 tokens per text (64 x 8 = 512 triplets, each text cut at 64 tokens), lr 2e-3
(``--learning-rate``; the tuned CPU recipes' rate: at a few dozen steps the paper's 2e-4, meant for 1000, barely
moves the model -- bench/results/tune-cpu-recipe.md), linear with 10 % warm-up, LoRA r16/a32, InfoNCE scale 50
with the hard negative, seed 42, on one balanced sample of the shared training triplets (``--steps * 8 / 4`` rows of
each of the four tasks, drawn once with seed 0; written to ``train-sample.jsonl`` in the output folder). Anchors
carry their task's instruction as an excluded prompt.

Each variant is scored before and after training on fixed seeded subsets of the five shared dev tasks, the same for
every model (scores x 100), with the evaluation pieces of ``bench_training.py``:

- STS-B dev, SICK dev: Spearman of cosine similarity (250 pairs each; the STS instruction on both sides);
- Banking77: accuracy of a logistic regression on embeddings, fitted on 4 banking77-train queries per intent
  (308), scored on 250 banking77-dev queries (the triplets' banking instruction on both sides);
- Debian retrieval: nDCG@10 of 120 one-line summaries (with the instruction) against their 120 descriptions plus 120
  distractor descriptions (no instruction);
- Debian clustering: V-measure of k-means (k = number of sections) on the one-line summaries of 300 packages,
  25 from each of the 12 most common sections (an mteb-style S2S instruction on every text).

Texts are cut at 64 tokens at evaluation too (the CPU recipes' ``max_seq_length``).

Budget: on 2 idle cores a SmolLM2 training step costs ~0.3 s per kept layer (the CPU recipe's 8.6 s at 28 layers),
a Gemma-3-270M step ~0.4 s (measured ~1.2x SmolLM2's per layer), one evaluation ~5 s per layer (SmolLM2) and
~6.5 s (Gemma). With ~107 SmolLM2 layers (30+23+15+8+picks) and ~39 Gemma layers to train, 64 steps cost ~52 minutes
of training, the 18 evaluations ~26 minutes, scans and loads ~3 minutes: about 80 minutes in all. On a busy shared
machine at ``nice -n 19`` it takes as long as the other work leaves it.

Order (the most informative first): SmolLM2 (scan, every untrained evaluation, then training of small, large, full
depth, 75 %, 50 %, 25 % pruned), then Gemma (scan, untrained, small, large, full). Each result is written as soon as it
exists (``states/<model>-<depth>L-<untrained|trained>.json``) and a re-run skips what is there, so a killed run
continues; the table, JSON, plot and verdicts are rewritten after every result.

    nohup nice -n 19 python bench/reproduce.py --data ../shared/data --output bench/out/reproduce \\
        > bench/out/reproduce/run.log 2>&1 &
    python bench/reproduce.py --output bench/out/reproduce --report-only   # table, plot, verdicts of what exists
    python bench/reproduce.py --quick --output /tmp/reproduce-quick         # 2 steps, tiny subsets: a smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import hashlib
import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from bench_training import DevSets, evaluate, fmt, read_jsonl  # noqa: E402  (bench/ is on sys.path)
from common import TASK_INSTRUCTIONS, add_data_argument, data_file, gemma_gguf, smollm2_gguf  # noqa: E402

from st_prune import encoder_from_llm
from st_prune.data.triplets import load_triplets
from st_prune.l3prune.scan import L3Prune
from st_prune.model.export import merge_adapters
from st_prune.prompt_format import instruction_prompt
from st_prune.training.trainer import TrainingConfig, build_trainer, prepare_training_data
from st_prune.util.machine import machine_description

REPO = Path(__file__).resolve().parent.parent
FIGURE_COPY = REPO / "docs" / "figures" / "reproduce.png"
RESULTS_COPY = REPO / "bench" / "results"  # reproduce.md and reproduce.json, committed beside the other benches'

#: mteb-style clustering instruction (cf. "Identify the main category of Biorxiv papers based on the titles"): the
#: dev data has no clustering instruction of its own; symmetric tasks carry it on every text.
CLUSTERING_INSTRUCTION = "Identify the main category of Debian packages based on their one-line summaries"

METRICS = ("stsb", "sick", "banking77", "debian", "debian_clustering")
METRIC_HEADERS = ("STS-B ρ", "SICK-R ρ", "Banking77 acc", "Debian nDCG@10", "Debian V-meas.")

BASES = {
    "smollm2": {
        "label": "SmolLM2-135M-Instruct",
        "layers": 30,
        "fractions": (0.0, 0.25, 0.5, 0.75),
        "reference": smollm2_gguf,
        "eval_s_per_layer": 5.0,
        "step_s_per_layer": 0.3,
    },
    "gemma": {
        "label": "Gemma-3-270M",
        "layers": 18,
        "fractions": (0.0,),
        "reference": gemma_gguf,
        "eval_s_per_layer": 6.5,
        "step_s_per_layer": 0.4,
    },
}
#: Which trained variants come first: the three the verdicts need, then the rest of the curve.
TRAIN_ORDER = ("small", "large", "full", "75%", "50%", "25%")

FULL = {
    "sts_pairs": 250,
    "retrieval_queries": 120,
    "distractors": 120,
    "shots": 4,
    "banking_queries": 250,
    "cluster_sections": 12,
    "cluster_per_section": 25,
    "scan_batches": 8,
    "max_seq_length": 64,
}
QUICK = {
    "sts_pairs": 16,
    "retrieval_queries": 8,
    "distractors": 8,
    "shots": 1,
    "banking_queries": 16,
    "cluster_sections": 4,
    "cluster_per_section": 4,
    "scan_batches": 2,
    "max_seq_length": 32,
}


@functools.cache
def model_file(base: str) -> str:
    """The GGUF path, resolved once: Gemma's assemble() re-hashes its 250 MB file on every call."""
    return BASES[base]["reference"]()


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S")


def log(message: str) -> None:
    print(f"[{now()} UTC] {message}", flush=True)


def kept_layers(total: int, fraction: float) -> int:
    """Layers kept when ``fraction`` is pruned, halves rounding up (Python's round() would send 22.5 to 22)."""
    return math.floor(total * (1 - fraction) + 0.5)


class ReproDevSets(DevSets):
    """bench_training's dev subsets plus Debian clustering: summaries of the most common sections, equally many each."""

    def __init__(self, folder: Path, sizes: dict, seed: int = 0) -> None:
        super().__init__(
            folder,
            sizes["sts_pairs"],
            sizes["retrieval_queries"],
            sizes["distractors"],
            sizes["shots"],
            sizes["banking_queries"],
            seed=seed,
        )
        rng = random.Random(seed + 1)
        by_section: dict[str, list[str]] = {}
        for row in read_jsonl(folder / "debian-dev.jsonl"):
            by_section.setdefault(row["section"], []).append(row["query"])
        common = [
            section
            for section, _ in Counter({s: len(v) for s, v in by_section.items()}).most_common(sizes["cluster_sections"])
        ]
        self.clusters = [
            (text, section)
            for section in sorted(common)
            for text in rng.sample(by_section[section], sizes["cluster_per_section"])
        ]

    def describe(self) -> str:
        sections = len({label for _, label in self.clusters})
        return f"{super().describe()}, Debian clustering {len(self.clusters)} summaries in {sections} sections"

    def fingerprint(self) -> str:
        payload = json.dumps(
            [self.stsb, self.sick, self.queries, self.corpus, self.banking_train, self.banking_dev, self.clusters],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def clustering_v_measure(model, rows: list[tuple[str, str]], seed: int = 0) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    embeddings = model.encode(
        [text for text, _ in rows], prompt=instruction_prompt(CLUSTERING_INSTRUCTION), batch_size=32
    )
    labels = [label for _, label in rows]
    predicted = KMeans(n_clusters=len(set(labels)), n_init=10, random_state=seed).fit_predict(embeddings)
    return 100 * float(v_measure_score(labels, predicted))


def evaluate_all(model, dev: ReproDevSets) -> dict[str, float]:
    scores = evaluate(model, dev)  # STS-B, SICK, Debian retrieval, Banking77 (bench_training)
    scores["debian_clustering"] = clustering_v_measure(model, dev.clusters)
    return {metric: round(float(scores[metric]), 3) for metric in METRICS}


def balanced_sample(path: Path, per_task: int, seed: int = 0) -> list[dict]:
    """``per_task`` triplets of each task, drawn once with ``seed`` (then in file order within a task)."""
    by_task: dict[str, list[dict]] = {}
    for row in read_jsonl(path):
        by_task.setdefault(row["task"], []).append(row)
    missing = sorted(set(TASK_INSTRUCTIONS) - set(by_task))
    if missing:
        print(
            f"reproduce: {path} has no rows of task(s) {', '.join(missing)}: pass --data with the shared triplets",
            file=sys.stderr,
        )
        sys.exit(2)
    rng = random.Random(seed)
    return [row for task in sorted(by_task) for row in rng.sample(by_task[task], per_task)]


def write_json(path: Path, data) -> None:
    """Written whole or not at all: a run killed mid-write leaves no half file that a re-run would take for done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def state_path(output: Path, base: str, depth: int, trained: bool) -> Path:
    return output / "states" / f"{base}-{depth:02d}L-{'trained' if trained else 'untrained'}.json"


def release() -> None:
    gc.collect()  # models hold reference cycles; free one before the next loads


class Runner:
    def __init__(self, args, sizes: dict) -> None:
        self.args, self.sizes, self.output = args, sizes, args.output
        self.started = time.perf_counter()
        self.rates: dict[tuple[str, str], list[float]] = {}  # (base, kind) -> seconds per layer, measured here

    # --- set-up ----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        args = self.args
        self.dev = ReproDevSets(data_file(args.data, "dev"), self.sizes)
        per_task = math.ceil(args.steps * args.batch_size / len(TASK_INSTRUCTIONS) / args.batch_size) * args.batch_size
        rows = balanced_sample(data_file(args.data, "train", "triplets.jsonl"), per_task)
        sample = self.output / "train-sample.jsonl"
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        self.output.mkdir(parents=True, exist_ok=True)
        sample.write_text(text, encoding="utf-8")
        self.triplets = load_triplets(sample, instructions=TASK_INSTRUCTIONS)
        self.config = TrainingConfig(
            max_steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_steps=max(1, math.ceil(args.steps / 10)),
            max_seq_length=self.sizes["max_seq_length"],
            scale=50.0,
            lora_r=16,
            lora_alpha=32,
            seed=42,
            bf16=False,
            gradient_checkpointing=False,
            save_steps=10**6,
            logging_steps=max(1, args.steps // 8),
        )
        self.data = prepare_training_data(self.triplets, self.config.batch_size)
        self.settings = {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "max_seq_length": self.sizes["max_seq_length"],
            "triplets_seen": args.steps * args.batch_size,
            "token_budget": args.steps * args.batch_size * 3 * self.sizes["max_seq_length"],
            "learning_rate": args.learning_rate,
            "warmup_steps": self.config.warmup_steps,
            "lora": "r16/a32/dropout 0.05",
            "scale": 50,
            "seed": 42,
            "train_sample": {
                "rows": len(rows),
                "per_task": per_task,
                "seed": 0,
                "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
            },
            "scan": {"batch_size": 8, "num_batches": self.sizes["scan_batches"], "seed": 42, "scale": 50},
            "dev": self.dev.describe(),
            "dev_fingerprint": self.dev.fingerprint(),
            "quick": args.quick,
        }
        saved = self.output / "settings.json"
        if saved.is_file():
            old = json.loads(saved.read_text())
            if old != self.settings:
                changed = sorted(key for key in self.settings if old.get(key) != self.settings[key])
                print(
                    f"reproduce: {self.output} holds results made with other settings ({', '.join(changed)}): "
                    "pass another --output, or the same options as before",
                    file=sys.stderr,
                )
                sys.exit(2)
        write_json(saved, self.settings)
        log(f"machine: {machine_description()}")
        log(
            f"budget per variant: {args.steps} steps x batch {args.batch_size} triplets x {self.sizes['max_seq_length']} "
            f"tokens per text ({self.settings['triplets_seen']} triplets, <= {self.settings['token_budget']:,} tokens); "
            f"lr {args.learning_rate:g}, warm-up {self.config.warmup_steps}, LoRA r16/a32, scale 50, seed 42"
        )
        log(
            f"training sample: {len(rows)} triplets ({per_task} per task) in {len(self.data.datasets)} instruction datasets"
        )
        log(f"dev subsets: {self.dev.describe()}")

    # --- plan ------------------------------------------------------------------------------------------------
    def scan(self, base: str) -> dict:
        path = self.output / "states" / f"{base}-scan.json"
        if path.is_file():
            return json.loads(path.read_text())
        start = time.perf_counter()
        log(f"{base}: loading at full depth and scanning ({self.sizes['scan_batches']} batches of 8)")
        full = encoder_from_llm(model_file(base), max_seq_length=self.sizes["max_seq_length"])
        train_dataset, prompts = self.data.for_trainer()
        result = L3Prune(
            batch_size=8, num_batches=self.sizes["scan_batches"], seed=42, scale=50, show_progress_bar=False
        ).select(full, train_dataset, prompts=prompts)
        data = result.to_dict() | {"seconds": round(time.perf_counter() - start, 1)}
        write_json(path, data)
        del full
        release()
        log(
            f"{base}: scan done in {data['seconds']:.0f} s: small = {result.small}, large = {result.large} of "
            f"{result.num_layers} layers"
        )
        return data

    def variants(self, base: str, scan: dict) -> dict[int, list[str]]:
        """Depth -> its labels (a pick that equals a fraction's depth is one variant with both labels)."""
        spec = BASES[base]
        labels: dict[int, list[str]] = {}
        for fraction in spec["fractions"]:
            depth = kept_layers(spec["layers"], fraction)
            labels.setdefault(depth, []).append("full" if fraction == 0 else f"{round(fraction * 100)}%")
        for pick in ("small", "large"):
            labels.setdefault(scan[pick], []).append(pick)
        return labels

    def plan(self, bases: list[str]) -> list[tuple[str, int, bool]]:
        jobs = []
        for base in bases:
            labels = self.variants(base, self.scan(base)) if self.scan_exists(base) else None
            if labels is None:  # the scan is the first job of the base; its depths are known after it
                jobs.append((base, 0, False))
                continue
            if self.args.variants:  # a subset of the variants (e.g. the verdicts' small,large,full)
                labels = {depth: names for depth, names in labels.items() if set(names) & self.args.variants}
            for depth in sorted(labels, reverse=True):
                jobs.append((base, depth, False))
            ordered = sorted(labels, key=lambda d: min(TRAIN_ORDER.index(label) for label in labels[d]))
            jobs.extend((base, depth, True) for depth in ordered)
        return jobs

    def scan_exists(self, base: str) -> bool:
        return (self.output / "states" / f"{base}-scan.json").is_file()

    # --- timing ----------------------------------------------------------------------------------------------
    def estimate(self, base: str, depth: int, trained: bool) -> float:
        spec = BASES[base]
        layers = depth or spec["layers"]
        if depth == 0:  # a scan: 8 forward batches at full depth, roughly one evaluation's cost
            return layers * spec["eval_s_per_layer"] * 0.3
        measured_eval = self.rates.get((base, "eval"))
        measured_train = self.rates.get((base, "train"))
        eval_rate = np.mean(measured_eval) if measured_eval else spec["eval_s_per_layer"]
        train_rate = np.mean(measured_train) if measured_train else spec["step_s_per_layer"] * self.args.steps
        return layers * (eval_rate + (train_rate if trained else 0))

    # --- work ------------------------------------------------------------------------------------------------
    def run(self, bases: list[str]) -> None:
        done_jobs = 0
        while True:
            jobs = [job for job in self.plan(bases) if job[1] == 0 or not state_path(self.output, *job).is_file()]
            if not jobs:
                break
            base, depth, trained = jobs[0]
            remaining = sum(self.estimate(*job) for job in jobs)
            for job_base, job_depth, _ in jobs:
                if job_depth == 0:  # depths not yet known: guess the picks (small ~L/6, large ~0.85 L) for the ETA
                    total = BASES[job_base]["layers"]
                    guessed = {kept_layers(total, f) for f in BASES[job_base]["fractions"]} | {
                        total // 6,
                        round(0.85 * total),
                    }
                    remaining += sum(self.estimate(job_base, d, t) for d in guessed for t in (False, True))
            eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=remaining)
            log(
                f"{len(jobs)} jobs left, ~{remaining / 60:.0f} min of work at the measured rates (ETA "
                f"{eta:%H:%M} UTC on this machine's current pace); next: {base} "
                f"{'scan' if depth == 0 else f'{depth} layers ' + ('trained' if trained else 'untrained')}"
            )
            if depth == 0:
                self.scan(base)
            else:
                self.job(base, depth, trained)
            done_jobs += 1
            self.report(quiet=True)
        log(f"all done ({done_jobs} jobs this run, {(time.perf_counter() - self.started) / 60:.1f} min)")

    def job(self, base: str, depth: int, trained: bool) -> None:
        spec, scan = BASES[base], self.scan(base)
        labels = self.variants(base, scan)[depth]
        start = time.perf_counter()
        model = encoder_from_llm(model_file(base), layers=depth, max_seq_length=self.sizes["max_seq_length"])
        record = {
            "base": base,
            "model": spec["label"],
            "depth": depth,
            "num_layers": spec["layers"],
            "labels": labels,
            "params": scan["parameters"][depth - 1],
            "trained": trained,
        }
        if trained:
            # A few texts embedded before and after: proof that the evaluated model is the trained one.
            probe = [row["sentence1"] for row in self.dev.stsb[:8]]
            probe_before = model.encode(probe, convert_to_tensor=True)
            torch.manual_seed(42)
            with tempfile.TemporaryDirectory(prefix="reproduce-train-") as work:
                trainer = build_trainer(model, self.data, self.config, work)
                train_start, train_cpu = time.perf_counter(), time.process_time()
                output = trainer.train()
                record["train_seconds"] = round(time.perf_counter() - train_start, 1)
                # CPU seconds / threads approximates the wall time on idle cores; wall time here is the shared machine's
                record["train_cpu_seconds"] = round(time.process_time() - train_cpu, 1)
            steps = trainer.step_timer.step_seconds
            record.update(
                train_loss=round(float(output.training_loss), 4),
                step_seconds_median=round(float(np.median(steps[1:] or steps)), 3),
                step_cpu_seconds_median=round(
                    float(np.median(trainer.step_timer.step_cpu_seconds[1:] or trainer.step_timer.step_cpu_seconds)), 3
                ),
            )
            merge_adapters(model)
            del trainer
            probe_after = model.encode(probe, convert_to_tensor=True)
            record["probe_cosine_before_after"] = round(
                float(torch.nn.functional.cosine_similarity(probe_before, probe_after).mean()), 6
            )
            self.rates.setdefault((base, "train"), []).append(record["train_seconds"] / depth)
        eval_start, eval_cpu = time.perf_counter(), time.process_time()
        record["scores"] = evaluate_all(model, self.dev)
        record["eval_seconds"] = round(time.perf_counter() - eval_start, 1)
        record["eval_cpu_seconds"] = round(time.process_time() - eval_cpu, 1)
        self.rates.setdefault((base, "eval"), []).append(record["eval_seconds"] / depth)
        record["mean"] = round(float(np.mean([record["scores"][m] for m in METRICS])), 3)
        record["seconds"] = round(time.perf_counter() - start, 1)
        record["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        write_json(state_path(self.output, base, depth, trained), record)
        del model
        release()
        extra = (
            (
                f", trained in {record['train_seconds']:.0f} s (loss {record['train_loss']:.3f}, probe cosine before/after "
                f"{record['probe_cosine_before_after']:.4f})"
            )
            if trained
            else ""
        )
        cpu = record["eval_cpu_seconds"] + record.get("train_cpu_seconds", 0)
        log(
            f"{base} {depth} layers ({'/'.join(labels)}) {'trained' if trained else 'untrained'}: mean "
            f"{record['mean']:.2f} [{fmt(record['scores'])}]; {record['seconds']:.0f} s{extra}, "
            f"evaluation {record['eval_seconds']:.0f} s; {cpu:.0f} CPU s"
        )

    # --- report ----------------------------------------------------------------------------------------------
    def records(self) -> list[dict]:
        folder = self.output / "states"
        return [json.loads(path.read_text()) for path in sorted(folder.glob("*L-*.json"))] if folder.is_dir() else []

    def report(self, quiet: bool = False) -> None:
        records = sorted(self.records(), key=lambda r: (list(BASES).index(r["base"]), -r["depth"], r["trained"]))
        settings_path = self.output / "settings.json"
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        verdicts = {base: verdicts_for(records, base) for base in BASES if any(r["base"] == base for r in records)}
        # The scans' picks and how sure each is (bootstrap over the scan's batches): the table's depths come from them.
        scans = {
            path.name.removesuffix("-scan.json"): json.loads(path.read_text())
            for path in sorted((self.output / "states").glob("*-scan.json"))
        }
        scans = {
            base: {
                key: scan.get(key) for key in ("num_layers", "small", "large", "losses", "pick_confidence", "seconds")
            }
            for base, scan in scans.items()
        }
        write_json(
            self.output / "results.json",
            {"settings": settings, "scans": scans, "results": records, "verdicts": verdicts},
        )
        table = markdown_table(records)
        budget = (
            (
                f"Budget per variant: {settings.get('steps')} steps x batch {settings.get('batch_size')} triplets x "
                f"{settings.get('max_seq_length')} tokens per text ({settings.get('triplets_seen')} triplets), "
                f"lr {settings.get('learning_rate'):g}; dev: {settings.get('dev')}."
            )
            if settings
            else ""
        )
        lines = [table, "", budget, "", "Verdicts (trained means):"]
        for base, items in verdicts.items():
            lines += [f"- {BASES[base]['label']}: {item}" for item in items]
        (self.output / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if records:
            plot(records, self.output / "reproduce.png", settings)
            if not self.args.quick and self.args.copy_figure:
                FIGURE_COPY.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.output / "reproduce.png", FIGURE_COPY)
                for name in ("results.md", "results.json"):
                    shutil.copyfile(self.output / name, RESULTS_COPY / name.replace("results", "reproduce"))
        if not quiet:
            print("\n" + "\n".join(lines), flush=True)


def label_of(record: dict) -> str:
    return f"{record['depth']} ({'/'.join(record['labels'])})"


def markdown_table(records: list[dict]) -> str:
    header = ("model", "layers", "params (M)", "trained", *METRIC_HEADERS, "mean", "train s", "train CPU s")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        scores = [f"{r['scores'][m]:.1f}" for m in METRICS]
        train = f"{r['train_seconds']:.0f}" if r.get("train_seconds") is not None else "-"
        train_cpu = f"{r['train_cpu_seconds']:.0f}" if r.get("train_cpu_seconds") is not None else "-"
        lines.append(
            f"| {r['model']} | {label_of(r)} | {r['params'] / 1e6:.1f} | {'yes' if r['trained'] else 'no'} | "
            + " | ".join(scores)
            + f" | {r['mean']:.2f} | {train} | {train_cpu} |"
        )
    return "\n".join(lines)


def verdicts_for(records: list[dict], base: str) -> list[str]:
    """The issue's three claims on one base model, each HOLDS / DOES NOT HOLD with its numbers, or not yet known."""
    trained = {label: r for r in records if r["base"] == base and r["trained"] for label in r["labels"]}
    untrained = {r["depth"]: r for r in records if r["base"] == base and not r["trained"]}
    out = []
    full = trained.get("full")
    for pick, margin in (("large", 0.5), ("small", 5.0)):
        claim = f"{pick} >= full depth - {margin}"
        if full is None or pick not in trained:
            out.append(f"{claim}: NOT YET KNOWN (trained {'full' if full is None else pick} missing)")
            continue
        value, bound = trained[pick]["mean"], full["mean"] - margin
        verdict = "HOLDS" if value >= bound else "DOES NOT HOLD"
        out.append(
            f"{claim}: {verdict} ({pick} {trained[pick]['depth']} layers {value:.2f} vs full "
            f"{full['depth']} layers {full['mean']:.2f}, bound {bound:.2f}, difference {value - full['mean']:+.2f})"
        )
    pairs = [(r, untrained.get(r["depth"])) for r in {id(r): r for r in trained.values()}.values()]
    known = [(r, u) for r, u in pairs if u is not None]
    details = ", ".join(
        f"{label_of(r)} {u['mean']:.2f} -> {r['mean']:.2f} ({r['mean'] - u['mean']:+.2f})"
        for r, u in sorted(known, key=lambda p: -p[0]["depth"])
    )
    if known:
        holds = all(r["mean"] >= u["mean"] + 3 for r, u in known)
        # Untrained evaluations of every depth come first, so a depth evaluated but not yet trained means "so far".
        partial = "" if len(known) >= len(untrained) else f" (so far: {len(known)} of {len(untrained)} depths trained)"
        out.append(
            f"every trained variant >= its untrained self + 3: {'HOLDS' if holds else 'DOES NOT HOLD'}{partial} "
            f"[{details}]"
        )
    else:
        out.append("every trained variant >= its untrained self + 3: NOT YET KNOWN (no trained variant yet)")
    return out


def plot(records: list[dict], path: Path, settings: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = {"smollm2": "tab:blue", "gemma": "tab:red"}
    for base in BASES:
        for trained in (False, True):
            series = sorted(
                (r for r in records if r["base"] == base and r["trained"] == trained), key=lambda r: r["params"]
            )
            if not series:
                continue
            x = [r["params"] / 1e6 for r in series]
            y = [r["mean"] for r in series]
            ax.plot(
                x,
                y,
                marker="o" if trained else "s",
                linestyle="-" if trained else "--",
                color=colors[base],
                alpha=1.0 if trained else 0.55,
                label=f"{BASES[base]['label']}, {'trained' if trained else 'untrained'}",
            )
            for r, xi, yi in zip(series, x, y):
                ax.annotate(
                    label_of(r),
                    (xi, yi),
                    textcoords="offset points",
                    xytext=(4, 4 if trained else -10),
                    fontsize=7,
                    color=colors[base],
                )
    ax.set_xlabel("parameters (millions, embeddings included)")
    ax.set_ylabel("mean of 5 dev tasks (x100)")
    budget = (
        (
            f"{settings.get('steps')} steps x batch {settings.get('batch_size')} x {settings.get('max_seq_length')} "
            f"tokens per variant, lr {settings.get('learning_rate'):g}"
        )
        if settings
        else ""
    )
    ax.set_title(f"Pruned depth vs score (points: layers kept)\n{budget}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "reproduce", metavar="DIR")
    parser.add_argument("--steps", type=int, default=None, help="training steps per variant (default 64; --quick 2)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=2e-3,
        help="peak learning rate of every variant (default 2e-3, the tuned CPU recipes')",
    )
    parser.add_argument("--models", default="smollm2,gemma", help="comma-separated: smollm2, gemma")
    parser.add_argument(
        "--variants",
        default="",
        help=f"only these variants, comma-separated, of: {', '.join(TRAIN_ORDER)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 steps, tiny dev subsets, 32 tokens")
    parser.add_argument("--report-only", action="store_true", help="rebuild table, plot and verdicts from what exists")
    parser.add_argument(
        "--no-copy-figure",
        dest="copy_figure",
        action="store_false",
        help=f"do not copy the plot to {FIGURE_COPY.relative_to(REPO)} and the table and JSON to "
        f"{RESULTS_COPY.relative_to(REPO)}/reproduce.md, .json",
    )
    args = parser.parse_args()
    bases = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in bases if name not in BASES]
    if unknown or not bases:
        parser.error(f"--models: unknown {', '.join(unknown) or '(none given)'}; use smollm2, gemma or both")
    args.variants = {name.strip() for name in args.variants.split(",") if name.strip()}
    if args.variants - set(TRAIN_ORDER):
        parser.error(
            f"--variants: unknown {', '.join(sorted(args.variants - set(TRAIN_ORDER)))}; use {', '.join(TRAIN_ORDER)}"
        )
    if args.steps is None:
        args.steps = 2 if args.quick else 64
    runner = Runner(args, QUICK if args.quick else FULL)
    if args.report_only:
        runner.report()
        return 0
    torch.manual_seed(0)
    runner.prepare()
    runner.run(bases)
    runner.report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
