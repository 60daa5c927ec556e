"""`st-prune trim MODEL_DIR --corpus FILE [--vocab-size N | --min-frequency F] --output DIR`: exact vocabulary trim."""

from __future__ import annotations

import argparse
import json

from st_prune.util.interrupts import Resume


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trim",
        help="drop the embedding rows of tokens a corpus never uses (exact for texts of kept tokens)",
        description="Trim a saved model's vocabulary to the tokens a corpus uses, keeping special tokens, the byte "
        "alphabet and every merge intermediate, so texts made of kept tokens embed exactly as before and any other "
        "text still tokenizes. Byte-level BPE (Llama-3, Qwen, SmolLM2) and BPE with byte fallback (Gemma, Mistral).",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a saved model folder (st-prune prune/train output)")
    parser.add_argument(
        "--corpus",
        required=True,
        metavar="FILE",
        help="texts the model will embed: one text a line, or JSONL/CSV/Parquet (all text columns)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--vocab-size",
        type=int,
        metavar="N",
        help="keep at most N tokens: the most frequent corpus tokens with their merge intermediates",
    )
    size.add_argument(
        "--min-frequency",
        type=int,
        metavar="F",
        help="keep corpus tokens used at least F times (default: every token the corpus uses)",
    )
    parser.add_argument(
        "--held-out",
        metavar="FILE",
        help="texts for the 'tokenization changed' figure (default: 10%% of the corpus, measured "
        "against a second vocabulary built without them; the shipped one counts every corpus text)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write (new or empty)")
    parser.set_defaults(func=run, interrupted=interrupted)


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    # trim_vocabulary assembles the folder beside --output and renames it into place whole, at the very end.
    return Resume(f"nothing was written to {args.output}", argv, action="start again with")


def run(args: argparse.Namespace) -> int:
    from st_prune.trim.vocab import REPORT_FILE, check_output_folder, read_corpus, trim_vocabulary

    check_output_folder(args.output)  # before reading the corpus
    texts = read_corpus(args.corpus)
    held_out = read_corpus(args.held_out, "--held-out") if args.held_out else None
    report = trim_vocabulary(
        args.model_dir,
        texts,
        args.output,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        held_out=held_out,
    )
    print(json.dumps(report.to_dict(), indent=2))
    print(f"{report.summary()}\n-> {args.output} (report in {REPORT_FILE}, card section in README.md)")
    return 0
