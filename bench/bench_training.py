"""Proof on real data: training with st_prune's paper recipe makes every pruned SmolLM2 variant a better encoder,
and a training step costs in proportion to the layers kept.

SmolLM2-135M-Instruct (GGUF, 30 layers) is scanned with L3Prune on the shared training triplets, cut to its
``small`` and ``large`` picks, and trained with ``st_prune.training.trainer.build_trainer`` (LoRA r16/a32, InfoNCE
scale 50 with hard negatives, instructions as excluded prompts) with identical CPU-sized settings, as is the
full-depth model. Each trained model and its untrained counterpart are scored on dev subsets:

- STS-B dev and SICK dev: Spearman of cosine similarity (ST's ``EmbeddingSimilarityEvaluator``);
- Debian dev retrieval: nDCG@10 of one-line summaries against package descriptions (``InformationRetrievalEvaluator``,
  a fixed subset of queries, their documents plus distractors as the corpus);
- Banking77: accuracy of a logistic regression fitted on embeddings of a few banking77-train queries per intent.

Step time is reported per variant as a ratio to full depth (goal: within 10 % of layers kept / 30), measured after
training in round-robin rounds, one step of each variant per round on the same batch, so that all variants share
the machine's conditions (on a shared machine, timing each variant during its own training run mostly measures
what else ran then); wall-clock and process CPU time of the fastest round are reported.

    python bench/bench_training.py [--steps 16] [--batch-size 8] [--max-seq-length 48] [--json out.json]

The defaults take about 20 minutes on 2 idle CPU cores (16 steps of batch 8 at 48 tokens, lr 1e-3, small dev subsets;
about twice that on a busy shared machine); the paper trains 1000 steps of batch 64 at 512 tokens with lr 2e-4.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from common import TASK_INSTRUCTIONS, add_data_argument, data_file, read_jsonl, round_robin_seconds, smollm2_gguf  # noqa: E402  (bench/ is on sys.path)
from sentence_transformers.sentence_transformer.evaluation import (
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
)

from st_prune import encoder_from_llm
from st_prune.data.triplets import load_triplets
from st_prune.l3prune.scan import L3Prune
from st_prune.model.export import merge_adapters
from st_prune.prompt_format import instruction_prompt
from st_prune.training.trainer import TrainingConfig, build_trainer, prepare_training_data
from st_prune.util.machine import machine_description

SMOLLM2 = smollm2_gguf()

STS_INSTRUCTION = TASK_INSTRUCTIONS["stsb"]  # both sides, as mteb-style evaluation does for STS
BANKING_INSTRUCTION = TASK_INSTRUCTIONS["banking77"]


class DevSets:
    """Fixed, seeded subsets of the dev files, the same for every model."""

    def __init__(
        self,
        folder: Path,
        sts_pairs: int,
        retrieval_queries: int,
        distractors: int,
        shots: int,
        banking_queries: int,
        seed: int = 0,
    ) -> None:
        rng = random.Random(seed)
        self.stsb = rng.sample(read_jsonl(folder / "stsb-dev.jsonl"), sts_pairs)
        self.sick = rng.sample(read_jsonl(folder / "sick-dev.jsonl"), sts_pairs)
        debian = read_jsonl(folder / "debian-dev.jsonl")
        order = rng.sample(range(len(debian)), retrieval_queries + distractors)
        self.queries = {f"q{i}": debian[i]["query"] for i in order[:retrieval_queries]}
        self.corpus = {f"d{i}": debian[i]["document"] for i in order}
        self.relevant = {f"q{i}": {f"d{i}"} for i in order[:retrieval_queries]}
        by_label: dict[str, list[str]] = {}
        for row in read_jsonl(folder / "banking77-train.jsonl"):
            by_label.setdefault(row["label"], []).append(row["text"])
        self.banking_train = [
            (text, label) for label in sorted(by_label) for text in rng.sample(by_label[label], shots)
        ]
        self.banking_dev = [
            (row["text"], row["label"])
            for row in rng.sample(read_jsonl(folder / "banking77-dev.jsonl"), banking_queries)
        ]

    def describe(self) -> str:
        return (
            f"STS-B {len(self.stsb)} pairs, SICK {len(self.sick)} pairs, Debian {len(self.queries)} queries x "
            f"{len(self.corpus)} documents, Banking77 {len(self.banking_train)} train / {len(self.banking_dev)} dev"
        )


def sts_spearman(model, rows: list[dict], name: str) -> float:
    """Spearman x 100 of cosine similarity, with the STS instruction on both sides (a default prompt)."""
    evaluator = EmbeddingSimilarityEvaluator(
        [row["sentence1"] for row in rows],
        [row["sentence2"] for row in rows],
        [row["score"] for row in rows],
        main_similarity="cosine",
        name=name,
        write_csv=False,
        batch_size=32,
    )
    with default_prompt(model, instruction_prompt(STS_INSTRUCTION)):
        return 100 * evaluator(model)[evaluator.primary_metric]


class default_prompt:
    """Temporarily make ``prompt`` the model's default prompt (ST evaluators without a prompt argument)."""

    def __init__(self, model, prompt: str) -> None:
        self.model, self.prompt = model, prompt

    def __enter__(self):
        self.saved = (dict(self.model.prompts), self.model.default_prompt_name)
        self.model.prompts = {**self.model.prompts, "bench": self.prompt}
        self.model.default_prompt_name = "bench"

    def __exit__(self, *exc):
        self.model.prompts, self.model.default_prompt_name = self.saved


