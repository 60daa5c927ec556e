"""`st-prune prune MODEL (--layers K | --fraction P) [--mlp-keep F --data FILE] --output DIR`: cut an LLM (or a trained
sentence-transformers embedder) and save a ready encoder."""

from __future__ import annotations

import argparse

from st_prune.errors import StPruneError
from st_prune.model.dtype_names import DTYPE_CHOICES
from st_prune.paper import POOLING_MODES
from st_prune.util.interrupts import Resume


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="keep the first K decoder layers of an LLM and save it as a sentence-transformers model",
        description="Cut a decoder LLM to its first K layers (no training) and save a folder that loads with "
        "plain SentenceTransformer(path).",
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="Hub id, local folder, or .gguf file of a decoder LLM; or a sentence-transformers embedder over one "
        "(its pooling, Dense/Normalize modules, prompts and tokenizer are kept)",
    )
    depth = parser.add_mutually_exclusive_group()
    depth.add_argument("--layers", type=int, metavar="K", help="number of decoder layers to keep (1..L)")
    depth.add_argument(
        "--fraction", type=float, metavar="P", help="share of layers to drop, 0 <= P < 1; keeps int(L * (1 - P))"
    )
    parser.add_argument(
        "--mlp-keep",
        type=float,
        default=1.0,
        metavar="F",
        help="share of MLP channels every kept layer keeps, 0 < F <= 1 (default 1); ranked by their activations on "
        "--data",
    )
    parser.add_argument("--data", metavar="FILE", help="training data the MLP channels are ranked on (with --mlp-keep)")
    parser.add_argument(
        "--pooling",
        choices=sorted(POOLING_MODES),
        help="pooling of an LLM's encoder (default weighted_mean); an embedder keeps its own",
    )
    parser.add_argument(
        "--max-seq-length", type=int, metavar="N", help="tokens per text (default 512; an embedder keeps its own)"
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="auto",
        help="dtype the weights load and are saved in (default auto: the checkpoint's own)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write (must be empty or absent)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    parser.set_defaults(func=run, interrupted=interrupted)


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    # export_model assembles the folder beside --output and renames it into place whole, at the very end.
    return Resume(f"nothing was written to {args.output}", argv, action="start again with")


def run(args: argparse.Namespace) -> int:
    if (args.layers is None) == (args.fraction is None):
        raise StPruneError("give exactly one of --layers K or --fraction P")
    if args.max_seq_length is not None and args.max_seq_length < 1:
        raise StPruneError(f"--max-seq-length must be a positive number of tokens, got {args.max_seq_length}")
    # Imported here so that `st-prune --help` does not pay for torch and sentence-transformers.
    from st_prune.model.export import export_model, prepare_output_dir
    from st_prune.model.width import check_mlp_keep

    check_mlp_keep(args.mlp_keep)
    if args.mlp_keep < 1 and not args.data:
        raise StPruneError("--mlp-keep ranks MLP channels by their activations on training texts; give --data FILE")

    # Fail on the destination before minutes of loading.
    prepare_output_dir(args.output, args.overwrite)
    from st_prune.util.writable import check_writable_folder

    check_writable_folder(args.output)
    from st_prune.model.dtypes import check_load_dtype

    check_load_dtype(args.model, args.dtype, training=False, fix="pass --dtype float32")
    from st_prune.l3prune.shrink import shrink

    model, record = shrink(
        args.model,
        layers=args.layers,
        fraction=args.fraction,
        mlp_keep=args.mlp_keep,
        data=args.data if args.mlp_keep < 1 else None,
        pooling=args.pooling,
        max_seq_length=args.max_seq_length,
        dtype=args.dtype,
    )
    module = model[0]
    output = export_model(model, args.output, overwrite=args.overwrite)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    from st_prune.model.dtypes import saved_weights

    weights = saved_weights(output)
    print(
        f"kept {module.num_layers}/{module.num_original_layers} layers, {parameters / 1e6:.1f}M parameters "
        f"({weights['dtype']}, {weights['bytes'] / 1024**2:,.1f} MB), "
        f"embedding dimension {model.get_embedding_dimension()}"
        + (
            f", MLP width {record['intermediate_size']}/{record['original_intermediate_size']}"
            if record["mlp_keep"] < 1
            else ""
        )
        + f" -> {output}"
    )
    return 0
