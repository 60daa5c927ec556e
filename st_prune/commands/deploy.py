"""`st-prune deploy MODEL_DIR [--onnx] [--openvino] [--quantize int8]`: backend files for CPU inference."""

from __future__ import annotations

import argparse
from pathlib import Path

from st_prune.errors import StPruneError
from st_prune.util.interrupts import Resume


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="add ONNX and OpenVINO files to a model folder for sentence-transformers' CPU backends",
        description="Export the model folder's transformer to onnx/model.onnx and openvino/openvino_model.xml "
        "(inputs input_ids and attention_mask only, position ids computed inside), check each file against the "
        "torch model, and write deploy.json with what shipped. Without --onnx/--openvino, both.",
    )
    parser.add_argument("model", metavar="MODEL_DIR", help="a folder written by st-prune prune/train")
    parser.add_argument("--onnx", action="store_true", help="write onnx/model.onnx")
    parser.add_argument("--openvino", action="store_true", help="write openvino/openvino_model.xml/.bin")
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        action="append",
        default=[],
        help="also write int8 files (ONNX dynamic, OpenVINO weight-only); shipped only if cosine >= 0.99",
    )
    parser.add_argument(
        "--texts", metavar="FILE", help="check the files on these texts (one per line) instead of built-in samples"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing onnx/ or openvino/ folders")
    parser.set_defaults(func=run, interrupted=interrupted)


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    # st_prune.deploy.deploy builds every file in a staging folder and moves them in only once all of them are checked.
    return Resume(f"{args.model} is as it was", argv, action="start again with")


def run(args: argparse.Namespace) -> int:
    from st_prune.deploy.deploy import BACKENDS, deploy

    backends = [name for name in BACKENDS if getattr(args, name)] or list(BACKENDS)
    texts = None
    if args.texts:
        try:
            lines = Path(args.texts).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise StPruneError(
                f"cannot read --texts {args.texts} ({type(error).__name__}); give a UTF-8 text file, one text a line"
            ) from None
        texts = [line.strip() for line in lines if line.strip()]
    report = deploy(args.model, backends=backends, quantize=args.quantize, overwrite=args.overwrite, texts=texts)
    for name, entry in report["files"].items():
        if entry["shipped"]:
            print(
                f"{name}: {entry['precision']}, max |diff| to torch {entry['max_abs_diff_to_torch']:.1e}, "
                f"min cosine {entry['cosine_to_torch_min']:.4f}  ->  {entry['load']}"
            )
        else:
            print(f"{name}: not shipped: {entry['reason']}")
    print(f"report: {Path(args.model) / 'deploy.json'}")
    return 0