def evaluate(model, dev: DevSets) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    model.eval()
    scores = {"stsb": sts_spearman(model, dev.stsb, "stsb"), "sick": sts_spearman(model, dev.sick, "sick")}
    retrieval = InformationRetrievalEvaluator(
        dev.queries,
        dev.corpus,
        dev.relevant,
        query_prompt=instruction_prompt(TASK_INSTRUCTIONS["debian"]),
        ndcg_at_k=[10],
        mrr_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[10],
        map_at_k=[10],
        name="debian",
        write_csv=False,
        batch_size=32,
    )
    scores["debian"] = 100 * retrieval(model)[retrieval.primary_metric]
    prompt = instruction_prompt(BANKING_INSTRUCTION)
    train_x = model.encode([text for text, _ in dev.banking_train], prompt=prompt, batch_size=32)
    dev_x = model.encode([text for text, _ in dev.banking_dev], prompt=prompt, batch_size=32)
    classifier = LogisticRegression(max_iter=1000).fit(train_x, [label for _, label in dev.banking_train])
    scores["banking77"] = 100 * float(np.mean(classifier.predict(dev_x) == np.array([l for _, l in dev.banking_dev])))
    return scores


def interleaved_step_times(
    picks: dict[str, int], variants: list[str], data, config: TrainingConfig, max_seq_length: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of one training step per variant (fastest of ``rounds``), measured round-robin.

    Timing the variants one after another during their training runs mixes in whatever else the machine does at
    that time; alternating one step of each variant per round exposes them all to the same conditions. Each step
    is the trainer's own ``training_step`` (forward, loss, backward) plus the optimizer update.
    """
    setups = {}
    with tempfile.TemporaryDirectory() as work:
        for variant in variants:
            model = encoder_from_llm(str(SMOLLM2), layers=picks[variant], max_seq_length=max_seq_length)
            trainer = build_trainer(model, data, config, work)
            trainer.create_optimizer()
            trainer.current_gradient_accumulation_steps = 1  # set by the training loop, read by training_step
            batch = next(iter(trainer.get_train_dataloader()))  # same seed: the same first batch for every variant
            model.train()
            setups[variant] = (trainer, batch)

        def step(trainer, batch) -> None:
            trainer.training_step(trainer.model, dict(batch))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()

        seconds = round_robin_seconds({variant: partial(step, *setup) for variant, setup in setups.items()}, rounds)
    # The fastest round is the step's own cost; slower rounds carry interference from outside the benchmark.
    return {
        variant: {
            "wall_s": min(taken["wall"]),
            "cpu_s": min(taken["cpu"]),
            "wall_median_s": statistics.median(taken["wall"]),
            "cpu_median_s": statistics.median(taken["cpu"]),
        }
        for variant, taken in seconds.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=48)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="5x the paper's 2e-4: the CPU run sees ~130 triplets, the paper 64,000",
    )
    parser.add_argument("--scan-batches", type=int, default=8)
    parser.add_argument(
        "--layers", type=int, nargs=2, metavar=("SMALL", "LARGE"), help="fixed layer counts instead of an L3Prune scan"
    )
    parser.add_argument("--variants", nargs="+", default=["small", "large", "full"])
    parser.add_argument("--sts-pairs", type=int, default=150)
    parser.add_argument("--retrieval-queries", type=int, default=60)
    parser.add_argument("--distractors", type=int, default=60)
    parser.add_argument("--shots", type=int, default=2, help="banking77-train queries per intent for the classifier")
    parser.add_argument("--banking-queries", type=int, default=150)
    parser.add_argument("--timing-rounds", type=int, default=5, help="round-robin steps per variant for step time")
    parser.add_argument("--skip-training", action="store_true", help="only the scan and the step-time rounds")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    started = time.perf_counter()
    torch.manual_seed(0)
    print(f"machine: {machine_description()}")
    dev = DevSets(
        data_file(args.data, "dev"),
        args.sts_pairs,
        args.retrieval_queries,
        args.distractors,
        args.shots,
        args.banking_queries,
    )
    print(f"dev subsets: {dev.describe()}")
    triplets = load_triplets(data_file(args.data, "train", "triplets.jsonl"), instructions=TASK_INSTRUCTIONS)
    config = TrainingConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_seq_length=args.max_seq_length,
        save_steps=10**6,
        logging_steps=max(1, args.steps // 6),
    )
    data = prepare_training_data(triplets, config.batch_size)
    print(
        f"training data: {data.num_rows} triplets in {len(data.datasets)} instruction datasets; "
        f"{config.max_steps} steps x batch {config.batch_size}, {config.max_seq_length} tokens, "
        f"lr {config.learning_rate}, warm-up {config.effective_warmup_steps}"
    )

    total_layers = 30
    scan = None
    if args.layers:
        picks = {"small": args.layers[0], "large": args.layers[1]}
    else:
        full = encoder_from_llm(str(SMOLLM2), max_seq_length=args.max_seq_length)
        total_layers = full[0].num_layers
        train_dataset, prompts = data.for_trainer()
        scan_start = time.perf_counter()
        scan = L3Prune(batch_size=args.batch_size, num_batches=args.scan_batches, show_progress_bar=False).select(
            full, train_dataset, prompts=prompts
        )
        print(
            f"L3Prune scan ({args.scan_batches} batches of {args.batch_size}, "
            f"{time.perf_counter() - scan_start:.0f} s):\n{scan.summary()}"
        )
        picks = {"small": scan.small, "large": scan.large}
        del full
    picks["full"] = total_layers

    results = {}
    for variant in [] if args.skip_training else args.variants:
        layers = picks[variant]
        model = encoder_from_llm(str(SMOLLM2), layers=layers, max_seq_length=args.max_seq_length)
        before = evaluate(model, dev)
        with tempfile.TemporaryDirectory() as work:
            trainer = build_trainer(model, data, config, work)
            output = trainer.train()
        merge_adapters(model)
        after = evaluate(model, dev)
        wall, cpu = trainer.step_timer.step_seconds, trainer.step_timer.step_cpu_seconds
        steady = slice(1, None) if len(wall) > 1 else slice(None)  # the first step warms up
        results[variant] = {
            "layers": layers,
            "before": before,
            "after": after,
            "train_loss": output.training_loss,
            "step_wall_s": statistics.median(wall[steady]),
            "step_cpu_s": statistics.median(cpu[steady]),
        }
        print(
            f"{variant}: {layers} layers, loss {output.training_loss:.3f}, step {results[variant]['step_wall_s']:.2f} s "
            f"wall / {results[variant]['step_cpu_s']:.2f} s CPU; before {fmt(before)}; after {fmt(after)}",
            flush=True,
        )
        del model, trainer

    timing_start = time.perf_counter()
    timing = interleaved_step_times(picks, args.variants, data, config, args.max_seq_length, args.timing_rounds)
    print(f"step-time rounds: {time.perf_counter() - timing_start:.0f} s")
    for variant in args.variants:
        results.setdefault(variant, {"layers": picks[variant]}).update(
            round_robin_wall_s=timing[variant]["wall_s"],
            round_robin_cpu_s=timing[variant]["cpu_s"],
            round_robin_wall_median_s=timing[variant]["wall_median_s"],
        )
    print_table(results, total_layers)
    elapsed = time.perf_counter() - started
    print(f"\nbench time: {elapsed / 60:.1f} min")
    if args.json:
        payload = {
            "settings": vars(args) | {"data": str(args.data), "json": str(args.json)},
            "dev": dev.describe(),
            "scan": scan.to_dict() if scan else None,
            "results": results,
            "minutes": elapsed / 60,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


def fmt(scores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f}" for name, value in scores.items())


def print_table(results: dict, total_layers: int) -> None:
    metrics = ("stsb", "sick", "debian", "banking77")
    trained = {variant: result for variant, result in results.items() if "after" in result}
    if trained:
        header = ("variant", "layers", "trained", "STS-B ρ", "SICK ρ", "Debian nDCG@10", "Banking77 acc", "avg")
        print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for variant, result in trained.items():
            for when, label in (("before", "no"), ("after", "yes")):
                scores = result[when]
                row = [
                    variant,
                    str(result["layers"]),
                    label,
                    *(f"{scores[m]:.1f}" for m in metrics),
                    f"{np.mean([scores[m] for m in metrics]):.1f}",
                ]
                print("| " + " | ".join(row) + " |")
    full = results.get("full")
    print(
        "\n| variant | layers | kept/total | step wall (s) | ratio to full | step CPU (s) | ratio to full | "
        "ratio / (kept/total) | same, median rounds | all 4 improved |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for variant, result in results.items():
        kept = result["layers"] / total_layers
        wall, cpu = result["round_robin_wall_s"], result["round_robin_cpu_s"]
        wall_ratio = wall / full["round_robin_wall_s"] if full else float("nan")
        cpu_ratio = cpu / full["round_robin_cpu_s"] if full else float("nan")
        median_ratio = (
            (result["round_robin_wall_median_s"] / full["round_robin_wall_median_s"]) if full else float("nan")
        )
        improved = (
            ("yes" if all(result["after"][m] > result["before"][m] for m in metrics) else "NO")
            if "after" in result
            else "-"
        )
        print(
            f"| {variant} | {result['layers']} | {kept:.3f} | {wall:.2f} | {wall_ratio:.3f} | {cpu:.2f} | "
            f"{cpu_ratio:.3f} | {wall_ratio / kept:.2f} | {median_ratio / kept:.2f} | {improved} |"
        )
    print(
        "(step times: fastest of the round-robin training steps on one batch; during training (median), "
        + ", ".join(f"{v} {r['step_wall_s']:.1f} s" for v, r in results.items() if "step_wall_s" in r)
        + ")"
    )


if __name__ == "__main__":
    raise SystemExit(main())
