"""The publish stage: the model folder, card included, pushed to the Hub in one verified commit
(``st_prune.hub.publish.publish_folder``). The marker keys on the repo and a digest of the folder's files, so a changed
folder (e.g. a re-rendered card) is published again and an unchanged one is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def folder_digest(folder: Path) -> str:
    """A short digest of the names, sizes and modification times of the files publish uploads (cheap: no file is
    read); st-prune's record of what it wrote and staging folders are never uploaded, so they do not count."""
    from st_prune.util.ownership import MANIFEST
    from st_prune.util.staging import is_staging_name

    listing = [f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(folder.rglob("*"))
               if p.is_file() and p.name != MANIFEST
               and not any(is_staging_name(part) for part in p.relative_to(folder).parts)]
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]


def publish_variant(folder: Path, repo_id: str, *, private: bool, token: str | None, endpoint: str | None,
                    commit_message: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Publish ``folder`` to ``repo_id``; ``publish_folder`` itself skips a commit that would change nothing."""
    from st_prune.hub.publish import publish_folder

    result = publish_folder(folder, repo_id, private=private, token=token, endpoint=endpoint,
                            commit_message=commit_message)
    log(f"       published {repo_id} ({result.commit_url or 'unchanged'})")
    return {"repo_id": repo_id, "repo_url": result.repo_url, "commit": result.commit_oid, "changed": result.changed}
