"""Does distilling the trained ``large`` variant into ``small`` beat the paper's plain recipe? (issue 13, item 3)

The CPU recipe's ``small`` cut (SmolLM2-135M-Instruct, 5 of 30 layers) is trained with the recipe's own settings
(batch 8, 64 tokens, lr 2e-3, LoRA r16/a32, InfoNCE scale 50) on one seeded sample of ``--rows`` of the recipe's
triplets (default: ``--steps`` x batch, one pass), four ways:

- ``untrained``: the cut as it is;
- ``plain``: the paper's recipe, ``--steps`` steps;
- ``distilled``: the teacher (a trained ``large`` variant, ``--teacher``) embeds every text of the sample once, then
  the student trains ``--steps`` steps on InfoNCE + ``--weight`` x (1 - cosine to the teacher's embedding) (one
  student forward serves both terms, so a step costs what a plain one does; the teacher's encoding is extra);
- ``plain, equal wall time``: the paper's recipe given the teacher's encoding time as more steps
  (``--steps`` + teacher seconds / the plain run's median step), on the same sample.

Each is scored on the five shared dev tasks with ``bench/reproduce.py``'s subsets (STS-B, SICK-R, Banking77, Debian
retrieval, Debian clustering), as is the teacher for reference.

    python bench/bench_distill.py --data ../shared/data \\
        --teacher DIR/models/SmolLM2-135M-Instruct-l3prune-large [--steps 80] [--weight 1.0] [--json out.json]

``--teacher`` is the ``large`` variant a main-job run writes (``st-prune run smollm2-135m-instruct-cpu --output DIR``).
The 28-layer teacher embeds 3 texts per triplet at roughly the cost of a third of its training step per 8 triplets,
so its encoding, not the student's training, dominates the distilled run's wall time on a CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import add_data_argument, data_file, smollm2_gguf  # noqa: E402  (bench/ is on sys.path)
from reproduce import FULL, METRICS, QUICK, ReproDevSets, evaluate_all, log, release  # noqa: E402

from st_prune import encoder_from_llm
from st_prune.model.export import merge_adapters
from st_prune.pipeline.recipe import find_recipe, load_recipe, load_recipe_data
from st_prune.training.distillation import DistilledContrastiveLoss, add_teacher_embeddings
from st_prune.training.trainer import TrainingConfig, build_trainer, prepare_training_data
from st_prune.util.machine import machine_description


def config_for(recipe, steps: int) -> TrainingConfig:
    """The recipe's own training settings for its ``small`` variant, at ``steps`` steps (warm-up kept in proportion)."""
    spec = recipe.training_for(next(v for v in recipe.variants if v.name == "small"))
    warmup = max(1, round(spec.config().effective_warmup_steps * steps / spec.steps))
    return spec.config(
        max_steps=steps,
        warmup_steps=warmup,
        save_steps=10**6,
        max_seq_length=spec.max_seq_length or recipe.base.max_seq_length,
    )


def train(layers: int, data, config: TrainingConfig, weight: float | None, max_seq_length: int):
    """A trained (adapter-merged) student and its training seconds / median step seconds."""
    torch.manual_seed(config.seed)
    model = encoder_from_llm(smollm2_gguf(), layers=layers, max_seq_length=max_seq_length)
    if weight is not None:
        config = config.replace(distill_weight=weight)  # the recipe's `distill` section does the same
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as work:
        trainer = build_trainer(model, data, config, work)
        assert isinstance(trainer.loss, DistilledContrastiveLoss) == (weight is not None)
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
    steps = trainer.step_timer.step_seconds
    merge_adapters(model)
    return model, {
        "train_seconds": round(seconds, 1),
        "steps": int(output.global_step),
        "train_loss": round(float(output.training_loss), 4),
        "step_seconds_median": round(float(np.median(steps[1:] or steps)), 3),
    }


def sample_rows(data, rows: int, seed: int = 0):
    """A seeded sample of ``rows`` triplets, each instruction dataset in proportion (at least one batch each)."""
    total = data.num_rows
    datasets = {}
    for name, dataset in data.datasets.items():
        keep = min(len(dataset), max(8, round(rows * len(dataset) / total)))
        datasets[name] = dataset.shuffle(seed=seed).select(range(keep))
    return dataclasses.replace(data, datasets=datasets)


