"""Try settings of a CPU recipe side by side: each trial is the recipe run with its own `--set` overrides, scored
on the recipe's evaluation tasks (the five dev tasks for the SmolLM2 CPU recipe), with its training seconds.

    python bench/tune_cpu_recipe.py --trial "lr1e-3: training.learning_rate=1e-3" \\
        --trial "s200: variants=[{name: small, pick: small, steps: 200}]; training.warmup_steps=20"

Trials run one after another (`st-prune run RECIPE --output OUT/NAME --set deploy=null --set ...`), each in its
own folder, so a re-run skips finished trials and a killed one resumes. The first trial's scan is copied into the
others (same scan settings: same picks, no second scan). Results: OUT/results.json and OUT/results.md, one row per
trial and variant; `--report-only` rebuilds them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import seed_scan  # bench/ is on sys.path when a script here runs

OUT = Path(__file__).resolve().parent / "out" / "tune"


def parse_trial(text: str) -> tuple[str, list[str]]:
    """``"name: a=1; b=2"`` -> ``("name", ["a=1", "b=2"])`` (';' separates: values such as lists hold commas)."""
    name, _, rest = text.partition(":")
    if not name.strip() or "/" in name:
        sys.exit(f"tune: bad trial {text!r}: write NAME: key=value; key=value")
    return name.strip(), [item.strip() for item in rest.split(";") if item.strip()]


def trial_file(out: Path, name: str) -> Path:
    """Where a trial's overrides are kept: beside its run folder, not in it (the runner refuses a non-empty folder
    that holds no run of its own)."""
    return out / f"{name}.trial.json"


def trial_sets(out: Path, name: str) -> list[str]:
    """The overrides a trial ran with (written before it starts; older trials kept them in their folder)."""
    for path in (trial_file(out, name), out / name / "trial.json"):
        if path.exists():
            return json.loads(path.read_text())["sets"]
    return []


def collect(out: Path, name: str, sets: list[str]) -> list[dict]:
    folder = out / name
    summary = json.loads((folder / "summary.json").read_text())
    seconds = {row["stage"]: row["seconds"] for row in summary["stages"]}
    rows = []
    for work in sorted((folder / "work").iterdir()):
        eval_file, train_file = work / "eval.json", work / "train.json"
        if not eval_file.exists():
            continue
        evaluation = json.loads(eval_file.read_text())
        scores = evaluation["scores"]
        train = json.loads(train_file.read_text()) if train_file.exists() else {}
        prune = json.loads((work / "prune.json").read_text()) if (work / "prune.json").exists() else {}
        rows.append(
            {
                "trial": name,
                "sets": sets,
                "variant": work.name,
                "layers": prune.get("layers"),
                "steps": train.get("steps"),
                "train_seconds": seconds.get(f"train[{work.name}]"),
                "scores": {task: round(100 * value, 2) for task, value in scores.items()},
                "mean": round(100 * evaluation["average"], 2),  # as the card rounds it
            }
        )
    return rows


def report(out: Path, rows: list[dict]) -> str:
    tasks = sorted({task for row in rows for task in row["scores"]})
    lines = [
        "| trial | variant | layers | steps | train s | " + " | ".join(tasks) + " | mean |",
        "|---|---|---:|---:|---:|" + "---:|" * (len(tasks) + 1),
    ]
    for row in rows:
        cells = [f"{row['scores'].get(task, float('nan')):.2f}" for task in tasks]
        lines.append(
            f"| {row['trial']} | {row['variant']} | {row['layers']} | {row['steps']} | "
            f"{row['train_seconds'] if row['train_seconds'] is not None else '-'} | "
            + " | ".join(cells)
            + f" | **{row['mean']:.2f}** |"
        )
    settings = "\n".join(
        f"- `{row['trial']}`: " + ("; ".join(f"`{s}`" for s in row["sets"]) or "the recipe as is")
        for row in {row["trial"]: row for row in rows}.values()
    )
    text = "\n".join(lines) + "\n\nTrials (overrides of the recipe):\n" + settings + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="smollm2-135m-instruct-cpu", help="a shipped recipe's name or a YAML file")
    parser.add_argument(
        "--trial",
        action="append",
        default=[],
        metavar="'NAME: KEY=VALUE; ...'",
        help="a trial: a name, then `--set` overrides separated by ';' (none: the recipe as is)",
    )
    parser.add_argument("--output", type=Path, default=OUT)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    trials = [parse_trial(text) for text in args.trial]
    if not args.report_only:
        for name, sets in trials:
            folder = args.output / name
            if name != trials[0][0]:
                seed_scan(args.output / trials[0][0], folder)
            command = [
                sys.executable,
                "-m",
                "st_prune.cli",
                "run",
                args.recipe,
                "--output",
                str(folder),
                "--set",
                "deploy=null",
            ] + [part for item in sets for part in ("--set", item)]
            print(f"tune: {name}: {' '.join(command[2:])}", flush=True)
            trial_file(args.output, name).write_text(json.dumps({"recipe": args.recipe, "sets": sets}) + "\n")
            with (args.output / f"{name}.log").open("w") as log:
                if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                    print(f"tune: {name} failed: see {args.output / f'{name}.log'}", file=sys.stderr)
                    return 1
    names = [name for name, _ in trials] or sorted(
        p.name for p in args.output.iterdir() if (p / "summary.json").exists()
    )
    rows = [
        row
        for name in names
        if (args.output / name / "summary.json").exists()
        for row in collect(args.output, name, trial_sets(args.output, name))
    ]
    print(report(args.output, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
