"""Publish a SentenceTransformer model folder to the Hugging Face Hub as one atomic commit.

`publish_folder` mirrors a local model folder (weights, configs, tokenizer, README.md card, plots) into a
model repo with the real `huggingface_hub.HfApi` client:

1. Check the folder is a SentenceTransformer model (``modules.json``), the repo id and that a token exists,
   all before any network call.
2. Hash every local file once (sha256 and git blob sha1 in a single read).
3. Read the remote head commit and its file tree (``model_info`` + ``list_repo_tree``), first creating the
   repo with ``create_repo(exist_ok=True)`` if it is not found.
4. Diff by hash, the way the Hub identifies content: a remote LFS file matches when its ``lfs.sha256``
   equals the local sha256; a remote regular file when its ``blob_id`` equals the local git blob sha1.
5. Nothing changed: no commit at all. Otherwise one ``create_commit`` that uploads the new and changed files
   and deletes remote files absent locally (except the Hub-managed ``.gitattributes``), with
   ``parent_commit`` set to the head read in step 3 so a concurrent push is not silently overwritten.
   The Hub applies a commit atomically, so a failure (an LFS upload, the commit call) leaves the repo as it
   was and re-running finishes the job.
6. Re-list the tree at the new commit and check it matches the folder file by file.

The token is resolved by huggingface_hub (``HF_TOKEN``, then ``hf auth login``'s stored token) and is
scrubbed from every error this module raises.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from st_prune.errors import StPruneError

logger = logging.getLogger(__name__)

#: Files the Hub creates in every new repo; kept when the local folder has none (never deleted).
HUB_MANAGED_FILES = frozenset({".gitattributes"})

#: Folders never uploaded: git internals, huggingface_hub's local-dir metadata, Python caches.
SKIPPED_DIRS = frozenset({".git", ".cache", "__pycache__"})

LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN with a write token"
RETRY_HINT = "re-run `st-prune publish` to retry"

_HF_TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9]{8,}")
_BEARER_PATTERN = re.compile(r"(?i)\bbearer\s+\S+")


class PublishError(StPruneError):
    """The Hub refused or failed a publish. The message is one line and never contains the token."""


@dataclass(frozen=True)
class LocalFile:
    """A file of the model folder with the two hashes the Hub reports for stored files."""

    path: str  # POSIX path relative to the folder: the path in the repo
    local_path: Path
    size: int
    sha256: str  # reported as `lfs.sha256` for LFS (and Xet) files
    git_blob_id: str  # git blob sha1, reported as `blob_id` for regular files

    @classmethod
    def hash(cls, folder: Path, local_path: Path) -> LocalFile:
        size = local_path.stat().st_size
        sha256 = hashlib.sha256()
        git_sha1 = hashlib.sha1(b"blob %d\0" % size)
        with open(local_path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                sha256.update(chunk)
                git_sha1.update(chunk)
        path = local_path.relative_to(folder).as_posix()
        return cls(path, local_path, size, sha256.hexdigest(), git_sha1.hexdigest())

    def matches(self, remote: object) -> bool:
        """Whether the remote `RepoFile` has this content (compared with the hash the Hub keeps for it)."""
        lfs = getattr(remote, "lfs", None)
        if lfs is not None:
            return lfs.size == self.size and lfs.sha256 == self.sha256
        return getattr(remote, "size", None) == self.size and getattr(remote, "blob_id", None) == self.git_blob_id


@dataclass(frozen=True)
class ChangePlan:
    """What one publish commit must do so the remote tree mirrors the local folder."""

    upload: tuple[LocalFile, ...]
    delete: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        return not self.upload and not self.delete


@dataclass(frozen=True)
class PublishResult:
    """The outcome of `publish_folder`."""

    repo_id: str
    repo_url: str
    changed: bool  # False: the remote already matched the folder and no commit was made
    commit_oid: str | None  # the new commit, or the existing head when nothing changed
    commit_url: str | None
    pr_url: str | None = None  # set with create_pr=True
    uploaded: tuple[str, ...] = field(default_factory=tuple)
    deleted: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------------------- local checks
def check_model_folder(folder: str | os.PathLike[str]) -> Path:
    """Return ``folder`` as a Path if it is a saved SentenceTransformer model; raise `StPruneError` otherwise."""
    from st_prune.util.model_folder import check_model_folder as check

    return check(folder, fix="pass a folder written by SentenceTransformer.save() or `st-prune prune`")[0]


def check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is a valid ``ORG/NAME`` model repo id; raise `StPruneError` otherwise."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    problem = None
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or "" in repo_id.split("/"):
        problem = "expected ORG/NAME"
    else:
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            problem = "use letters, digits, '-', '_' and '.', at most 96 characters, no '--' or '..'"
    if problem:
        raise StPruneError(f"invalid --repo-id {repo_id!r} ({problem}): e.g. --repo-id my-org/llama-3.2-1b-l3prune-8")
    return repo_id


def resolve_token(token: str | None = None) -> str:
    """``token``, else huggingface_hub's own resolution (``HF_TOKEN``, then the `hf auth login` token)."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise StPruneError(f"no Hugging Face token found: {LOGIN_HINT}")
    return token