def scored(name: str, model, dev, extra: dict) -> dict:
    start = time.perf_counter()
    scores = evaluate_all(model, dev)
    record = {
        "run": name,
        **extra,
        "scores": scores,
        "mean": round(float(np.mean([scores[m] for m in METRICS])), 2),
        "eval_seconds": round(time.perf_counter() - start, 1),
    }
    log(f"{name}: mean {record['mean']:.2f} {scores} {extra}")
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument("--teacher", type=Path, required=True, help="a trained large variant's folder")
    parser.add_argument("--recipe", default="smollm2-135m-instruct-cpu")
    parser.add_argument("--layers", type=int, default=5, help="the student's depth (the CPU recipe's small pick)")
    parser.add_argument(
        "--steps", type=int, default=80, help="the plain run's steps (the CPU recipe's small trains 300)"
    )
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=0, help="triplets sampled for every run (default: steps x batch)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny dev subsets")
    parser.add_argument("--json", type=Path, default=Path("bench/out/distill.json"))
    args = parser.parse_args()
    if not (args.teacher / "modules.json").is_file():
        parser.error(
            f"--teacher {args.teacher} is not a sentence-transformers folder: pass a trained large variant "
            "(DIR/models/<name>-l3prune-large from `st-prune run smollm2-135m-instruct-cpu --output DIR`)"
        )
    from sentence_transformers import SentenceTransformer

    recipe = load_recipe(find_recipe(args.recipe))
    max_len = recipe.base.max_seq_length
    source = load_recipe_data(recipe)
    config = config_for(recipe, args.steps)
    data = prepare_training_data(source.data, config.batch_size, source.prompts)
    dev = ReproDevSets(data_file(args.data, "dev"), QUICK if args.quick else FULL)
    log(
        f"machine: {machine_description()}; student {args.layers} layers, {data.num_rows} triplets, "
        f"dev: {dev.describe()}"
    )
    records = []
    rows = args.rows or args.steps * config.batch_size

    def fresh_sample():
        # A new copy per run: a trainer sets a transform on the datasets it trains on (in place).
        return sample_rows(prepare_training_data(source.data, config.batch_size, source.prompts), rows)

    data = fresh_sample()
    log(f"training sample: {data.num_rows} triplets in {len(data.datasets)} instruction datasets")

    untrained = encoder_from_llm(smollm2_gguf(), layers=args.layers, max_seq_length=max_len)
    records.append(scored("untrained", untrained, dev, {"steps": 0}))
    del untrained
    release()

    model, plain = train(args.layers, fresh_sample(), config, None, max_len)
    plain["wall_seconds"] = plain["train_seconds"]
    records.append(scored("plain", model, dev, plain))
    del model
    release()

    teacher_start = time.perf_counter()
    teacher = SentenceTransformer(str(args.teacher), device="cpu")
    teacher.max_seq_length = max_len
    distill_data = add_teacher_embeddings(teacher, fresh_sample())
    teacher_seconds = round(time.perf_counter() - teacher_start, 1)
    log(f"teacher embeddings of {3 * data.num_rows} texts: {teacher_seconds} s")
    records.append(scored("teacher (large)", teacher, dev, {"layers": teacher[0].auto_model.config.num_hidden_layers}))
    del teacher
    release()

    model, info = train(args.layers, distill_data, config, args.weight, max_len)
    info["wall_seconds"] = round(info["train_seconds"] + teacher_seconds, 1)
    records.append(scored("distilled", model, dev, info))
    del model
    release()

    equal_steps = args.steps + max(0, round(teacher_seconds / plain["step_seconds_median"]))
    model, info = train(args.layers, fresh_sample(), config_for(recipe, equal_steps), None, max_len)
    info["wall_seconds"] = info["train_seconds"]
    records.append(scored("plain, equal wall time", model, dev, info))
    del model

    plain_mean = records[1]["mean"]
    lines = [
        "| run | steps | wall s | " + " | ".join(METRICS) + " | mean | vs plain |",
        "|---" * (len(METRICS) + 5) + "|",
    ]
    for record in records:
        steps = record.get("steps", "-")
        wall = record.get("wall_seconds", record.get("train_seconds", "-"))
        delta = f"{record['mean'] - plain_mean:+.2f}" if record["run"] not in ("teacher (large)",) else "-"
        lines.append(
            f"| {record['run']} | {steps} | {wall} | "
            + " | ".join(f"{record['scores'][m]:.1f}" for m in METRICS)
            + f" | {record['mean']:.2f} | {delta} |"
        )
    table = "\n".join(lines)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": machine_description(),
                "teacher_seconds": teacher_seconds,
                "weight": args.weight,
                "records": records,
                "table": table,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
