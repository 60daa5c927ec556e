"""Shrink the embedder you already have (issue 25, item 5): cut the main job's trained ``large`` and recover it, side
by side with the main job's ``small`` trained from the base LLM.

The embedder to shrink is the main job's trained ``large`` (SmolLM2-135M-Instruct, 28 of 30 layers):
``st-prune run smollm2-135m-instruct-cpu --output DIR`` writes it to DIR/models/SmolLM2-135M-Instruct-l3prune-large.
Arms, each scored on the recipe's five dev tasks (the main job's own evaluation), with parameters, tokens/s and the
wall time it adds to a main job (which trains ``large`` anyway):

- (a) ``cut``: the large cut to the L3Prune ``small`` depth of the *trained* model (a scan of the large, with the
  recipe's scan settings), no training;
- (b) ``distill``: that cut + self-distillation from the uncut large (``recover: distill``; the recipe's ``small``
  training settings: steps, learning rate, data);
- (c) ``contrastive``: that cut + the recipe's contrastive training alone;
- (d) ``main-small``: the main job's ``small``, trained from the base LLM as today (the recipe as is);
- (e) ``distill-mlp50``: (b) with ``mlp_keep: 0.5`` (half of every kept layer's MLP channels);
- (f) ``large``: the uncut trained large, the ceiling;
- (b=) ``distill-equal-time``: (b) on the first N triplets, one pass, N chosen from (b)'s measured costs so that the
  arm's scan + teacher + training fit in (d)'s training seconds.

(b), (c), (d), (e) and (b=) are ``st-prune run`` over the recipe with ``--set`` overrides (the large as a
``sentence-transformers`` base), each in its own run folder under ``--output``, so a killed bench resumes where it
stopped (finished arms are skipped, a stopped training continues from its checkpoint); (b) and (e) share one run
folder, so (e) reads (b)'s teacher embeddings and its wall time counts (b)'s teacher seconds. (a) and (f) run
in-process. Tokens/s are measured round-robin over all arms at the end (``model.encode`` of the same 256 texts).

    python bench/bench_shrink.py --large DIR/models/SmolLM2-135M-Instruct-l3prune-large \\
        [--output bench/out/shrink] [--json bench/results/shrink.json]   # ~25 min on 2 idle cores

Results: OUT/results.json, the table in ``--json``'s .md sibling and a score-vs-tokens/s PNG beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out" / "shrink"

ARMS = {
    "a": "cut, no training",
    "b": "cut + self-distillation",
    "c": "cut + contrastive",
    "d": "main job's small (from the base)",
    "e": "(b) with mlp_keep 0.5",
    "f": "uncut trained large",
    "b=": "(b) within (d)'s wall time",
}

#: Run folders of the recipe runs: (b) and (e) are two variants of one run (one scan, one teacher cache).
RUNS = {"d": "main-small", "b": "distill", "e": "distill", "c": "contrastive", "b=": "distill-equal-time"}
VARIANT = {"d": "small", "b": "small", "e": "small-mlp50", "c": "small", "b=": "small"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------------- recipe runs


def small_variant(recipe) -> dict[str, Any]:
    """The recipe's ``small`` variant as a ``--set variants=`` entry."""
    variant = next(v for v in recipe.variants if v.name == "small")
    return {key: value for key, value in dataclasses.asdict(variant).items() if value is not None}


def embedder_sets(large: Path) -> list[str]:
    """Overrides that make the trained large the recipe's base (its own pooling, prompts and modules)."""
    layers = read_json(large / "config.json")["num_hidden_layers"]
    return [f"base.model={large}", "base.kind=sentence-transformers", f"base.layers={layers}"]


def arm_sets(arm: str, recipe, large: Path, equal_time: dict[str, int] | None = None) -> list[str]:
    """The ``--set`` overrides of a recipe-run arm (``deploy``/``trim`` off: the arms compare models, not files)."""
    small = small_variant(recipe)
    common = ["deploy=null", "trim=null"]
    if arm == "d":
        return [*common, f"variants={json.dumps([small])}"]
    if arm in ("b", "e"):
        narrow = {**small, "name": VARIANT["e"], "mlp_keep": 0.5}
        return [*common, *embedder_sets(large), "recover=distill", f"variants={json.dumps([small, narrow])}"]
    if arm == "c":
        return [*common, *embedder_sets(large), f"variants={json.dumps([small])}"]
    if arm == "b=":
        assert equal_time is not None
        variant = {"name": "small", "layers": equal_time["layers"], "steps": equal_time["steps"]}
        return [
            *common,
            *embedder_sets(large),
            "recover=distill",
            f"data.max_rows={equal_time['rows']}",
            f"variants={json.dumps([variant])}",
        ]
    raise ValueError(arm)


