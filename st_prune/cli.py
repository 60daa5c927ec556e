"""`st-prune` command line: one sub-command per verb, each defined in `st_prune.commands.<verb>`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from st_prune.errors import StPruneError
from st_prune.util.optional import install_hint

# Each module exposes `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMAND_MODULES = (
    "st_prune.commands.prune",
    "st_prune.commands.publish",
    "st_prune.commands.eval",
    "st_prune.commands.submit",
    "st_prune.commands.run",
    "st_prune.commands.recipes",
    "st_prune.commands.scan",
    "st_prune.commands.train",
    "st_prune.commands.trim",
    "st_prune.commands.deploy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="st-prune",
        description="Prune decoder LLMs into sentence-transformers encoders (L3Prune, arXiv 2410.14578).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # st-prune's own progress lines, without every library's INFO chatter (device picks, dataset unloads...).
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("st_prune").setLevel(logging.INFO)
    try:
        return int(args.func(args) or 0)
    except (StPruneError, FileNotFoundError, FileExistsError) as error:
        print(f"st-prune {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        # A dependency removed from (or never installed into) this environment: name the command that fixes it.
        missing = (error.name or "a package").split(".")[0]
        print(f"st-prune {args.command}: error: the {missing} package is missing: run `{install_hint(missing)}`",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
