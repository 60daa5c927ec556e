"""`st-prune scan MODEL --data FILE`: L3Prune's per-layer loss curve and its small/large picks."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import st_prune.paper as paper
from st_prune.errors import StPruneError
from st_prune.model.dtype_names import DTYPE_CHOICES
from st_prune.paper import POOLING_MODES
from st_prune.util.interrupts import Resume


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="L3Prune: per-layer contrastive loss of an LLM on training data; picks the small and large depths",
        description="Compute, in one forward pass per batch, the contrastive loss a model cut to k layers would have "
        "on the training data for every k, then pick the minimum before the midpoint (small) and after it (large). "
        "Writes the curve as JSON and PNG.",
    )
    parser.add_argument("model", metavar="MODEL", help="Hub id, local folder, or .gguf file (scanned at full depth)")
    parser.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="triplets: JSONL/CSV/Parquet file (or folder) with anchor (or query), positive, optional negative and "
        "optional instruction (or task, with --task-instructions) columns",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=paper.SCAN_BATCH_SIZE,
        metavar="B",
        help="rows per batch (default %(default)s)",
    )
    parser.add_argument(
        "--num-batches",
        type=int,
        default=paper.SCAN_BATCHES,
        metavar="N",
        help="batches to average (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=paper.SEED, help="seed of the row sampling (default %(default)s)")
    parser.add_argument(
        "--scale", type=float, default=paper.INFONCE_SCALE, help="InfoNCE scale, 1/temperature (default %(default)g)"
    )
    parser.add_argument(
        "--pooling",
        choices=sorted(POOLING_MODES),
        help="pooling of an LLM's encoder (default weighted_mean); a sentence-transformers embedder is scanned with its "
        "own pooling, Dense/Normalize and query/document prompts",
    )
    parser.add_argument(
        "--max-seq-length", type=int, metavar="N", help="tokens per text (default 512; an embedder keeps its own)"
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="auto",
        help="dtype the model loads in (default auto: the checkpoint's own; float32 if the loss overflows)",
    )
    parser.add_argument(
        "--instruction", metavar="TEXT", help="instruction for every anchor without one (becomes its prompt)"
    )
    parser.add_argument(
        "--task-instructions",
        metavar="FILE",
        help="JSON object {task: instruction} for data with a task column (or a folder of per-task files)",
    )
    parser.add_argument("--device", help="e.g. cuda, cpu (default: sentence-transformers' choice)")
    parser.add_argument("--output", default="scan.json", metavar="FILE", help="scan file to write (default scan.json)")
    parser.add_argument("--plot", metavar="FILE", help="PNG of the curve (default: --output with .png)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    parser.set_defaults(func=run, interrupted=interrupted)


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    return Resume(f"nothing was written (the scan writes {args.output} when it ends)", argv, action="start again with")


def run(args: argparse.Namespace) -> int:
    from st_prune.data.echo import load_training_source
    from st_prune.data.triplets import read_task_instructions
    from st_prune.l3prune.scan import L3Prune, scan
    from st_prune.model.dtypes import check_load_dtype
    from st_prune.model.truncated_llm import encoder_from_llm

    if args.max_seq_length is not None and args.max_seq_length < 1:
        raise StPruneError(f"--max-seq-length must be a positive number of tokens, got {args.max_seq_length}")
    if not math.isfinite(args.scale) or args.scale <= 0:
        raise StPruneError(f"--scale must be a positive number (the paper uses 50), got {args.scale}")
    # The destinations too: a scan can take minutes, and its result must not be lost to an unwritable path.
    from st_prune.util.device import check_device
    from st_prune.util.writable import check_writable_file

    check_device(args.device)
    # Every file the scan will write, checked now: a scan can take minutes, and must never replace the user's files.
    destinations = [("--output", Path(args.output))]
    if not args.no_plot:
        destinations.append(
            ("--plot" if args.plot else "--output", Path(args.plot or Path(args.output).with_suffix(".png")))
        )
    for flag, path in destinations:
        check_writable_file(path, flag)
        _check_destination(path, flag, Path(args.data))
    if len({path.resolve() for _, path in destinations}) < len(destinations):
        raise StPruneError(
            f"--plot {args.plot} is the --output file; give the curve its own name, e.g. --plot scan.png"
        )
    selector = L3Prune(batch_size=args.batch_size, num_batches=args.num_batches, seed=args.seed, scale=args.scale)
    # Every data error comes before the (possibly minutes long) model load.
    instructions = (
        read_task_instructions(args.task_instructions, "--task-instructions") if args.task_instructions else None
    )
    # The loader `st-prune train` and `run` use: an echo-data folder is read as the paper's E5 mix.
    from st_prune.model.embedder import embedder_instruction_template, embedder_prompts

    template = embedder_instruction_template(args.model)  # a trained embedder's own instruction format
    source = load_training_source(
        args.data, instructions=instructions, default_instruction=args.instruction, template=template
    )
    batches = selector.sample(source.data, embedder_prompts(args.model, source.data, source.prompts), template)
    print(f"data: {len(source.rows)} rows from {args.data}; scanning {len(batches)} batches of {args.batch_size}")

    check_load_dtype(args.model, args.dtype, training=False, fix="pass --dtype float32")
    model = encoder_from_llm(
        args.model, pooling=args.pooling, max_seq_length=args.max_seq_length, device=args.device, dtype=args.dtype
    )
    result = scan(
        model,
        batches,
        scale=args.scale,
        settings={"batch_size": args.batch_size, "num_batches": len(batches), "seed": args.seed},
    )
    output = _write(Path(args.output), "--output", result.save)
    print(result.summary())
    print(f"curve -> {output}")
    if not args.no_plot:
        flag = "--plot" if args.plot else "--output"
        plot = _write(Path(args.plot or Path(args.output).with_suffix(".png")), flag, result.plot)
        print(f"plot -> {plot}")
    return 0


def _check_destination(path: Path, flag: str, data: Path) -> None:
    """``path`` is not the training data (nor inside a data folder) and holds no file st-prune did not write."""
    from st_prune.util import ownership

    target, source = path.resolve(), data.resolve()
    if target == source:
        raise StPruneError(
            f"{flag} {path} is the --data file, which the scan would overwrite; choose another {flag}, "
            f"e.g. {flag} scan.json"
        )
    if source in target.parents:
        raise StPruneError(
            f"{flag} {path} is inside the --data folder {data}, whose files are read as training data; "
            f"choose another {flag}, e.g. {flag} scan.json"
        )
    ownership.check_replace(path.parent, path.name, by="scan", fix=f"choose another {flag} or move that file away")


def _write(path: Path, flag: str, save) -> Path:
    """``save(temporary)`` renamed to ``path`` and recorded as st-prune's (``st_prune.util.ownership``)."""
    from st_prune.util import ownership

    ownership.write_file(path.parent, path.name, save, by="scan", fix=f"choose another {flag} or move that file away")
    return path