def run_recipe(recipe_name: str, folder: Path, sets: list[str]) -> None:
    """``st-prune run`` into ``folder`` (resumes a stopped run; skips a finished one), its output in folder.log."""
    command = [sys.executable, "-m", "st_prune.cli", "run", recipe_name, "--output", str(folder)]
    command += [part for item in sets for part in ("--set", item)]
    log(f"{folder.name}: st-prune run {recipe_name} --output {folder} " + " ".join(f"--set '{s}'" for s in sets))
    with folder.with_suffix(".log").open("a") as output:
        code = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.exit(f"bench: {folder.name} failed (exit {code}): see {folder.with_suffix('.log')}")


def stage_seconds(folder: Path, stage: str, variant: str | None = None) -> float:
    """Seconds of a finished stage, from its marker (a resumed run's summary counts skipped stages as 0)."""
    name = f"{stage}.{variant}.json" if variant else f"{stage}.json"
    return float(read_json(folder / "stages" / name)["seconds"])


def model_folder(folder: Path, variant: str) -> Path:
    return folder / "models" / read_json(folder / "stages" / f"export.{variant}.json")["folder"]


def recipe_arm(arm: str, folder: Path, teacher_seconds: float | None = None) -> dict[str, Any]:
    """An arm's record from its run folder: scores, layers, width, steps and the wall time it adds to a main job."""
    variant = VARIANT[arm]
    work = folder / "work" / variant
    evaluation, prune = read_json(work / "eval.json"), read_json(work / "prune.json")
    train = read_json(work / "train.json")
    distillation = train.get("distillation") or {}
    seconds = {"train": stage_seconds(folder, "train", variant)}
    if arm != "d":  # (d)'s scan is the base's, which the main job runs for `large` anyway
        seconds["scan"] = stage_seconds(folder, "scan")
    if arm == "e" and teacher_seconds is not None:
        # (e) read the teacher's embeddings from the cache (b) wrote in the same run: its train stage did not pay
        # for them, but (e) alone would.
        seconds["teacher (b's cache)"] = teacher_seconds
    return {
        "arm": arm,
        "layers": prune["layers"],
        "mlp_keep": prune.get("width", {}).get("mlp_keep", 1.0),
        "steps": train["steps"],
        "rows": train.get("triplets"),
        "scores": evaluation["scores"],
        "mean": 100 * evaluation["average"],
        "wall_seconds": round(sum(seconds.values()), 1),
        "wall_parts": seconds,
        "train_seconds": train["seconds"],
        "teacher_seconds": distillation.get("teacher_seconds"),
        "teacher_texts": distillation.get("teacher_texts"),
        "model": str(model_folder(folder, variant)),
    }


def equal_time_budget(
    budget: float,
    scan: float,
    teacher: float,
    rows: int,
    train: float,
    steps: int,
    batch_size: int,
    layers: int,
) -> dict[str, Any]:
    """Rows N (one pass, ceil(N / batch) steps) whose scan + teacher + training cost fits ``budget`` seconds, from
    (b)'s measured costs: its teacher seconds over its ``rows`` triplets (every text of a row is embedded) and its
    training seconds per step of ``batch_size`` rows; ``rows`` 0 when not even one batch fits."""
    per_row = teacher / rows + train / steps / batch_size
    fit = max(0, int((budget - scan) / per_row))
    fit = fit // batch_size * batch_size
    return {
        "rows": fit,
        "steps": fit // batch_size,
        "layers": layers,
        "budget_seconds": budget,
        "seconds_per_row": round(per_row, 4),
    }


# -------------------------------------------------------------------------------------------------- in-process arms


def evaluation_tasks(recipe) -> list[Any]:
    from st_prune.pipeline.recipe import recipe_relative
    from st_prune.pipeline.stages.evaluate import evaluation_tasks as tasks_of

    spec = recipe.evaluation
    return tasks_of(spec.tasks, [(recipe_relative(recipe, task.path), task) for task in spec.local_tasks])


