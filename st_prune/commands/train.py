"""`st-prune train MODEL --data FILE (--layers K | --fraction P | --l3prune small|large) --output DIR`.

Prune, train with the paper's recipe (LoRA, hard-negative InfoNCE, instructions excluded from pooling) and
export the merged, vanilla-loadable model to DIR. Checkpoints go to the sibling folder DIR.work/ so
that DIR only ever holds the finished export (plus scan.json/scan.png with --l3prune); a run
that stops early continues with --resume. What st-prune wrote in DIR.work/ is deleted after a successful
export unless --keep-checkpoints; a DIR.work/ of your own is never used or deleted.

Several GPUs: the same command under torchrun --nproc_per_node N -m st_prune.cli train ... (or
accelerate launch -m st_prune.cli train ...) trains with DDP and shares in-batch negatives across
processes; --batch-size is per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from st_prune.errors import StPruneError
from st_prune.model.dtype_names import DTYPE_CHOICES
from st_prune.util.files import read_json
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
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="Hub id, local folder, or .gguf file of a decoder LLM; or a sentence-transformers embedder over one (its "
        "pooling, Dense/Normalize modules, prompts and tokenizer are kept)",
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="training triplets: JSONL/CSV/Parquet with anchor, positive (, negative, instruction) columns, "
        "or a folder of <task>.jsonl files (the E5 mix, echo-embeddings layout)",
    )
    parser.add_argument(
        "--instructions",
        metavar="JSON",
        help="task -> instruction for data with a task column (or a folder of task files) and no instruction column: "
        "a JSON file or inline JSON object",
    )
    parser.add_argument("--default-instruction", metavar="TEXT", help="instruction of rows without one")
    depth = parser.add_mutually_exclusive_group(required=True)
    depth.add_argument("--layers", type=int, metavar="K", help="decoder layers to keep (1..L)")
    depth.add_argument("--fraction", type=float, metavar="P", help="share of layers to drop; keeps int(L * (1 - P))")
    depth.add_argument(
        "--l3prune",
        choices=("small", "large"),
        help="keep the layer count L3Prune picks from the model's per-layer loss on --data (writes scan.json/png)",
    )
    add_training_flags(parser)
    parser.add_argument(
        "--pooling",
        choices=("weighted_mean", "last_token", "mean"),
        help="pooling of an LLM's encoder (default weighted_mean); an embedder keeps its own",
    )
    parser.add_argument(
        "--mlp-keep",
        type=float,
        default=1.0,
        metavar="F",
        help="share of MLP channels every kept layer keeps, 0 < F <= 1 (default 1), ranked by their activations on "
        "--data before training",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="auto",
        help="dtype the model loads, trains and is exported in (default auto: the checkpoint's own)",
    )
    parser.add_argument("--scan-batches", type=int, metavar="N", help="L3Prune: batches to average the loss over")
    parser.add_argument(
        "--scan-batch-size", type=int, metavar="B", help="L3Prune: triplets per scan batch (default: --batch-size)"
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="folder for the exported model (empty or absent)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue the run from the last checkpoint in DIR.work (or from CHECKPOINT)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR and start DIR.work over")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep DIR.work after the export")
    parser.set_defaults(func=run, interrupted=interrupted)


#: TrainingConfig fields without a flag: a recipe sets them (its `distill` section), `st-prune train` has no teacher.
RECIPE_ONLY = {"distill_weight": "distill.weight"}  # distill_distance is also --distill-distance (--recover)


def training_flags() -> dict[str, list[str]]:
    """``TrainingConfig`` field -> its flags: ``--name-with-dashes``, plus the field's other spelling if any."""
    from st_prune.training.config import TrainingConfig

    flags = {}
    for info in dataclasses.fields(TrainingConfig):
        if info.name not in RECIPE_ONLY:
            other = info.metadata["cli"].get("flag")
            flags[info.name] = [f"--{info.name.replace('_', '-')}", *([other] if other else [])]
    return flags


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainingConfig`` field (its type, help and default from the field); unset flags keep the
    field's default."""
    from st_prune.training.config import TrainingConfig
    from st_prune.util.settings import unwrap

    group = parser.add_argument_group("training (TrainingConfig; defaults are the paper's)")
    fields = {info.name: info for info in dataclasses.fields(TrainingConfig)}
    for name, flags in training_flags().items():
        info, kind = fields[name], unwrap(TrainingConfig.__annotations__[name])
        help = info.metadata["help"].replace("%", "%%")
        default = info.default if info.default_factory is dataclasses.MISSING else info.default_factory()
        if default not in (None, {}) and kind is not bool and "paper:" not in help:
            help += f" (default {','.join(default) if isinstance(default, tuple) else default})"
        options: dict[str, Any] = {"dest": name, "default": None, "help": help}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is typing.Literal:
            options["choices"] = typing.get_args(kind)
        elif typing.get_origin(kind) is tuple:
            options["type"] = _names
        elif typing.get_origin(kind) is dict:
            options["type"] = _json_object
        else:
            options["type"] = kind
        if "metavar" in info.metadata["cli"]:
            options["metavar"] = info.metadata["cli"]["metavar"]
        group.add_argument(*flags, **options)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


