"""`st-prune run RECIPE`: scan -> prune -> train -> export -> evaluate -> card -> publish, for every variant."""

from __future__ import annotations

import argparse

from st_prune.model.dtype_names import DTYPE_CHOICES
from st_prune.pipeline.preflight import check_depths_for_plan
from st_prune.pipeline.recipe import load_recipe
from st_prune.pipeline.runner import RecipeRunner
from st_prune.pipeline.stages import STAGES
from st_prune.util.interrupts import Resume


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a recipe: scan, prune, train, export, evaluate, card (and publish) every variant",
        description="Run a recipe (a shipped recipe's name or a YAML file). Each stage writes its files under --output and is skipped "
        "when re-run, so an interrupted run resumes where it stopped.",
    )
    parser.add_argument(
        "recipe",
        metavar="RECIPE",
        help="a shipped recipe's name (`st-prune recipes` lists them, e.g. smollm2-135m-instruct-cpu) or a recipe YAML file",
    )
    parser.add_argument("--output", metavar="DIR", help="run folder (default: runs/<recipe name>)")
    parser.add_argument("--push-to-hub", metavar="ORG", help="publish every variant to ORG/<repo name> on the Hub")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key by its dotted path, e.g. --set training.steps=10 --set data.path=/data/e5",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        help="dtype the base loads, trains and exports in; same as --set base.dtype=DTYPE (the recipe's, else auto)",
    )
    parser.add_argument("--only", choices=STAGES, metavar="STAGE", help=f"run one stage only ({', '.join(STAGES)})")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the resolved settings; do nothing")
    parser.add_argument(
        "--zoo-index",
        metavar="DIR",
        help="also merge this run's variants into DIR/zoo.json and DIR/README.md (e.g. model_cards/)",
    )
    parser.set_defaults(func=run, interrupted=interrupted)


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    # Every stage writes its marker last, so a re-run skips exactly the finished ones; training keeps checkpoints.
    folder = args.output or "the run folder"
    return Resume(
        f"the finished stages are kept in {folder} and the same command skips them (a stopped training "
        "goes on from its last checkpoint)",
        argv,
    )


def run(args: argparse.Namespace) -> int:
    # --dtype is --set base.dtype=..., applied last so that it wins over the recipe and any --set.
    overrides = [*args.overrides, f"base.dtype={args.dtype}"] if args.dtype else args.overrides
    recipe = load_recipe(args.recipe, overrides)
    args.output = output = args.output or f"runs/{recipe.name}"  # also named by `interrupted`
    runner = RecipeRunner(recipe, output, push_to_hub=args.push_to_hub, only=args.only, zoo_index=args.zoo_index)
    if args.dry_run:
        note = check_depths_for_plan(runner.ctx)  # what a run refuses, a plan refuses too (the base's config only)
        print(runner.plan() + (f"\nnote: {note}" if note else ""))
        return 0
    summary = runner.run()
    for name, entry in summary.items():
        score = f", score {100 * entry['score']:.2f}" if entry.get("score") is not None else ""
        print(f"{name}: {entry['repo_id']} ({entry['layers']} layers{score}) -> {entry.get('folder', '-')}")
    return 0
