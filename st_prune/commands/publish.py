"""`st-prune publish DIR --repo-id ORG/NAME`: upload a model folder to the Hugging Face Hub in one commit."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from st_prune.util.interrupts import Resume

DESCRIPTION = """\
Mirror a saved SentenceTransformer model folder (weights, configs, tokenizer, README.md card, plots) into a
Hugging Face model repo as one atomic commit: only new or changed files are uploaded, remote files missing
from the folder are deleted, and nothing is committed when the repo already matches. The upload is checked
file by file afterwards. The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT selects the Hub.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="upload a model folder to the Hugging Face Hub as one atomic commit",
        description=DESCRIPTION,
    )
    parser.add_argument("folder", type=Path, metavar="DIR", help="a saved SentenceTransformer model folder")
    parser.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="the model repo to publish to")
    parser.add_argument("--private", action="store_true", help="create the repo as private (refused if it is public)")
    parser.add_argument(
        "--create-pr", action="store_true", help="open a pull request with the commit instead of pushing to main"
    )
    parser.add_argument("-m", "--message", dest="commit_message", help="commit title (default: 'Publish DIR ...')")
    parser.set_defaults(func=run, interrupted=interrupted)


def interrupted(args: argparse.Namespace, argv: list[str]) -> Resume:
    # One commit: the Hub has all of it or none of it, and the same command uploads only what is not there yet.
    return Resume(f"{args.repo_id} holds either the whole commit or none of it", argv)


def run(args: argparse.Namespace) -> int:
    from st_prune.hub.publish import publish_folder

    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per HTTP request otherwise
    result = publish_folder(
        args.folder,
        args.repo_id,
        private=args.private,
        create_pr=args.create_pr,
        commit_message=args.commit_message,
    )
    if not result.changed:
        print(f"Nothing to publish, {result.repo_id} is up to date: {result.commit_url}")
    elif result.pr_url:
        print(f"Opened pull request on {result.repo_id}: {result.pr_url}")
        print(f"Commit: {result.commit_url}")
    else:
        counts = f"{len(result.uploaded)} uploaded, {len(result.deleted)} deleted"
        print(f"Published {args.folder} to {result.repo_url} ({counts})")
        print(f"Commit: {result.commit_url}")
    return 0
