"""How many scan batches a recipe needs for sure picks: bootstrap share of each pick against the scan's size and cost.

One scan of the recipe's base model over ``--num-batches`` batches (the recipe's batch size, seed, scale and sequence
length, on the recipe's own training data) keeps every batch's per-depth losses and its seconds. Then, for each size
n in ``--sizes``:

- the recipe's scan at ``num_batches = n`` is the first n of those batches: ``L3Prune.sample`` draws one seeded
  permutation of all full batches and takes a prefix, so the prefix is exactly the batches that scan would use
  (checked below for every n); its picks and its ``pick_confidence`` (1000 bootstrap resamples of those n batches,
  the figure the runner writes to scan.json) are what that recipe would report;
- "agree": over ``--subsets`` random n-subsets of the scanned batches (drawn without replacement, seeded), how often
  the pick equals the pick of all scanned batches: how likely another seed's n-batch scan would pick the same;
- seconds: the sum of the first n batches' scan times (one ``st_prune.l3prune.scan`` call per batch, timed), without
  the model load (stated once) or the runner's tokens/s measurement, which do not grow with n.

    nice -n 10 python bench/bench_pick_confidence.py [--recipe smollm2-135m-instruct-cpu] [--num-batches 32]
        [--sizes 4,8,16,24,32] [--from-json bench/out/pick_confidence/RECIPE.json [--retime 8]]

``--from-json`` recomputes the table from a saved run without scanning again (with a larger ``--num-batches`` it
scans only the missing batches and saves the longer run); with ``--retime K`` it also loads
the model and times one ``scan`` over K batches, costing every size at that per-batch mean (per-batch times taken
while other jobs shared the CPU overstate the cost).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from st_prune.l3prune.scan import CONFIDENT_SHARE, L3Prune, L3PruneResult, scan, select_depths
from st_prune.pipeline.recipe import load_recipe, recipes_dir
from st_prune.pipeline.runner import RecipeRunner
from st_prune.util.machine import machine_description


def prepare(recipe_name: str, num_batches: int, sizes: list[int]):
    """The recipe, its base model as the scan stage builds it, the model's load time and ``num_batches`` batches."""
    recipe = load_recipe(recipes_dir() / f"{recipe_name}.yaml")
    settings = recipe.scan
    with tempfile.TemporaryDirectory() as scratch:
        runner = RecipeRunner(recipe, scratch, log=lambda _: None)
        start = time.perf_counter()
        # The runner's own encoder: the model exactly as the recipe's scan stage builds it.
        model = runner.ctx.encoder(None, settings.max_seq_length)
        load_seconds = time.perf_counter() - start
        # The data and prompts the scan stage gives L3Prune (runners with echo-data support hand over prompts too).
        if hasattr(runner, "training_source"):
            data, prompts = runner.ctx.training_source().data, runner.ctx.training_source().prompts
        else:
            data, prompts = runner.ctx.rows(), None
    selector = L3Prune(
        batch_size=settings.batch_size,
        num_batches=num_batches,
        seed=settings.seed,
        scale=settings.scale,
        show_progress_bar=False,
    )
    batches = selector.sample(data, prompts)
    if len(batches) < num_batches:
        sys.exit(
            f"bench: the recipe's data holds only {len(batches)} batches of {settings.batch_size}; lower --num-batches"
        )
    for size in sizes:  # the prefix claim the table rests on
        smaller = L3Prune(batch_size=settings.batch_size, num_batches=size, seed=settings.seed, scale=settings.scale)
        assert [b.texts for b in smaller.sample(data, prompts)] == [b.texts for b in batches[:size]], size
    return recipe, model, load_seconds, batches