def evaluate_folder(folder: Path, recipe, run_dir: Path, name: str) -> dict[str, Any]:
    from st_prune.pipeline.stages.evaluate import evaluate_variant

    return evaluate_variant(
        folder,
        evaluation_tasks(recipe),
        repo_id=f"local/bench-shrink-{name}",
        base_model=recipe.base_id,
        license=recipe.card.license,
        batch_size=recipe.evaluation.batch_size,
        run_dir=run_dir,
    )


def cut_arm(large: Path, layers: int, scan_seconds: float, recipe, out: Path) -> dict[str, Any]:
    """(a): the trained large cut to ``layers``, exported and scored as it is."""
    from st_prune import encoder_from_llm, export_model

    folder = out / "cut" / "model"
    if not (folder / "modules.json").exists():
        start = time.perf_counter()
        model = encoder_from_llm(str(large), layers=layers)
        export_model(model, folder)
        log(f"cut: {layers} layers exported in {time.perf_counter() - start:.0f}s")
    evaluation = evaluate_folder(folder, recipe, out / "cut", "cut")
    return {
        "arm": "a", "layers": layers, "mlp_keep": 1.0, "steps": 0, "rows": 0,
        "scores": evaluation["scores"], "mean": 100 * evaluation["average"],
        "wall_seconds": round(scan_seconds, 1), "wall_parts": {"scan (b's)": scan_seconds},
        "model": str(folder),
    }  # fmt: skip


def large_arm(large: Path, recipe, out: Path) -> dict[str, Any]:
    """(f): the uncut trained large, scored as the main job scores it."""
    evaluation = evaluate_folder(large, recipe, out / "large", "large")
    layers = read_json(large / "config.json")["num_hidden_layers"]
    return {
        "arm": "f", "layers": layers, "mlp_keep": 1.0, "steps": None, "rows": None,
        "scores": evaluation["scores"], "mean": 100 * evaluation["average"],
        "wall_seconds": 0.0, "wall_parts": {}, "model": str(large),
    }  # fmt: skip


def speed_texts(recipe, count: int = 256) -> list[str]:
    """The first ``count`` positives of the recipe's training triplets: document-length texts every arm embeds."""
    from st_prune.pipeline.recipe import load_recipe_data

    return [str(text) for text in load_recipe_data(recipe).rows["positive"][:count]]


def measure_speed(records: dict[str, dict], texts: list[str], rounds: int) -> None:
    """Parameters and tokens/s (median of ``rounds`` round-robin passes over ``texts``) of every arm's model."""
    import torch
    from common import round_robin_seconds
    from sentence_transformers import SentenceTransformer

    models = {arm: SentenceTransformer(record["model"], device="cpu") for arm, record in records.items()}
    for arm, model in models.items():
        records[arm]["parameters"] = sum(p.numel() for p in model.parameters())
        records[arm]["tokens"] = int(model.preprocess(texts)["attention_mask"].sum())  # real tokens, no padding
    steps = {arm: (lambda m=model: m.encode(texts, batch_size=16)) for arm, model in models.items()}
    with torch.inference_mode():
        seconds = round_robin_seconds(steps, rounds)
    for arm, taken in seconds.items():
        records[arm]["tokens_per_second"] = round(records[arm]["tokens"] / statistics.median(taken["wall"]), 1)


# ---------------------------------------------------------------------------------------------------------- report


def verdicts(records: dict[str, dict]) -> list[str]:
    """The issue's goals, each as measured."""
    b, d, e = records.get("b"), records.get("d"), records.get("e")
    lines = []
    if b and d:
        gain, ok_time = b["mean"] - d["mean"], b["wall_seconds"] <= d["wall_seconds"]
        met = gain >= 2 and ok_time
        lines.append(
            f"(b) >= (d) + 2 at no more wall time: {'MET' if met else 'NOT MET'} — (b) {b['mean']:.2f} vs (d) "
            f"{d['mean']:.2f} ({gain:+.2f}); wall {b['wall_seconds']:.0f}s vs {d['wall_seconds']:.0f}s"
        )
    equal = records.get("b=")
    if equal and d:
        gain = equal["mean"] - d["mean"]
        lines.append(
            f"(b=) at (d)'s wall time: {equal['mean']:.2f} vs (d) {d['mean']:.2f} ({gain:+.2f}); wall "
            f"{equal['wall_seconds']:.0f}s vs {d['wall_seconds']:.0f}s ({equal['rows']} triplets, {equal['steps']} steps)"
        )
    if b and e and "tokens_per_second" in b:
        drop, speed = b["mean"] - e["mean"], e["tokens_per_second"] / b["tokens_per_second"]
        met = drop <= 1.5 and speed >= 1.3
        lines.append(
            f"(e) within 1.5 of (b) and >= 1.3x its tokens/s: {'MET' if met else 'NOT MET'} — (e) {e['mean']:.2f} vs "
            f"(b) {b['mean']:.2f} ({-drop:+.2f}); {speed:.2f}x tokens/s"
        )
    return lines