def resolve_endpoint(endpoint: str | None = None) -> str:
    """``endpoint``, else ``HF_ENDPOINT`` read now (not at import time), else huggingface.co."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    value = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        source = "endpoint" if endpoint else "HF_ENDPOINT"
        raise StPruneError(
            f"{source}={value!r} is not a URL: set it to the Hub's address (e.g. https://huggingface.co) or unset it"
        )
    return value


def scan_folder(folder: Path) -> dict[str, LocalFile]:
    """Every file under ``folder`` (symlinks followed), hashed, by repo path; left out: `SKIPPED_DIRS`, staging
    folders (a write in progress or killed, never part of the model) and st-prune's record of what it wrote."""
    from st_prune.util.ownership import MANIFEST
    from st_prune.util.staging import is_staging_name

    files: dict[str, LocalFile] = {}
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(name for name in dirs if name not in SKIPPED_DIRS and not is_staging_name(name))
        for name in sorted(names):
            if name == MANIFEST:
                continue
            local_file = LocalFile.hash(folder, Path(root) / name)
            files[local_file.path] = local_file
    return files


def plan_changes(local: Mapping[str, LocalFile], remote: Mapping[str, object]) -> ChangePlan:
    """Files to upload (new or different) and remote paths to delete (absent locally, not Hub-managed)."""
    upload = tuple(file for path, file in local.items() if path not in remote or not file.matches(remote[path]))
    delete = tuple(sorted(path for path in remote if path not in local and path not in HUB_MANAGED_FILES))
    unchanged = tuple(path for path in local if path in remote and local[path].matches(remote[path]))
    return ChangePlan(upload=upload, delete=delete, unchanged=unchanged)


# -------------------------------------------------------------------------------------------- errors
def scrub(text: str, token: str | None) -> str:
    """``text`` without ``token`` or anything shaped like a Hugging Face token or a bearer credential."""
    if token:
        text = text.replace(token, "***")
    return _BEARER_PATTERN.sub("Bearer ***", _HF_TOKEN_PATTERN.sub("hf_***", text))


