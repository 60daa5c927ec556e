"""The publish stage: the model folder, card included, pushed to the Hub in one verified commit
(``st_prune.hub.publish.publish_folder``). The marker keys on the repo and a digest of the folder's files, so a changed
folder (e.g. a re-rendered card) is published again and an unchanged one is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from st_prune.pipeline.stage import Stage


def folder_digest(folder: Path) -> str:
    """A short digest of the names, sizes and modification times of the files publish uploads (cheap: no file is
    read); st-prune's record of what it wrote and staging folders are never uploaded, so they do not count."""
    from st_prune.util.ownership import MANIFEST
    from st_prune.util.staging import is_staging_name

    listing = [
        f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not any(is_staging_name(part) for part in p.relative_to(folder).parts)
    ]
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]


def publish_variant(
    folder: Path,
    repo_id: str,
    *,
    private: bool,
    token: str | None,
    endpoint: str | None,
    commit_message: str,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Publish ``folder`` to ``repo_id``; ``publish_folder`` itself skips a commit that would change nothing."""
    from st_prune.hub.publish import publish_folder

    result = publish_folder(
        folder, repo_id, private=private, token=token, endpoint=endpoint, commit_message=commit_message
    )
    log(f"       published {repo_id} ({result.commit_url or 'unchanged'})")
    return {"repo_id": repo_id, "repo_url": result.repo_url, "commit": result.commit_oid, "changed": result.changed}


class PublishStage(Stage):
    """Not a function of the recipe alone: its key is the repo and the folder's digest, known when it runs."""

    name = "publish"

    def applies(self, ctx, variant) -> bool:
        return ctx.org is not None

    def describe(self, ctx, variant, extra: str = "") -> str:
        return f"{super().describe(ctx, variant, extra)} -> {ctx.repo_id(variant)}"

    def check_inputs(self, ctx, variant) -> None:
        from st_prune.errors import StPruneError

        card = ctx.folder.marker_data("card", variant.name)
        if card is None or (card.get("key") or [None])[0] != ctx.repo_id(variant):
            raise StPruneError(f"the card of {variant.name} was written for another repo: run the card stage first")

    def marker_key(self, ctx, variant, layers) -> Any:
        # Re-publish when the folder changed (e.g. a re-rendered card); publish_folder itself skips no-op commits.
        return [ctx.repo_id(variant), folder_digest(ctx.zoo_dir(variant))]

    def run(self, ctx, variant) -> dict[str, Any]:
        folder = ctx.zoo_dir(variant)
        return publish_variant(
            folder,
            ctx.repo_id(variant),
            private=ctx.recipe.publish.private,
            token=ctx.token,
            endpoint=ctx.endpoint,
            commit_message=f"Publish {folder.name} ({ctx.recipe.name} recipe) with st-prune",
            log=ctx.log,
        )


PUBLISH = PublishStage()