def markdown(records: dict[str, dict], header: str, command: str) -> str:
    tasks = sorted({task for record in records.values() for task in record["scores"]})
    lines = [
        header,
        "",
        "```bash",
        command,
        "```",
        "",
        "| arm | what | layers | MLP | steps | params (M) | tokens/s | wall s | " + " | ".join(tasks) + " | mean |",
        "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * (len(tasks) + 1),
    ]
    for arm in ARMS:
        record = records.get(arm)
        if record is None:
            continue
        cells = [f"{100 * record['scores'][task]:.2f}" for task in tasks]
        lines.append(
            f"| ({arm}) | {ARMS[arm]} | {record['layers']} | {record['mlp_keep']:g} | {record['steps'] or '-'} | "
            f"{record.get('parameters', 0) / 1e6:.1f} | {record.get('tokens_per_second', float('nan')):.0f} | "
            f"{record['wall_seconds']:.0f} | " + " | ".join(cells) + f" | **{record['mean']:.2f}** |"
        )
    lines += ["", "Wall s: what the arm adds to a main job that trains `large` anyway:"]
    for arm in ARMS:
        if arm in records and records[arm]["wall_parts"]:
            parts = ", ".join(f"{name} {seconds:.0f}" for name, seconds in records[arm]["wall_parts"].items())
            lines.append(f"- ({arm}): {parts}")
    lines += ["", "Goals (issue 25), as measured:", *[f"- {line}" for line in verdicts(records)], ""]
    return "\n".join(lines)