def _error_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _http_status(error: BaseException) -> int | None:
    for link in _error_chain(error):
        status = getattr(getattr(link, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _summary(error: BaseException) -> str:
    """The first line of each distinct message in the exception chain, joined: short but specific."""
    lines: list[str] = []
    for link in _error_chain(error):
        text = str(link).strip()
        server_message = getattr(link, "server_message", None)
        first = text.splitlines()[0].strip() if text else type(link).__name__
        for line in (first, (server_message or "").strip().replace("\n", "; ")):
            if line and line not in lines:
                lines.append(line)
    summary = ": ".join(lines)
    return summary if len(summary) <= 400 else summary[:397] + "..."


# Transport failures (no HTTP answer), by class name: huggingface_hub's HTTP client is an httpx fork (httpx2).
_UNREACHABLE_ERRORS = {
    "TransportError",
    "NetworkError",
    "TimeoutException",
    "ConnectionError",
    "gaierror",
    "TimeoutError",
}


def _unreachable_endpoint(error: BaseException) -> str | None:
    """The Hub address a request could not reach (connection refused, unknown host, timeout), else None."""
    for link in _error_chain(error):
        if not {cls.__name__ for cls in type(link).__mro__} & _UNREACHABLE_ERRORS:
            continue
        try:
            url = link.request.url  # httpx errors carry their request; raises when they do not
            return f"{url.scheme}://{url.netloc.decode() if isinstance(url.netloc, bytes) else url.netloc}"
        except Exception:  # noqa: BLE001 - no request attached: name the configured endpoint
            return os.environ.get("HF_ENDPOINT") or "huggingface.co"
    return None


def describe_hub_error(error: BaseException, repo_id: str, token: str | None, action: str, hint: str) -> str:
    """One line for a failure of ``action`` on ``repo_id``: auth problems get the login fix, others ``hint``."""
    status = _http_status(error)
    unreachable = _unreachable_endpoint(error) if status is None else None
    if unreachable is not None:
        # No answer at all: neither the token nor a retry in a second is the fix, the address or network is.
        message = (
            f"{action} {repo_id} failed: the Hub at {unreachable} cannot be reached ({_summary(error)}); "
            "check the network, or HF_ENDPOINT if it points at another Hub"
        )
    elif status == 401:
        message = f"the Hub rejected the token (HTTP 401) for {repo_id}: {LOGIN_HINT}"
    elif status == 403:
        message = f"no write access to {repo_id} (HTTP 403): {LOGIN_HINT}"
    elif status == 404:
        message = f"{repo_id} is not found or not visible with this token (HTTP 404): check --repo-id, or {LOGIN_HINT}"
    elif status == 412:
        message = f"{repo_id} changed on the Hub while publishing (HTTP 412): {RETRY_HINT}"
    else:
        message = f"{action} {repo_id} failed ({_summary(error)}): {hint}"
    return " ".join(scrub(message, token).split())


@contextmanager
def _hub_errors(repo_id: str, token: str, action: str, hint: str = RETRY_HINT) -> Iterator[None]:
    """Turn any failure of the Hub calls inside into a one-line, token-free `PublishError`."""
    try:
        yield
    except StPruneError:
        raise
    except Exception as error:
        # `from None`: the chained originals could carry request details; the summary keeps what matters.
        raise PublishError(describe_hub_error(error, repo_id, token, action, hint)) from None


# ------------------------------------------------------------------------------------------- publish
def remote_snapshot(api, repo_id: str, revision: str) -> tuple[str | None, bool | None, dict[str, object]]:
    """``(commit oid, private, {path: RepoFile})`` of ``revision``; the tree is listed at the resolved oid."""
    from huggingface_hub.hf_api import RepoFile

    info = api.model_info(repo_id, revision=revision)
    if info.sha is None:  # a repo without any commit
        return None, info.private, {}
    tree = api.list_repo_tree(repo_id, recursive=True, revision=info.sha)
    return info.sha, info.private, {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}


def ensure_repo_snapshot(api, repo_id: str, private: bool) -> tuple[str | None, bool | None, dict[str, object]]:
    """`remote_snapshot` of ``main``, creating the repo first (``create_repo(exist_ok=True)``) if not found.

    Reading first rather than always calling ``create_repo`` saves a request on re-publish and avoids a
    huggingface_hub 2.4 bug: ``create_repo(exist_ok=True)`` with a token that may not create the repo
    raises ``HfUriError`` for an existing repo on any endpoint other than huggingface.co.
    """
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return remote_snapshot(api, repo_id, "main")
    except RepositoryNotFoundError:
        logger.info("Creating %s%s", repo_id, " (private)" if private else "")
        api.create_repo(repo_id, private=True if private else None, exist_ok=True)
        return remote_snapshot(api, repo_id, "main")


def verify_remote(local: Mapping[str, LocalFile], remote: Mapping[str, object], where: str) -> None:
    """Raise `PublishError` unless ``remote`` holds exactly the ``local`` files (plus Hub-managed ones)."""
    missing = sorted(path for path in local if path not in remote)
    different = sorted(path for path in local if path in remote and not local[path].matches(remote[path]))
    unexpected = sorted(path for path in remote if path not in local and path not in HUB_MANAGED_FILES)
    if missing or different or unexpected:
        problems = [
            f"{label}: {', '.join(paths[:5])}{' ...' if len(paths) > 5 else ''}"
            for label, paths in (("missing", missing), ("different", different), ("unexpected", unexpected))
            if paths
        ]
        details = "; ".join(problems)
        raise PublishError(f"{where} does not match the local folder after upload ({details}): {RETRY_HINT}")


def _commit_description(plan: ChangePlan) -> str:
    lines = [f"Published with st-prune: {len(plan.upload)} file(s) uploaded, {len(plan.delete)} deleted."]
    lines += [f"- upload {file.path}" for file in plan.upload[:50]]
    lines += [f"- delete {path}" for path in plan.delete[:50]]
    return "\n".join(lines)


def publish_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    create_pr: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> PublishResult:
    """Mirror the SentenceTransformer model ``folder`` into the model repo ``repo_id`` in one atomic commit.

    Args:
        folder: a saved SentenceTransformer model (has ``modules.json``).
        repo_id: ``ORG/NAME``; the repo is created if needed (``private`` applies to a new repo; publishing a
            ``private`` model into an existing public repo is refused).
        create_pr: open a pull request with the commit instead of pushing to ``main``.
        token: a write token; defaults to huggingface_hub's resolution (``HF_TOKEN``, `hf auth login`).
        endpoint: the Hub URL; defaults to ``HF_ENDPOINT``, then https://huggingface.co.
        commit_message: the commit title; defaults to "Publish <folder name> with st-prune".

    Returns a `PublishResult`; ``changed`` is False (and no commit is made) when the repo already holds
    exactly these files. Raises `StPruneError` for bad input (before any network call) and `PublishError`
    (a subclass) when the Hub refuses or fails; the repo is then unchanged and re-running is safe.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    path = check_model_folder(folder)
    check_repo_id(repo_id)
    token = resolve_token(token)
    endpoint = resolve_endpoint(endpoint)

    logger.info("Hashing the files of %s", path)
    local = scan_folder(path)
    api = HfApi(endpoint=endpoint, token=token, library_name="st-prune")

    repo_url = f"{endpoint}/{repo_id}"
    with _hub_errors(repo_id, token, "reading"):
        head, remote_private, remote = ensure_repo_snapshot(api, repo_id, private)
    if private and remote_private is False:
        raise StPruneError(
            f"{repo_id} already exists and is public, so --private cannot be honoured: make it private in the "
            "repo settings on the Hub first, or drop --private"
        )

    plan = plan_changes(local, remote)
    if plan.is_empty:
        commit_url = f"{repo_url}/commit/{head}" if head else None
        logger.info("%s already matches %s (%d files): nothing to publish", repo_id, path, len(local))
        return PublishResult(repo_id, repo_url, changed=False, commit_oid=head, commit_url=commit_url)

    logger.info(
        "Publishing %s to %s: %d file(s) to upload, %d to delete, %d unchanged",
        path, repo_id, len(plan.upload), len(plan.delete), len(plan.unchanged),
    )  # fmt: skip
    operations = [CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=file.local_path) for file in plan.upload]
    operations += [CommitOperationDelete(path_in_repo=remote_path) for remote_path in plan.delete]
    with _hub_errors(repo_id, token, "uploading to", f"nothing was committed; {RETRY_HINT}"):
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Publish {path.name} with st-prune",
            commit_description=_commit_description(plan),
            create_pr=create_pr,
            parent_commit=head,
        )

    where = f"{repo_id}@{commit.oid[:12]}"
    with _hub_errors(repo_id, token, "verifying", f"the commit {commit.commit_url} exists; {RETRY_HINT}"):
        _, _, published = remote_snapshot(api, repo_id, commit.oid)
    verify_remote(local, published, where)
    logger.info("Verified %s: %d files match %s", where, len(local), path)
    return PublishResult(
        repo_id,
        repo_url,
        changed=True,
        commit_oid=commit.oid,
        commit_url=commit.commit_url,
        pr_url=commit.pr_url,
        uploaded=tuple(file.path for file in plan.upload),
        deleted=plan.delete,
    )