_json_object.__name__ = "JSON object"  # argparse names the type in its error: "invalid JSON object value"


def build_config(args: argparse.Namespace):
    """A TrainingConfig from the paper's defaults and the flags that were given (validated)."""
    from st_prune.training.config import TrainingConfig

    changes = {name: getattr(args, name) for name in training_flags() if getattr(args, name) is not None}
    if "lora_r" in changes and "lora_alpha" not in changes:
        changes["lora_alpha"] = 2 * changes["lora_r"]  # the paper's ratio (16 / 32), kept when only the rank is given
    try:
        return TrainingConfig(**changes)
    except StPruneError as error:  # "max_steps must be ..." -> "--max-steps must be ...": the flag is the fix
        name = str(error).split(" ", 1)[0]
        if name in changes:
            raise StPruneError(f"{training_flags()[name][0]}{str(error)[len(name) :]}") from None
        raise


def _read_data(args: argparse.Namespace, template: str):
    """``(data, prompts)`` from ``--data`` with the task instructions, through the loader ``st-prune run`` uses too
    (``st_prune.data.echo.load_training_source``: an echo-data folder is read as the paper's E5 mix); ``template`` is
    the model's instruction format."""
    from st_prune.data.echo import load_training_source
    from st_prune.data.triplets import read_task_instructions

    instructions = (
        read_task_instructions(args.instructions, "--instructions", inline=True) if args.instructions else None
    )
    source = load_training_source(
        args.data, instructions=instructions, default_instruction=args.default_instruction, template=template
    )
    return source.data, source.prompts


def _read_run(work: Path) -> dict[str, Any] | None:
    path = work / RUN_FILE
    return read_json(path, fix="delete it or pass --overwrite to start over") if path.is_file() else None