def retime(run: dict, count: int) -> dict:
    """Time one ``scan`` call over the run's first ``count`` batches (what the scan stage runs) and cost every batch
    at that call's mean: for a run whose per-batch times a busy machine inflated."""
    import os

    recipe, model, load_seconds, batches = prepare(run["recipe"], count, [])
    start = time.perf_counter()
    scan(model, batches, scale=recipe.scan.scale, show_progress_bar=False)
    seconds = time.perf_counter() - start
    per_batch = seconds / count
    return {
        **run,
        "batch_seconds": [per_batch] * len(run["batch_losses"]),
        "model_load_seconds": load_seconds,
        "machine": machine_description(),
        "timing": f"one scan() over {count} batches: {seconds:.1f} s ({per_batch:.2f} s/batch), load average "
        f"{os.getloadavg()[0]:.1f} at the end",
    }


def run_scan(recipe_name: str, num_batches: int, sizes: list[int], earlier: dict | None = None) -> dict:
    """Scan ``num_batches`` batches of the recipe one at a time; per-batch losses and seconds.

    With ``earlier`` (a saved run of fewer batches), only the batches after its last are scanned: they are the
    same prefix of the same seeded sample.
    """
    recipe, model, load_seconds, batches = prepare(recipe_name, num_batches, sizes)
    settings = recipe.scan
    losses = list(earlier["batch_losses"]) if earlier else []
    seconds = list(earlier["batch_seconds"]) if earlier else []
    for number, batch in enumerate(batches[len(losses) :], start=len(losses) + 1):
        start = time.perf_counter()
        result = scan(model, [batch], scale=settings.scale, show_progress_bar=False)
        seconds.append(time.perf_counter() - start)
        losses.append(result.batch_losses[0])
        print(f"batch {number}/{num_batches}: {seconds[-1]:.2f} s", file=sys.stderr, flush=True)
    return {
        "recipe": recipe_name,
        "base_model": recipe.base_id,
        "batch_size": settings.batch_size,
        "seed": settings.seed,
        "scale": settings.scale,
        "max_seq_length": settings.max_seq_length or recipe.base.max_seq_length,
        "num_batches": num_batches,
        "model_load_seconds": load_seconds,
        "batch_seconds": seconds,
        "batch_losses": losses,
        "machine": machine_description(),
    }


def table(run: dict, sizes: list[int], subsets: int) -> list[dict]:
    losses = np.asarray(run["batch_losses"])
    seconds = np.asarray(run["batch_seconds"])
    everything = select_depths(losses.mean(axis=0).tolist())
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        prefix = losses[:size]
        result = L3PruneResult(prefix.mean(axis=0).tolist(), batch_losses=prefix.tolist(), seed=run["seed"])
        confidence = result.pick_confidence()
        draws = [
            select_depths(losses[rng.choice(len(losses), size, replace=False)].mean(axis=0).tolist())
            for _ in range(subsets)
        ]
        row = {"num_batches": size, "seconds": float(seconds[:size].sum())}
        for index, pick in enumerate(("small", "large")):
            entry = (
                confidence[pick]
                if confidence
                else {"depth": getattr(result, pick), "share": None, "runner_up": None, "runner_up_share": None}
            )
            row[pick] = {
                **entry,
                "agree": sum(draw[index] == everything[index] for draw in draws) / subsets,
                "pick_of_all": everything[index],
            }
        rows.append(row)
    return rows


