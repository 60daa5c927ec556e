"""`st-prune` command line: one sub-command per verb, each defined in `st_prune.commands.<verb>`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from st_prune.errors import StPruneError, out_of_room
from st_prune.util.interrupts import report as report_interrupt
from st_prune.util.interrupts import sigterm_raises_terminated
from st_prune.util.optional import install_hint

# Each module exposes `register(subparsers)`, which adds its parser and sets `func(args) -> int` and
# `interrupted(args, argv) -> st_prune.util.interrupts.Resume` (what Ctrl-C leaves behind, the command that goes on).
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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = None
    # Ctrl-C (and SIGTERM) anywhere, from the parser's imports to the verb's last write: one line naming what is
    # kept and the command that goes on (st_prune.util.interrupts), not a traceback.
    with sigterm_raises_terminated():
        try:
            args = build_parser().parse_args(argv)
            return _run(args)
        except KeyboardInterrupt as stop:
            return report_interrupt(stop, args, argv)


def _run(args: argparse.Namespace) -> int:
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
        print(
            f"st-prune {args.command}: error: the {missing} package is missing: run `{install_hint(missing)}`",
            file=sys.stderr,
        )
        return 2
    except Exception as error:
        # A full disk, a quota or a file-size limit: one line, not a traceback. The writers themselves drop what
        # they had half-written (staging folders, temporary files).
        room = out_of_room(error)
        if room is None:
            raise
        print(f"st-prune {args.command}: error: {_no_room_message(args, error, *room)}", file=sys.stderr)
        return 2


def _no_room_message(args: argparse.Namespace, error: BaseException, what: str, fix: str) -> str:
    # The file the write failed on (a copy's destination first), unless it lay in a staging folder, which is gone now.
    target = getattr(error, "filename2", None) or getattr(error, "filename", None)
    if target is None or ".st-prune-staging-" in str(target):
        target = getattr(args, "output", None) or getattr(args, "model", None) or "the output"
    other = ", or choose another --output" if "output" in vars(args) else ""
    return f"{what} while writing {target}; {fix}{other}"


if __name__ == "__main__":
    sys.exit(main())
