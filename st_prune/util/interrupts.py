"""Ctrl-C and SIGTERM on any verb: one line saying what is kept and the command that goes on, never a traceback.

Long commands are stopped on purpose all the time, and what the user needs then is whether the work done so far
survived and what to type next. Each verb registers a hook with ``parser.set_defaults(interrupted=HOOK)``,
``HOOK(args, argv) -> Resume``; ``st_prune.cli.main`` catches the interrupt around the verb and prints::

    st-prune VERB: interrupted; KEPT; continue with `st-prune ARGV`

and exits 130 (128 + SIGINT, what shells report for Ctrl-C), or 143 after SIGTERM (128 + SIGTERM), so scripts can
tell a stopped command (resumable) from bad input (2).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

INTERRUPTED = 130
TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``, a scheduler's time limit) raised where the program is, as Ctrl-C is, so
    that it unwinds the same way: staging folders removed, the run folder's lock released, the one line printed."""


@dataclass(frozen=True)
class Resume:
    """What a stopped verb leaves behind and the ``st-prune`` arguments that go on from there."""

    kept: str
    argv: Sequence[str]
    action: str = "continue with"  # "start again with" where nothing is kept to continue from


@contextmanager
def sigterm_raises_terminated() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``Terminated`` in the main thread instead of killing the process.

    Only the first one: the handler puts the default back, so a second SIGTERM (a user or scheduler that insists)
    kills at once. Nothing changes outside the main thread (Python handles signals there only) or where another
    SIGTERM handler was installed (a program that embeds st-prune keeps its own).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def same_command(args: argparse.Namespace, argv: Sequence[str]) -> Resume:
    """The hook of a verb that writes nothing before it ends (or nothing at all): the same command starts again."""
    return Resume("nothing was written", argv, action="start again with")


def report(stop: KeyboardInterrupt, args: argparse.Namespace | None, argv: Sequence[str]) -> int:
    """Print the line for a verb stopped by ``stop`` (rank 0 alone speaks for a torchrun run); the exit status."""
    from st_prune.util import distributed

    status = TERMINATED if isinstance(stop, Terminated) else INTERRUPTED
    if not distributed.is_main():
        return status
    _close_progress_bars()  # so the line starts on its own, not after a half-drawn bar
    hook = getattr(args, "interrupted", same_command)
    resume = hook(args, argv) if args is not None else Resume("nothing was done", argv, action="start again with")
    verb = f"st-prune {args.command}" if args is not None else "st-prune"
    how = "interrupted" if status == INTERRUPTED else "stopped by SIGTERM"
    # The processes of a torchrun run go on under the same launcher, not as a plain command.
    launcher = " (under the same launcher, e.g. torchrun)" if distributed.world_size() > 1 else ""
    print(
        f"{verb}: {how}; {resume.kept}; {resume.action} `{shlex.join(['st-prune', *resume.argv])}`{launcher}",
        file=sys.stderr,
    )
    return status


def _close_progress_bars() -> None:
    tqdm = sys.modules.get("tqdm")  # only when something drew bars: importing tqdm just to close none is wasted
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()
