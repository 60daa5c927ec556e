"""`st-prune train MODEL --data FILE (--layers K | --fraction P | --l3prune small|large) --output DIR`.

Prune, train with the paper's recipe (LoRA, hard-negative InfoNCE, instructions excluded from pooling) and
export the merged, vanilla-loadable model to DIR. Checkpoints go to the sibling folder DIR.work/ so
that DIR only ever holds the finished export (plus scan.json/scan.png with --l3prune); a run
that stops early continues with --resume. DIR.work/ is deleted after a successful export unless
--keep-checkpoints.

Several GPUs: the same command under torchrun --nproc_per_node N -m st_prune.cli train ... (or
accelerate launch -m st_prune.cli train ...) trains with DDP and shares in-batch negatives across
processes; --batch-size is per process.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from st_prune.model.dtypes import DTYPE_CHOICES
from st_prune.errors import StPruneError
from st_prune.util.files import read_json, write_json_atomic
from st_prune.util.interrupts import Resume

RUN_FILE = "run.json"
SCAN_JSON = "scan.json"
SCAN_PNG = "scan.png"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="prune an LLM and train it into an encoder with the paper's recipe (LoRA, InfoNCE), then export it",
        description=__doc__.split("\n", 2)[2].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="Hub id, local folder, or .gguf file of a decoder LLM")
    parser.add_argument(
        "--data", required=True, metavar="FILE",
        help="training triplets: JSONL/CSV/Parquet with anchor, positive (, negative, instruction) columns, "
        "or a folder of <task>.jsonl files (the E5 mix, echo-embeddings layout)",
    )
    parser.add_argument(
        "--instructions", metavar="JSON",
        help="task -> instruction for data with a task column (or a folder of task files) and no instruction column: "
        "a JSON file or inline JSON object",
    )
    parser.add_argument("--default-instruction", metavar="TEXT", help="instruction of rows without one")
    depth = parser.add_mutually_exclusive_group(required=True)
    depth.add_argument("--layers", type=int, metavar="K", help="decoder layers to keep (1..L)")
    depth.add_argument("--fraction", type=float, metavar="P", help="share of layers to drop; keeps int(L * (1 - P))")
    depth.add_argument(
        "--l3prune", choices=("small", "large"),
        help="keep the layer count L3Prune picks from the model's per-layer loss on --data (writes scan.json/png)",
    )
    parser.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (default 1000)")
    parser.add_argument("--batch-size", type=int, metavar="B", help="triplets per batch and process (default 64)")
    parser.add_argument("--learning-rate", type=float, metavar="LR", help="peak learning rate (default 2e-4)")
    parser.add_argument(
        "--warmup-steps", type=int, metavar="N", help="linear warm-up steps (default 30%% of --max-steps: 300 of 1000)"
    )
    parser.add_argument("--max-seq-length", type=int, metavar="N", help="tokens per text (default 512)")
    parser.add_argument("--lora-r", type=int, metavar="R", help="LoRA rank (default 16, alpha = 2R); 0 trains all weights")
    parser.add_argument(
        "--lora-targets", metavar="NAME,...",
        help="projections to adapt (default q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)",
    )
    parser.add_argument("--seed", type=int, metavar="S", help="random seed (default 42)")
    parser.add_argument("--save-steps", type=int, metavar="N", help="checkpoint every N steps (default 100)")
    parser.add_argument("--cached-loss", action="store_true", help="GradCache loss: big batches in little memory")
    parser.add_argument("--pooling", choices=("weighted_mean", "last_token", "mean"), default="weighted_mean")
    parser.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default="auto",
        help="dtype the model loads, trains and is exported in (default auto: the checkpoint's own)",
    )
    parser.add_argument("--scan-batches", type=int, metavar="N", help="L3Prune: batches to average the loss over")
    parser.add_argument(
        "--scan-batch-size", type=int, metavar="B", help="L3Prune: triplets per scan batch (default: --batch-size)"
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the exported model (empty or absent)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="continue the run from the last checkpoint in DIR.work (or from CHECKPOINT)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR and start DIR.work over")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep DIR.work after the export")
    parser.set_defaults(func=run, interrupted=interrupted)


def build_config(args: argparse.Namespace):
    """A TrainingConfig from the paper's defaults and the flags that were given (validated)."""
    from st_prune.training.trainer import TrainingConfig

    changes: dict[str, Any] = {}
    for flag, name in (
        ("max_steps", "max_steps"), ("batch_size", "batch_size"), ("learning_rate", "learning_rate"),
        ("warmup_steps", "warmup_steps"), ("max_seq_length", "max_seq_length"), ("seed", "seed"),
        ("save_steps", "save_steps"),
    ):
        value = getattr(args, flag)
        if value is not None:
            changes[name] = value
    if args.lora_r is not None:
        changes.update(lora_r=args.lora_r, lora_alpha=2 * args.lora_r)
    if args.lora_targets:
        changes["lora_target_modules"] = tuple(name.strip() for name in args.lora_targets.split(",") if name.strip())
    if args.cached_loss:
        changes["cached_loss"] = True
    return TrainingConfig(**changes)


