"""`st-prune eval MODEL --tasks paper`: evaluate a SentenceTransformer folder on MTEB tasks or your own data."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from st_prune.util.interrupts import Resume

DESCRIPTION = """\
Evaluate a saved SentenceTransformer model with mteb. Task instructions (LLM2Vec / E5 style, as in the paper) are
passed as prompts: on the query side of retrieval and reranking tasks, on both sides of symmetric tasks; a Pooling
module with include_prompt=False keeps them out of the embedding. Results are written in mteb's layout,
OUTPUT/results/ORG__NAME/REVISION/TASK.json with model_meta.json, ready for `st-prune submit`. Tasks already in
that folder are skipped unless --overwrite. Hub-hosted task data must be in the local cache when offline.
"""

LOCAL_TASK_HELP = """\
a JSONL file of your own data, one object per line: sts {sentence1, sentence2, score};
pair-classification {sentence1, sentence2, label 0/1}; classification {text, label, split train/test};
clustering {text, label}; retrieval {query, document} (one relevant document per row)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on MTEB tasks (paper, mteb-eng-v2, names) or a local JSONL task",
        description=DESCRIPTION,
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="a saved SentenceTransformer model folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--tasks",
        metavar="SET|NAME,...",
        help="'paper' (the paper's 15 tasks), 'mteb-eng-v2', 'mteb-eng-v1', or comma-separated mteb task names",
    )
    source.add_argument("--task-file", type=Path, metavar="FILE.jsonl", help=LOCAL_TASK_HELP)
    parser.add_argument(
        "--task-type",
        choices=["sts", "retrieval", "classification", "clustering", "pair-classification"],
        help="the type of --task-file (required with it)",
    )
    parser.add_argument("--task-name", help="name of the --task-file task (default: the file name)")
    parser.add_argument("--instruction", help="instruction for the --task-file task (default: mteb's for its type)")
    parser.add_argument(
        "--model-name", metavar="ORG/NAME", help="name to file results under (required for a local folder)"
    )
    parser.add_argument("--revision", help="the model's Hub commit (default: unknown, 'no_revision_available')")
    parser.add_argument(
        "--base-model", metavar="HUB_ID", help="the LLM the model was pruned from (ModelMeta adapted_from)"
    )
    parser.add_argument("--license", help="the model's license, e.g. apache-2.0 (ModelMeta license)")
    parser.add_argument(
        "--training-datasets",
        metavar="NAME,...",
        help="MTEB task names the training data overlaps (ModelMeta training_datasets)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("eval_results"), metavar="DIR", help="results root (default: eval_results)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="encoding batch size (default: 32)")
    parser.add_argument("--overwrite", action="store_true", help="re-run tasks that already have results")
    parser.set_defaults(func=run, interrupted=interrupted)


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    # mteb writes each task's results as it finishes; without --overwrite a re-run skips the tasks that have them.
    skipped = "" if args.overwrite else ", and the same command skips them"
    return Resume(f"the results of the finished tasks are kept in {args.output}{skipped}", argv)


def run(args: argparse.Namespace) -> int:
    # Imported here: mteb takes seconds to import, which other verbs should not pay.
    from st_prune.errors import StPruneError
    from st_prune.evaluation.evaluate import evaluate_model
    from st_prune.evaluation.local_tasks import load_local_task
    from st_prune.evaluation.model_meta import build_model_meta, resolve_model_identity
    from st_prune.evaluation.results import results_table_markdown
    from st_prune.evaluation.tasks import resolve_tasks

    # mteb logs every encoding step at INFO; the summary table below is what a user needs.
    logging.getLogger("mteb").setLevel(logging.WARNING)

    if args.task_file is not None and args.task_type is None:
        raise StPruneError("--task-file needs --task-type sts|retrieval|classification|clustering|pair-classification")
    if args.task_file is None and (args.task_type or args.task_name or args.instruction):
        raise StPruneError("--task-type, --task-name and --instruction describe a --task-file: pass one")
    if args.batch_size < 1:
        raise StPruneError(f"--batch-size must be at least 1, got {args.batch_size}")

    # Check the tasks before loading the model, so a typo fails fast.
    if args.task_file is not None:
        tasks = [load_local_task(args.task_file, args.task_type, name=args.task_name, instruction=args.instruction)]
    else:
        tasks = resolve_tasks(args.tasks)

    model = _load_model(args.model)
    name, revision = resolve_model_identity(model, args.model, model_name=args.model_name, revision=args.revision)
    meta = build_model_meta(
        model,
        name=name,
        revision=revision,
        base_model=args.base_model or model.model_card_data.base_model,
        license=args.license or model.model_card_data.license,
        training_datasets=_split_names(args.training_datasets),
    )
    run_result = evaluate_model(
        model, tasks, meta=meta, output_dir=args.output, batch_size=args.batch_size, overwrite=args.overwrite
    )
    print(results_table_markdown(run_result.results_dir, task_types=run_result.task_types))
    print(f"Results: {run_result.results_dir}")
    return 0


def _load_model(path: Path):
    from st_prune.errors import StPruneError
    from st_prune.util.local_only import load_model_folder

    if not path.exists():
        raise StPruneError(f"model folder {path} not found: pass the folder of a saved SentenceTransformer model")
    if not (path / "modules.json").is_file():
        raise StPruneError(
            f"{path} is not a saved SentenceTransformer folder (no modules.json): pass the exported model"
        )
    return load_model_folder(path)  # its path is not a Hub id to look up


def _split_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]