def print_table(run: dict, rows: list[dict]) -> None:
    print(
        f"{run['recipe']} ({run['base_model']}): scan batches of {run['batch_size']}, seed {run['seed']}, "
        f"max_seq_length {run['max_seq_length']}; {run['num_batches']} batches scanned; model load "
        f"{run['model_load_seconds']:.1f} s (not counted); {run['machine']}"
    )
    all_small, all_large = rows[0]["small"]["pick_of_all"], rows[0]["large"]["pick_of_all"]
    print(f"picks of all {run['num_batches']} batches: small {all_small}, large {all_large}")
    print("| num_batches | scan s | small (share, runner-up) | agree | large (share, runner-up) | agree |")
    print("|---:|---:|---|---:|---|---:|")

    def cell(entry: dict) -> str:
        if entry["share"] is None:
            return f"{entry['depth']} (no bootstrap: 1 batch)"
        return f"{entry['depth']} ({100 * entry['share']:.0f} %, {entry['runner_up']} {100 * entry['runner_up_share']:.0f} %)"

    for row in rows:
        print(
            f"| {row['num_batches']} | {row['seconds']:.1f} | {cell(row['small'])} | {100 * row['small']['agree']:.0f} % "
            f"| {cell(row['large'])} | {100 * row['large']['agree']:.0f} % |"
        )
    seconds = np.asarray(run["batch_seconds"])
    print(
        f"seconds per batch: min {seconds.min():.2f}, median {np.median(seconds):.2f}, max {seconds.max():.2f} "
        "(the spread is other jobs on the CPU: the minimum is the closest to an idle machine)"
    )
    # A size counts as enough for a pick only if every larger size measured holds the share too: a near tie can
    # cross the threshold at one size and fall under it again with more batches.
    for pick in ("small", "large"):
        enough = [
            row
            for index, row in enumerate(rows)
            if all((later[pick]["share"] or 0) >= CONFIDENT_SHARE for later in rows[index:])
        ]
        if enough:
            first = enough[0]
            print(
                f"{pick}: >= {100 * CONFIDENT_SHARE:.0f} % from {first['num_batches']} batches on (pick "
                f"{first[pick]['depth']}; {first['seconds']:.1f} s measured, {first['num_batches'] * seconds.min():.0f} s "
                "at the fastest batch's pace)"
            )
        else:
            print(
                f"{pick}: under {100 * CONFIDENT_SHARE:.0f} % at {rows[-1]['num_batches']} batches: no size measured "
                "here makes it sure (scan more batches with --num-batches, or treat the pick as a near tie)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="smollm2-135m-instruct-cpu", help="a shipped recipe's name")
    parser.add_argument("--num-batches", type=int, default=32, help="batches to scan (the largest size)")
    parser.add_argument("--sizes", default="4,8,16,24,32", help="comma-separated scan sizes to evaluate")
    parser.add_argument("--subsets", type=int, default=1000, help="random n-subsets for the 'agree' column")
    parser.add_argument("--output-dir", default="bench/out/pick_confidence")
    parser.add_argument("--from-json", type=Path, help="a saved run: recompute the table without scanning")
    parser.add_argument(
        "--retime",
        type=int,
        metavar="K",
        help="with --from-json: cost the sizes from one timed scan of K batches (for a run timed on a busy machine)",
    )
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    if args.retime and not args.from_json:
        parser.error("--retime needs --from-json (the run whose batches to re-time)")
    if args.from_json:
        run = json.loads(args.from_json.read_text())
        if args.retime:
            run = retime(run, args.retime)
            print(run["timing"])
        elif args.num_batches > len(run["batch_losses"]):  # extend the saved run
            run = run_scan(run["recipe"], args.num_batches, sizes, earlier=run)
    else:
        if sizes[-1] > args.num_batches:
            parser.error(f"--sizes goes up to {sizes[-1]} but --num-batches is {args.num_batches}")
        run = run_scan(args.recipe, args.num_batches, sizes)
    if sizes[-1] > len(run["batch_losses"]):
        parser.error(f"--sizes goes up to {sizes[-1]} but the run has {len(run['batch_losses'])} batches")
    rows = table(run, sizes, args.subsets)
    print_table(run, rows)
    output = Path(args.output_dir) / f"{run['recipe']}{'.retimed' if args.retime else ''}.json"
    if (
        not args.from_json
        or args.retime
        or len(run["batch_losses"]) > len(json.loads(args.from_json.read_text())["batch_losses"])
    ):
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({**run, "table": rows}, indent=1) + "\n")
        print(f"-> {output}")


if __name__ == "__main__":
    main()