def _read_data(args: argparse.Namespace):
    """``(data, prompts)`` from ``--data`` with the task instructions, through the loader ``st-prune run`` uses too
    (``st_prune.data.echo.load_training_source``: an echo-data folder is read as the paper's E5 mix)."""
    from st_prune.data.triplets import read_task_instructions
    from st_prune.data.echo import load_training_source

    instructions = read_task_instructions(args.instructions, "--instructions", inline=True) if args.instructions else None
    source = load_training_source(args.data, instructions=instructions, default_instruction=args.default_instruction)
    return source.data, source.prompts


def _read_run(work: Path) -> dict[str, Any] | None:
    path = work / RUN_FILE
    return read_json(path, fix="delete it or pass --overwrite to start over") if path.is_file() else None


def run(args: argparse.Namespace) -> int:
    from st_prune.training.trainer import (
        check_lora_targets,
        check_run_folders,
        is_main_process,
        prepare_training_data,
        train_pruned,
        work_dir_for,
    )
    from st_prune.model.truncated_llm import encoder_from_llm

    # Every check that can fail fast, before minutes of loading and scanning.
    if args.resume and args.overwrite:
        raise StPruneError("give --resume (continue the run) or --overwrite (start over), not both")
    for flag in ("scan_batches", "scan_batch_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise StPruneError(f"--{flag.replace('_', '-')} must be a positive integer")
    config = build_config(args)
    output = Path(args.output)
    work = work_dir_for(output)
    checkpoint = check_run_folders(output, work, args.resume, args.overwrite)
    from st_prune.util.writable import check_writable_folder

    check_writable_folder(output)  # DIR.work sits beside it, in the same parent
    source_data, source_prompts = _read_data(args)
    data = prepare_training_data(source_data, config.batch_size, source_prompts)
    if config.lora_r:
        check_lora_targets(args.model, config.lora_target_modules)
    from st_prune.model.dtypes import check_load_dtype

    check_load_dtype(args.model, args.dtype, training=True, fix="pass --dtype float32")
    depth = {"layers": args.layers, "fraction": args.fraction, "l3prune": args.l3prune}
    previous = _read_run(work) if checkpoint else None
    if previous is not None:
        started = {key: previous.get(key) for key in ("model", "layers", "fraction", "l3prune")}
        started["dtype"] = previous.get("dtype", "auto")  # runs started before --dtype existed loaded auto
        asked = {"model": args.model, **depth, "dtype": args.dtype}
        if started != asked:
            raise StPruneError(
                f"{work} was started with {started}, not {asked}; resume with the same MODEL, depth and --dtype flags"
            )

    extra_files: dict[str, str | bytes] = {}
    if args.l3prune:
        if previous is not None and previous.get("kept_layers") and (work / SCAN_JSON).is_file():
            model = encoder_from_llm(args.model, layers=previous["kept_layers"], pooling=args.pooling,
                                     max_seq_length=config.max_seq_length, dtype=args.dtype)
        else:
            model = _scan_and_prune(args, config, data, work)
        for name in (SCAN_JSON, SCAN_PNG):
            if (work / name).is_file():
                extra_files[name] = (work / name).read_bytes()
    else:
        model = encoder_from_llm(args.model, layers=args.layers, fraction=args.fraction, pooling=args.pooling,
                                 max_seq_length=config.max_seq_length, dtype=args.dtype)
    module = model[0]
    if is_main_process():
        write_json_atomic(work / RUN_FILE, {"model": args.model, **depth, "dtype": args.dtype,
                          "kept_layers": module.num_layers,
                          "num_original_layers": module.num_original_layers, "config": config.to_dict()})

    train_pruned(
        model, data, config, output, work_dir=work, resume=checkpoint or False, overwrite=args.overwrite,
        keep_checkpoints=args.keep_checkpoints, extra_files=extra_files or None,
    )
    if is_main_process():
        parameters = sum(parameter.numel() for parameter in model.parameters())
        print(
            f"trained {module.num_layers}/{module.num_original_layers} layers for {config.max_steps} steps, "
            f"{parameters / 1e6:.1f}M parameters -> {output}"
        )
    return 0


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    """Ctrl-C is how long trainings are stopped on purpose: the newest intact checkpoint in DIR.work and the
    command that resumes from it."""
    from st_prune.training.trainer import TrainingConfig, last_intact_checkpoint, work_dir_for

    last = last_intact_checkpoint(work_dir_for(Path(args.output)))
    if last is None:
        every = args.save_steps or TrainingConfig.save_steps
        return Resume(f"no checkpoint was saved yet (one every {every} steps, --save-steps)", argv,
                      action="start again with")
    return Resume(f"the last checkpoint is {last}", _resume_argv(args, argv))


def _resume_argv(args: argparse.Namespace, argv: list[str]) -> list[str]:
    """``argv`` with a bare ``--resume`` (the newest checkpoint) instead of ``--overwrite`` (refused beside it)
    or of ``--resume CHECKPOINT`` (an older checkpoint than the one just saved)."""
    kept: list[str] = []
    value_follows = False
    for token in argv:
        if value_follows and token == args.resume:  # the CHECKPOINT of `--resume CHECKPOINT`, as argparse read it
            value_follows = False
            continue
        value_follows = token == "--resume" and isinstance(args.resume, str)
        if token in ("--overwrite", "--resume") or token.startswith("--resume="):
            continue
        kept.append(token)
    return [*kept, "--resume"]


def _scan_and_prune(args: argparse.Namespace, config, data, work: Path):
    """Run L3Prune on the full-depth model over the training data exactly as the trainer will batch it,
    cut the model to the pick, and save scan.json and scan.png into the work folder."""
    from st_prune.l3prune.scan import L3Prune
    from st_prune.training.trainer import is_main_process
    from st_prune.model.truncated_llm import encoder_from_llm

    full = encoder_from_llm(args.model, pooling=args.pooling, max_seq_length=config.max_seq_length, dtype=args.dtype)
    options: dict[str, Any] = {"seed": config.seed, "scale": config.scale, "batch_size": config.batch_size}
    if args.scan_batches is not None:
        options["num_batches"] = args.scan_batches
    if args.scan_batch_size is not None:
        options["batch_size"] = args.scan_batch_size
    train_dataset, prompts = data.for_trainer()
    result = L3Prune(**options).select(full, train_dataset, prompts=prompts)
    if is_main_process():
        work.mkdir(parents=True, exist_ok=True)
        result.save(work / SCAN_JSON)
        result.plot(work / SCAN_PNG)
        print(result.summary())
    return result.prune(full, args.l3prune)
