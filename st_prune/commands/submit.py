"""`st-prune submit RESULTS_DIR --output DIR`: prepare MTEB leaderboard pull requests from `st-prune eval` results."""

from __future__ import annotations

import argparse
from pathlib import Path

from st_prune.util.interrupts import Resume

DESCRIPTION = """\
Prepare what the MTEB leaderboard needs from an `st-prune eval --output` folder: DIR/results/ in the layout of the
embeddings-benchmark/results repository (MTEB tasks only; local tasks are left out), DIR/<org>_models.py registering
each model's ModelMeta in mteb (for mteb/models/model_implementations/), and DIR/SUBMISSION.md with the steps.
Nothing is pushed: open the two pull requests yourself.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="prepare MTEB leaderboard submission files (results + mteb model registration)",
        description=DESCRIPTION,
    )
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="the --output folder of `st-prune eval`")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder to write the submission to")
    parser.add_argument("--model-name", metavar="ORG/NAME", help="submit only this model (default: every model found)")
    parser.set_defaults(func=run, interrupted=interrupted)


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    return Resume(
        f"{args.output} may hold part of the submission, which the same command writes again",
        argv,
        action="start again with",
    )


def run(args: argparse.Namespace) -> int:
    # Imported here: mteb takes seconds to import, which other verbs should not pay.
    from st_prune.evaluation.submission import prepare_submission

    submission = prepare_submission(args.results, args.output, model_name=args.model_name)
    print(f"Prepared the submission of {', '.join(submission.models)} in {submission.output_dir}:")
    print(f"  results for embeddings-benchmark/results: {submission.results_dir}")
    print(f"  ModelMeta for embeddings-benchmark/mteb:   {submission.registration_file}")
    if submission.skipped_tasks:
        print(f"  left out (not MTEB tasks): {', '.join(submission.skipped_tasks)}")
    for warning in submission.warnings:
        print(f"  warning: {warning}")
    print(f"Next steps: {submission.output_dir / 'SUBMISSION.md'}")
    return 0