def run(args: argparse.Namespace) -> int:
    from st_prune.data.training_data import prepare_training_data
    from st_prune.model.truncated_llm import encoder_from_llm
    from st_prune.training.trainer import (
        check_lora_targets,
        check_run_folders,
        train_pruned,
        work_dir_for,
    )
    from st_prune.util.distributed import is_main

    # Every check that can fail fast, before minutes of loading and scanning.
    if args.resume and args.overwrite:
        raise StPruneError("give --resume (continue the run) or --overwrite (start over), not both")
    for flag in ("scan_batches", "scan_batch_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise StPruneError(f"--{flag.replace('_', '-')} must be a positive integer")
    from st_prune.model.width import check_mlp_keep

    check_mlp_keep(args.mlp_keep)
    config = build_config(args)
    output = Path(args.output)
    work = work_dir_for(output)
    checkpoint = check_run_folders(output, work, args.resume, args.overwrite)
    from st_prune.util.writable import check_writable_folder

    check_writable_folder(output)  # DIR.work sits beside it, in the same parent
    from st_prune.training.self_distill import read_texts

    # Self-distillation needs no labels: a .txt or a JSONL text column is read as texts (an empty one is refused).
    texts = read_texts(args.data) if config.recover else None
    if texts is not None:
        if args.l3prune:
            raise StPruneError(
                "--l3prune scans on pairs and --data holds unlabelled text: give --layers or "
                "--fraction, or triplets in --data"
            )
        from st_prune.training.self_distill import text_training_data

        data = text_training_data(texts, _document_prompt(args.model), config.batch_size)
    else:
        from st_prune.model.embedder import embedder_instruction_template, embedder_prompts

        # A trained embedder trains (and is scanned) on its texts as it embeds them: its own query/document prompts
        # and its own instruction format.
        template = embedder_instruction_template(args.model)
        source_data, source_prompts = _read_data(args, template)
        source_prompts = embedder_prompts(args.model, source_data, source_prompts)
        data = prepare_training_data(source_data, config.batch_size, source_prompts, template)
    if config.lora_r:
        check_lora_targets(args.model, config.lora_target_modules)
    from st_prune.model.dtypes import check_load_dtype

    check_load_dtype(args.model, args.dtype, training=True, fix="pass --dtype float32")
    depth = {"layers": args.layers, "fraction": args.fraction, "l3prune": args.l3prune}
    if args.mlp_keep != 1:  # runs started before --mlp-keep existed kept the whole width: their run.json lacks it
        depth["mlp_keep"] = args.mlp_keep
    previous = _read_run(work) if checkpoint else None
    if previous is not None:
        started = {key: previous.get(key) for key in ("model", "layers", "fraction", "l3prune")}
        if previous.get("mlp_keep", 1) != 1:
            started["mlp_keep"] = previous["mlp_keep"]
        started["dtype"] = previous.get("dtype", "auto")  # runs started before --dtype existed loaded auto
        asked = {"model": args.model, **depth, "dtype": args.dtype}
        if started != asked:
            raise StPruneError(
                f"{work} was started with {started}, not {asked}; resume with the same MODEL, depth, --mlp-keep and "
                "--dtype flags"
            )

    extra_files: dict[str, str | bytes] = {}
    if args.l3prune:
        if previous is not None and previous.get("kept_layers") and (work / SCAN_JSON).is_file():
            model = encoder_from_llm(
                args.model,
                layers=previous["kept_layers"],
                pooling=args.pooling,
                max_seq_length=config.max_seq_length,
                dtype=args.dtype,
            )
        else:
            model = _scan_and_prune(args, config, data, work)
        for name in (SCAN_JSON, SCAN_PNG):
            if (work / name).is_file():
                extra_files[name] = (work / name).read_bytes()
    else:
        model = encoder_from_llm(
            args.model,
            layers=args.layers,
            fraction=args.fraction,
            pooling=args.pooling,
            max_seq_length=config.max_seq_length,
            dtype=args.dtype,
        )
    width = None
    if args.mlp_keep < 1:
        # Ranked on the same texts, prompts and seed every time, so a resumed run cuts the same channels.
        from st_prune.l3prune.shrink import importance_texts
        from st_prune.model.width import channel_importance, prune_mlp_width

        train_dataset, prompts = data.for_trainer()
        texts = importance_texts(train_dataset, prompts, seed=config.seed)
        width = prune_mlp_width(model, args.mlp_keep, channel_importance(model, texts))
    if config.recover:
        data, cost = _teacher_embeddings(args, config, model, data, work)
        extra_files["teacher.json"] = json.dumps(cost, indent=2) + "\n"  # the teacher's cost, beside the model
    module = model[0]
    if is_main():
        from st_prune.training.trainer import claim_work_dir
        from st_prune.util import ownership

        claim_work_dir(work)
        run_record = {
            "model": args.model,
            **depth,
            "dtype": args.dtype,
            "kept_layers": module.num_layers,
            "num_original_layers": module.num_original_layers,
            "config": config.to_dict(),
        }
        ownership.write_text(
            work,
            RUN_FILE,
            json.dumps(run_record, indent=2, sort_keys=True) + "\n",
            by="train",
            fix="move it away or choose another --output",
        )

    train_pruned(
        model,
        data,
        config,
        output,
        work_dir=work,
        resume=checkpoint or False,
        overwrite=args.overwrite,
        keep_checkpoints=args.keep_checkpoints,
        extra_files=extra_files or None,
    )
    if is_main():
        parameters = sum(parameter.numel() for parameter in model.parameters())
        mlp = f", MLP width {width['intermediate_size']}/{width['original_intermediate_size']}" if width else ""
        print(
            f"trained {module.num_layers}/{module.num_original_layers} layers{mlp} for {config.max_steps} steps, "
            f"{parameters / 1e6:.1f}M parameters -> {output}"
        )
    return 0


def _document_prompt(model: str) -> str | None:
    """The prompt an embedder puts before documents (read from its files), for unlabelled texts."""
    from st_prune.model.embedder import is_sentence_transformer, read_embedder

    if not is_sentence_transformer(model):
        return None
    prompts = read_embedder(model).prompts or {}
    return prompts.get("document", prompts.get("passage")) or None


def _teacher_embeddings(args: argparse.Namespace, config, model, data, work: Path):
    """``data`` with the uncut model's embeddings (cached in DIR.work/teacher-embeddings) and the teacher's cost."""
    from st_prune.model.truncated_llm import encoder_from_llm
    from st_prune.training.self_distill import CACHE_DIR, self_distillation_data
    from st_prune.training.trainer import WORK_WRITER, claim_work_dir, teacher_identity
    from st_prune.util import ownership
    from st_prune.util.distributed import is_main
    from st_prune.util.resources import release_memory

    teacher = encoder_from_llm(args.model, pooling=args.pooling, max_seq_length=model.max_seq_length, dtype=args.dtype)
    # --overwrite starts over: a stale cache is st-prune's own scratch then; otherwise it is refused (one line) before
    # anything is written. The cache's files are recorded as st-prune's, so the clean-up after the export removes them.
    data, cost = self_distillation_data(
        teacher,
        data,
        work / CACHE_DIR,
        identity=teacher_identity(args.model, teacher),
        batch_size=config.batch_size,
        stale="rebuild" if args.overwrite else "refuse",
        progress=is_main(),
        before_write=(lambda: claim_work_dir(work)) if is_main() else None,
    )
    if is_main():
        ownership.record_tree(work, CACHE_DIR, by=WORK_WRITER, digest=False)
        how = "read from the cache" if cost.cached else f"embedded in {cost.seconds:.0f}s"
        print(f"teacher: the uncut model ({teacher[0].num_layers} layers), {cost.texts} texts {how}")
    del teacher
    release_memory()
    return data, {
        "teacher": args.model,
        "teacher_layers": model[0].num_original_layers,
        "distance": config.distill_distance,
        **cost.to_dict(),
    }


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    """Ctrl-C is how long trainings are stopped on purpose: the newest intact checkpoint in DIR.work and the
    command that resumes from it."""
    from st_prune.training.trainer import TrainingConfig, last_intact_checkpoint, work_dir_for

    work = work_dir_for(Path(args.output))
    last = last_intact_checkpoint(work)
    if last is None:
        every = args.save_steps or TrainingConfig.save_steps
        from st_prune.training.self_distill import CACHE_DIR

        # --recover distill: the teacher's embeddings finished so far are kept, and the same command goes on from them
        cached = (
            f"; the teacher's embeddings so far are kept in {work / CACHE_DIR}" if (work / CACHE_DIR).is_dir() else ""
        )
        return Resume(
            f"no checkpoint was saved yet (one every {every} steps, --save-steps){cached}",
            argv,
            action="start again with",
        )
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
    from st_prune.model.truncated_llm import encoder_from_llm
    from st_prune.util.distributed import is_main

    # max_seq_length None: 512 for an LLM (config.sequence_length()'s default), an embedder's own length.
    full = encoder_from_llm(args.model, pooling=args.pooling, max_seq_length=config.max_seq_length, dtype=args.dtype)
    options: dict[str, Any] = {"seed": config.seed, "scale": config.scale, "batch_size": config.batch_size}
    if args.scan_batches is not None:
        options["num_batches"] = args.scan_batches
    if args.scan_batch_size is not None:
        options["batch_size"] = args.scan_batch_size
    result = L3Prune(**options).select(full, data)  # the trainer's datasets and prompts (TrainingData)
    if is_main():
        from st_prune.training.trainer import claim_work_dir
        from st_prune.util import ownership

        claim_work_dir(work)
        fix = "move it away or choose another --output"
        ownership.write_file(work, SCAN_JSON, result.save, by="train", fix=fix)
        ownership.write_file(work, SCAN_PNG, result.plot, by="train", fix=fix)
        print(result.summary())
    return result.prune(full, args.l3prune)