def plot(records: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for arm, record in records.items():
        if "tokens_per_second" not in record:
            continue
        x, y = record["tokens_per_second"], record["mean"]
        axis.scatter(x, y, s=40, label=f"({arm}) {ARMS[arm]}")
        axis.annotate(f"({arm})", (x, y), fontsize=9, xytext=(5, 3), textcoords="offset points")
    axis.legend(fontsize=8, loc="lower right")
    axis.set_xlabel("tokens/s (model.encode, 2 CPU cores)")
    axis.set_ylabel("mean of the five dev tasks (x100)")
    axis.set_title("Shrinking the trained SmolLM2 large: quality vs speed")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ------------------------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", type=Path, required=True, help="the main job's trained large model folder")
    parser.add_argument("--recipe", default="smollm2-135m-instruct-cpu", help="the main job's recipe")
    parser.add_argument("--output", type=Path, default=OUT, help="run folders and results (resumable)")
    parser.add_argument("--json", type=Path, help="also write the results here (and the table/PNG beside it)")
    parser.add_argument("--rounds", type=int, default=7, help="round-robin encode passes for tokens/s")
    parser.add_argument("--skip-equal-time", action="store_true", help="leave out the (b=) arm")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the table and PNG from OUT/records.json, measuring nothing"
    )
    args = parser.parse_args()

    from st_prune.pipeline.recipe import find_recipe, load_recipe

    large = args.large.resolve()
    if not (large / "modules.json").is_file():
        print(f"bench: {large} is not a sentence-transformers folder: pass --large "
              "DIR/models/SmolLM2-135M-Instruct-l3prune-large from `st-prune run smollm2-135m-instruct-cpu "
              "--output DIR`", file=sys.stderr)  # fmt: skip
        return 2
    recipe = load_recipe(find_recipe(args.recipe))
    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "records.json"  # finished arms by name: a re-run skips them
    records: dict[str, dict] = read_json(cache) if cache.exists() else {}
    if records.get("_large") not in (None, str(large)):
        print(f"bench: {out} holds arms of another large ({records['_large']}); choose another --output",
              file=sys.stderr)  # fmt: skip
        return 2
    records["_large"] = str(large)

    def save(arm: str, record: dict[str, Any]) -> None:
        records[arm] = record
        cache.write_text(json.dumps(records, indent=1) + "\n")
        log(f"({arm}) {ARMS[arm]}: mean {record['mean']:.2f}, wall {record['wall_seconds']:.0f}s")

    if args.report_only:
        arms = {arm: record for arm, record in records.items() if not arm.startswith("_")}
        if not all("tokens_per_second" in record for record in arms.values()):
            print(f"bench: {cache} has unmeasured arms; run without --report-only", file=sys.stderr)
            return 2
        return report(arms, recipe, large, args, records.get("_rounds", args.rounds))
    if "f" not in records:
        save("f", large_arm(large, recipe, out))
    for arm in ("d", "b"):  # (b)'s run also trains (e): one scan of the large, one teacher cache
        if arm not in records:
            folder = out / RUNS[arm]
            run_recipe(args.recipe, folder, arm_sets(arm, recipe, large))
            save(arm, recipe_arm(arm, folder))
    from common import seed_scan  # bench/ is on sys.path when run; imported here so tests can load this file alone

    distill = out / RUNS["b"]
    if "e" not in records:
        save("e", recipe_arm("e", distill, teacher_seconds=records["b"]["teacher_seconds"]))
    layers, scan_seconds = records["b"]["layers"], stage_seconds(distill, "scan")
    if "a" not in records:
        save("a", cut_arm(large, layers, scan_seconds, recipe, out))
    if "c" not in records:
        folder = out / RUNS["c"]
        seed_scan(distill, folder)
        run_recipe(args.recipe, folder, arm_sets("c", recipe, large))
        record = recipe_arm("c", folder)
        record["wall_parts"]["scan"] = scan_seconds  # seeded from (b): a scan it would have run
        record["wall_seconds"] = round(sum(record["wall_parts"].values()), 1)
        save("c", record)
    if "b=" not in records and not args.skip_equal_time:
        b = records["b"]
        budget = equal_time_budget(
            records["d"]["wall_seconds"], scan_seconds, b["teacher_seconds"], b["rows"],
            b["train_seconds"], b["steps"], recipe.training.batch_size, layers,
        )  # fmt: skip
        log(f"(b=): {budget['rows']} triplets, {budget['steps']} steps fit in (d)'s {budget['budget_seconds']:.0f}s")
        if budget["steps"] >= 1:
            folder = out / RUNS["b="]
            run_recipe(args.recipe, folder, arm_sets("b=", recipe, large, budget))
            save("b=", {**recipe_arm("b=", folder), "budget": budget})

    arms = {arm: record for arm, record in records.items() if not arm.startswith("_")}
    log(f"tokens/s: {len(arms)} models, {args.rounds} round-robin rounds")
    measure_speed(arms, speed_texts(recipe), args.rounds)
    records["_rounds"] = args.rounds
    cache.write_text(json.dumps(records, indent=1) + "\n")

    return report(arms, recipe, large, args, args.rounds)


def report(arms: dict[str, dict], recipe, large: Path, args: argparse.Namespace, rounds: int) -> int:
    """The table (printed, OUT/results.md, ``--json``'s .md), the records and the PNG."""
    from st_prune.util.machine import machine_description

    out = args.output.resolve()
    command = (
        "python bench/bench_shrink.py --large DIR/models/SmolLM2-135M-Instruct-l3prune-large "
        "--json bench/results/shrink.json"
    )
    header = (
        f"# Shrinking the main job's trained large (issue 25, item 5)\n\n{recipe.name}; embedder: {large.name} "
        f"({arms['f']['layers']} layers). Five dev tasks, x100; tokens/s of `model.encode` on 256 training "
        f"positives, median of {rounds} round-robin passes. {machine_description()}, {time.strftime('%Y-%m-%d')}."
    )
    table = markdown(arms, header, command)
    print(table)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps(arms, indent=1) + "\n")
    plot(arms, out / "shrink.png")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(arms, indent=1) + "\n")
        args.json.with_suffix(".md").write_text(table)
        shutil.copy2(out / "shrink.png", args.json.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
