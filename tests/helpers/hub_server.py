"""A fake Hugging Face Hub for tests, driven by the real `huggingface_hub` client.

It speaks the part of the Hub HTTP API that `HfApi.create_repo`, `create_commit` (preupload, LFS batch +
basic transfer, NDJSON commit), `model_info`, `list_repo_tree`, `get_paths_info`, `list_repo_refs`,
`list_repo_commits`, `whoami` and `snapshot_download` / `hf_hub_download` use, with the same paths,
payloads, headers and error codes (``X-Error-Code`` / ``X-Error-Message``) as huggingface.co::

    with FakeHub() as hub:
        api = HfApi(endpoint=hub.endpoint, token=FakeHub.WRITE_TOKEN)
        api.create_repo("org/model")
        hub.fail_next("commit", status=500)   # the next commit request fails and changes nothing
        hub.files("org/model")               # {path: bytes} at the head of main

Repos live in memory. Each repo is a chain of immutable commits (a path -> file snapshot each) plus refs
(``main`` and ``refs/pr/N``), so a commit is atomic exactly as on the Hub: a failing request leaves refs
and history untouched. Files are stored the way the Hub stores them: "regular" files as git blobs, large
or binary files (or files matching the repo's ``.gitattributes`` LFS patterns) as LFS objects that must be
uploaded through the LFS batch API before the commit references them.

Tokens are checked on every request: each valid token has a role, ``"read"`` or ``"write"``; writes with a
read token get a 403, unknown tokens a 401 (``Invalid credentials in Authorization header``). LFS upload
URLs are "pre-signed" (they carry a one-time ticket and no Authorization header, like S3 URLs).

While a `FakeHub` runs, the client's Xet upload path is switched off (``huggingface_hub.constants.
HF_HUB_DISABLE_XET``) because this server does not implement the Xet CAS protocol; the client then uses
the LFS basic transfer, which the Hub still serves.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import secrets
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

READ = "read"
WRITE = "write"

#: Failure points that `FakeHub.fail_next` can trigger.
FAILURE_POINTS = ("create_repo", "preupload", "lfs_batch", "lfs_upload", "commit", "tree", "resolve")

#: Patterns of the ``.gitattributes`` the Hub writes in the initial commit of a new model repo (abridged).
DEFAULT_LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle",
    "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz",
    "*.zip", "*.zst", "*tfevents*",
)  # fmt: skip
DEFAULT_GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in DEFAULT_LFS_PATTERNS)

#: Files up to this size that are text and match no LFS pattern are stored as regular git blobs.
DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024


def git_blob_id(data: bytes) -> str:
    """The git blob sha1 of ``data``: what the Hub reports as a file's ``oid`` / ``blob_id``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file stored in git in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class StoredFile:
    """A file of a commit, as the Hub stores it: a regular blob (``content``) or an LFS pointer."""

    size: int
    blob_id: str
    content: bytes | None = None  # regular files only
    lfs_sha256: str | None = None  # LFS files only (content lives in the repo's LFS object store)
    lfs_pointer_size: int | None = None

    @classmethod
    def regular(cls, content: bytes) -> StoredFile:
        return cls(size=len(content), blob_id=git_blob_id(content), content=content)

    @classmethod
    def lfs(cls, sha256: str, size: int) -> StoredFile:
        pointer = lfs_pointer(sha256, size)
        return cls(size=size, blob_id=git_blob_id(pointer), lfs_sha256=sha256, lfs_pointer_size=len(pointer))

    @property
    def is_lfs(self) -> bool:
        return self.lfs_sha256 is not None

    @property
    def etag(self) -> str:
        """What `/resolve` reports as ETag: the sha256 for LFS files, the git blob id otherwise."""
        return self.lfs_sha256 or self.blob_id


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: Mapping[str, StoredFile]


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_at: str
    refs: dict[str, str] = field(default_factory=dict)  # "main" / "refs/pr/N" -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content
    pull_requests: int = 0

    def resolve(self, revision: str) -> Commit | None:
        """A branch or PR ref, a full commit oid or an unambiguous prefix of one (7+ characters)."""
        oid = self.refs.get(revision) or self.refs.get(revision.removeprefix("refs/heads/"))
        if oid is None and re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [candidate for candidate in self.commits if candidate.startswith(revision)]
            oid = matches[0] if len(matches) == 1 else None
        return self.commits.get(oid) if oid else None

    def history(self, commit: Commit) -> list[Commit]:
        """``commit`` and its ancestors, newest first."""
        chain = [commit]
        while chain[-1].parent is not None:
            chain.append(self.commits[chain[-1].parent])
        return chain


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    status: int
    authorized: bool  # whether an Authorization header was sent


class HubError(Exception):
    """An error response, formatted like the Hub's (JSON ``{"error": ...}`` and ``X-Error-*`` headers)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        extra: dict | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code  # X-Error-Code: what the client maps to RepositoryNotFoundError, EntryNotFoundError, ...
        self.extra = extra or {}  # more JSON fields (e.g. "url" in the 409 of repo creation)
        self.headers = dict(headers or {})


def _repo_not_found(repo_id: str) -> HubError:
    return HubError(404, f"Repository Not Found: {repo_id}", code="RepoNotFound")


class FakeHub:
    """A threaded in-memory Hub on ``127.0.0.1``; use as a context manager and point clients at `endpoint`."""

    WRITE_TOKEN = "hf_fakehub_write_0123456789abcdef"
    READ_TOKEN = "hf_fakehub_read_0123456789abcdef"

    def __init__(
        self,
        tokens: Mapping[str, str] | None = None,
        *,
        user: str = "fake-user",
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        disable_client_xet: bool = True,
    ):
        """
        Args:
            tokens: valid tokens and their role (``"read"`` or ``"write"``); defaults to `WRITE_TOKEN` and
                `READ_TOKEN`.
            user: the user name `whoami` reports and that owns repos created without a namespace.
            lfs_threshold: files at least this large are stored with LFS even if they are text.
            disable_client_xet: switch off the client's Xet upload path while running (see module docs).
        """
        self.tokens = dict(tokens) if tokens is not None else {self.WRITE_TOKEN: WRITE, self.READ_TOKEN: READ}
        unknown_roles = set(self.tokens.values()) - {READ, WRITE}
        if unknown_roles:
            raise ValueError(f"token roles must be 'read' or 'write', got {sorted(unknown_roles)}")
        self.user = user
        self.lfs_threshold = lfs_threshold
        self.disable_client_xet = disable_client_xet
        self.repos: dict[str, Repo] = {}
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._failures: dict[str, list[int]] = {}  # failure point -> statuses still to return
        self._tamper: Callable[[dict[str, StoredFile]], None] | None = None
        self._upload_tickets: dict[str, tuple[str, str, int]] = {}  # ticket -> (repo_id, sha256, size)
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._saved_xet_flag: bool | None = None

    # ----------------------------------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not running: use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="FakeHub", daemon=True)
        self._thread.start()
        if self.disable_client_xet:
            from huggingface_hub import constants

            self._saved_xet_flag = constants.HF_HUB_DISABLE_XET
            constants.HF_HUB_DISABLE_XET = True
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        # Close kept-alive connections so no pooled client connection can reach this (stopped) hub later.
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server = None
        if self._saved_xet_flag is not None:
            from huggingface_hub import constants

            constants.HF_HUB_DISABLE_XET = self._saved_xet_flag
            self._saved_xet_flag = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- test controls
    def fail_next(self, point: str, *, status: int = 500, times: int = 1) -> None:
        """Make the next ``times`` requests at ``point`` (one of `FAILURE_POINTS`) answer ``status``.

        A failed request changes nothing (a failed commit creates no commit, a failed LFS upload stores
        nothing). Note that the client retries LFS uploads, preupload and LFS batch calls on 5xx (up to 5
        retries with backoff), but not commits.
        """
        if point not in FAILURE_POINTS:
            raise ValueError(f"unknown failure point {point!r}; expected one of {FAILURE_POINTS}")
        with self._lock:
            self._failures.setdefault(point, []).extend([status] * times)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def tamper_next_commit(self, tamper: Callable[[dict[str, StoredFile]], None]) -> None:
        """Let ``tamper`` edit the file table of the next commit before it is stored (a misbehaving Hub)."""
        with self._lock:
            self._tamper = tamper

    def create_repo(self, repo_id: str, *, private: bool = False) -> Repo:
        """Create a repo directly (without HTTP), with the Hub's initial ``.gitattributes`` commit."""
        with self._lock:
            if repo_id in self.repos:
                raise ValueError(f"{repo_id} exists")
            repo = Repo(repo_id=repo_id, private=private, created_at=_now())
            files = {".gitattributes": StoredFile.regular(DEFAULT_GITATTRIBUTES.encode())}
            self._add_commit(repo, "main", parent=None, files=files, title="initial commit", message="")
            self.repos[repo_id] = repo
            return repo

    # ------------------------------------------------------------------------------------ test inspection
    def repo(self, repo_id: str) -> Repo:
        with self._lock:
            return self.repos[repo_id]

    def head(self, repo_id: str, revision: str = "main") -> str:
        """The commit oid ``revision`` points to."""
        with self._lock:
            commit = self.repos[repo_id].resolve(revision)
            if commit is None:
                raise KeyError(f"{repo_id} has no revision {revision!r}")
            return commit.oid

    def commits(self, repo_id: str, revision: str = "main") -> list[Commit]:
        """The history of ``revision``, newest first."""
        with self._lock:
            repo = self.repos[repo_id]
            commit = repo.resolve(revision)
            return repo.history(commit) if commit else []

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The full content of every file at ``revision`` (LFS files resolved from the object store)."""
        with self._lock:
            repo = self.repos[repo_id]
            commit = repo.resolve(revision)
            if commit is None:
                raise KeyError(f"{repo_id} has no revision {revision!r}")
            return {path: self._content(repo, stored) for path, stored in commit.files.items()}

    def stored(self, repo_id: str, revision: str = "main") -> dict[str, StoredFile]:
        """How each file at ``revision`` is stored (regular blob or LFS pointer)."""
        with self._lock:
            commit = self.repos[repo_id].resolve(revision)
            if commit is None:
                raise KeyError(f"{repo_id} has no revision {revision!r}")
            return dict(commit.files)

    def requests_to(self, path_fragment: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                request
                for request in self.requests
                if path_fragment in request.path and (method is None or request.method == method)
            ]

    # --------------------------------------------------------------------------------------- internals
    def _take_failure(self, point: str) -> None:
        with self._lock:
            pending = self._failures.get(point)
            status = pending.pop(0) if pending else None
        if status is not None:
            raise HubError(status, f"Internal Error - fake Hub failure injected at {point!r}")

    def _content(self, repo: Repo, stored: StoredFile) -> bytes:
        if stored.content is not None:
            return stored.content
        return repo.lfs_objects[stored.lfs_sha256]  # type: ignore[index]

    def _add_commit(
        self, repo: Repo, ref: str, *, parent: str | None, files: dict[str, StoredFile], title: str, message: str
    ) -> Commit:
        digest = hashlib.sha1()
        digest.update(json.dumps([parent, title, message, sorted((p, f.blob_id) for p, f in files.items())]).encode())
        digest.update(secrets.token_bytes(8))  # two identical commits still get distinct oids, as in git
        commit = Commit(oid=digest.hexdigest(), parent=parent, title=title, message=message, date=_now(), files=files)
        repo.commits[commit.oid] = commit
        repo.refs[ref] = commit.oid
        return commit

    def _is_lfs(self, commit: Commit | None, path: str, size: int, sample: bytes) -> bool:
        """How the Hub picks the upload mode: ``.gitattributes`` LFS patterns, binary content, or size."""
        if size == 0:
            return False
        if size >= self.lfs_threshold or b"\0" in sample:
            return True
        patterns = DEFAULT_LFS_PATTERNS
        gitattributes = commit.files.get(".gitattributes") if commit else None
        if gitattributes is not None and gitattributes.content is not None:
            patterns = tuple(
                line.split()[0]
                for line in gitattributes.content.decode(errors="replace").splitlines()
                if "filter=lfs" in line.split()[1:]
            )
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(path if "/" in pattern else name, pattern) for pattern in patterns)


def _tree_entries(files: Mapping[str, StoredFile]) -> dict[str, dict[str, Any]]:
    """Tree/paths-info entries (files and the folders above them), keyed by path, as the Hub returns them."""
    entries: dict[str, dict[str, Any]] = {}
    folders: dict[str, list[str]] = {}
    for path, stored in files.items():
        entry: dict[str, Any] = {"type": "file", "oid": stored.blob_id, "size": stored.size, "path": path}
        if stored.is_lfs:
            entry["lfs"] = {"oid": stored.lfs_sha256, "size": stored.size, "pointerSize": stored.lfs_pointer_size}
        entries[path] = entry
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folders.setdefault("/".join(parts[:depth]), []).append(f"{path}:{stored.blob_id}")
    for folder, content in folders.items():
        tree_id = hashlib.sha1("\n".join(sorted(content)).encode()).hexdigest()
        entries[folder] = {"type": "directory", "oid": tree_id, "size": 0, "path": folder}
    return entries


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in [
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", rf"/api/models/{_REPO}", "model_info"),
        ("GET", rf"/api/models/{_REPO}/revision/(?P<revision>[^/]+)", "model_info"),
        ("GET", rf"/api/models/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.+))?", "tree"),
        ("POST", rf"/api/models/{_REPO}/paths-info/(?P<revision>[^/]+)", "paths_info"),
        ("GET", rf"/api/models/{_REPO}/refs", "refs"),
        ("GET", rf"/api/models/{_REPO}/commits/(?P<revision>[^/]+)", "list_commits"),
        ("POST", rf"/api/models/{_REPO}/preupload/(?P<revision>[^/]+)", "preupload"),
        ("POST", rf"/api/models/{_REPO}/commit/(?P<revision>[^/]+)", "commit"),
        ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/__fake_lfs__/upload/(?P<ticket>[\w-]+)", "lfs_upload"),
        ("POST", r"/__fake_lfs__/verify/(?P<ticket>[\w-]+)", "lfs_verify"),
        ("HEAD", rf"/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)", "resolve"),
        ("GET", rf"/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)", "resolve"),
    ]
]


class _Handler(BaseHTTPRequestHandler):
    """One HTTP/1.1 connection to the fake Hub. Route handlers raise `HubError` for error responses."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds an idle kept-alive connection is held open

    server: ThreadingHTTPServer

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------------------- plumbing
    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.hub._lock:
                self.hub._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr access logs
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = self._read_body()  # always drain the body so the kept-alive connection stays in sync
        self.status_sent = 0
        try:
            for route_method, pattern, name in _ROUTES:
                match = pattern.fullmatch(url.path) if route_method == method else None
                if match:
                    arguments = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                    getattr(self, f"route_{name}")(**arguments)
                    break
            else:
                raise HubError(404, f"Not Found: {method} {url.path}")
        except HubError as error:
            self._send_error(error)
        except Exception as error:  # a bug in the fake: answer 500 rather than hanging the client
            self._send_error(HubError(500, f"fake Hub crashed: {type(error).__name__}: {error}"))
        with self.hub._lock:
            authorized = bool(self.headers.get("Authorization"))
            self.hub.requests.append(RecordedRequest(method, url.path, self.status_sent, authorized))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None, *, length: int | None = None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.status_sent = status

    def _send_json(self, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _send_error(self, error: HubError) -> None:
        headers = {"X-Error-Message": error.message, **error.headers}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send_json({"error": error.message, **error.extra}, error.status, headers)

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid JSON body: {error}") from None

    # ------------------------------------------------------------------------------------------- auth
    def _role(self) -> str | None:
        """The role of the request's token; `None` for anonymous requests; 401 for unknown tokens."""
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        role = self.hub.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return role

    def _require_write(self, target: str) -> None:
        role = self._role()
        if role is None:
            raise HubError(401, f"You must be authenticated to write to {target}")
        if role != WRITE:
            raise HubError(403, f"You don't have the rights to write to {target}: this token is read-only")

    def _readable_repo(self, repo_id: str) -> Repo:
        role = self._role()
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and role is None):
            raise _repo_not_found(repo_id)
        return repo

    def _writable_repo(self, repo_id: str) -> Repo:
        self._require_write(repo_id)
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            raise _repo_not_found(repo_id)
        return repo

    @staticmethod
    def _commit_at(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return commit

    # ------------------------------------------------------------------------------------------ routes
    def route_whoami(self) -> None:
        role = self._role()
        if role is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        self._send_json(
            {
                "type": "user",
                "name": self.hub.user,
                "fullname": self.hub.user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": role}},
            }
        )

    def route_create_repo(self) -> None:
        payload = self._json_body() or {}
        name, organization = payload.get("name"), payload.get("organization")
        if not isinstance(name, str) or not name:
            raise HubError(400, "Invalid repo name")
        repo_id = f"{organization or self.hub.user}/{name}"
        self._require_write(repo_id)
        if payload.get("type", "model") not in (None, "model"):
            raise HubError(400, f"The fake Hub only serves model repos, not {payload['type']!r}")
        self.hub._take_failure("create_repo")
        url = f"{self.hub.endpoint}/{repo_id}"
        with self.hub._lock:
            if repo_id in self.hub.repos:
                raise HubError(409, "You already created this model repo", extra={"url": url})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            self.hub.create_repo(repo_id, private=private)
        self._send_json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def route_validate_yaml(self) -> None:
        import yaml

        content = (self._json_body() or {}).get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        errors: list[dict[str, str]] = []
        if match:
            try:
                metadata = yaml.safe_load(match.group(1))
                if metadata is not None and not isinstance(metadata, dict):
                    errors.append({"message": "Model card metadata must be a YAML mapping"})
            except yaml.YAMLError as error:
                errors.append({"message": f"Invalid YAML in model card metadata: {error}"})
        self._send_json({"errors": errors, "warnings": []}, 400 if errors else 200)

    def route_model_info(self, repo: str, revision: str = "main") -> None:
        with self.hub._lock:
            stored_repo = self._readable_repo(repo)
            commit = self._commit_at(stored_repo, revision)
            blobs = self.query.get("blobs", ["false"])[0].lower() == "true"
            siblings = []
            for path, stored in sorted(commit.files.items()):
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    sibling.update(size=stored.size, blobId=stored.blob_id)
                    if stored.is_lfs:
                        sibling["lfs"] = {
                            "sha256": stored.lfs_sha256,
                            "size": stored.size,
                            "pointerSize": stored.lfs_pointer_size,
                        }
                siblings.append(sibling)
            payload = {
                "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
                "id": repo,
                "modelId": repo,
                "author": repo.split("/")[0],
                "sha": commit.oid,
                "private": stored_repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": stored_repo.created_at,
                "lastModified": commit.date,
                "siblings": siblings,
            }
        self._send_json(payload)

    def route_tree(self, repo: str, revision: str, path: str = "") -> None:
        self.hub._take_failure("tree")
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        with self.hub._lock:
            commit = self._commit_at(self._readable_repo(repo), revision)
            entries = _tree_entries(commit.files)
        path = path.strip("/")
        if path and entries.get(path, {}).get("type") != "directory":
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound")
        prefix = f"{path}/" if path else ""
        listing = [
            entry
            for entry_path, entry in sorted(entries.items())
            if entry_path.startswith(prefix) and (recursive or "/" not in entry_path[len(prefix) :])
        ]
        self._send_json(listing)

    def route_paths_info(self, repo: str, revision: str) -> None:
        form = parse_qs(self.body.decode())
        with self.hub._lock:
            commit = self._commit_at(self._readable_repo(repo), revision)
            entries = _tree_entries(commit.files)
        self._send_json([entries[path] for path in form.get("paths", []) if path in entries])

    def route_refs(self, repo: str) -> None:
        with self.hub._lock:
            refs = dict(self._readable_repo(repo).refs)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in refs.items()
            if not name.startswith("refs/")
        ]
        payload: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
        if self.query.get("include_prs"):
            payload["pullRequests"] = [
                {"name": name, "ref": name, "targetCommit": oid}
                for name, oid in refs.items()
                if name.startswith("refs/pr/")
            ]
        self._send_json(payload)

    def route_list_commits(self, repo: str, revision: str) -> None:
        with self.hub._lock:
            stored_repo = self._readable_repo(repo)
            history = stored_repo.history(self._commit_at(stored_repo, revision))
        self._send_json(
            [
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": commit.message,
                    "date": commit.date,
                    "authors": [{"user": self.hub.user}],
                }
                for commit in history
            ]
        )

    def route_preupload(self, repo: str, revision: str) -> None:
        files = (self._json_body() or {}).get("files")
        if not isinstance(files, list):
            raise HubError(400, "preupload expects a 'files' list")
        with self.hub._lock:
            commit = self._commit_at(self._writable_repo(repo), revision)
        self.hub._take_failure("preupload")
        answers = []
        for item in files:
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            lfs = self.hub._is_lfs(commit, path, size, sample)
            answer: dict[str, Any] = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            existing = commit.files.get(path)
            if existing is not None:  # lets the client skip unchanged files (sha256 for LFS, blob id otherwise)
                answer["oid"] = existing.lfs_sha256 if existing.is_lfs else existing.blob_id
            answers.append(answer)
        self._send_json({"files": answers, "commitOid": commit.oid})

    def route_lfs_batch(self, repo: str) -> None:
        payload = self._json_body() or {}
        with self.hub._lock:
            stored_repo = self._writable_repo(repo)
        if payload.get("operation") != "upload":
            raise HubError(400, "The fake Hub only supports LFS uploads through the batch API")
        self.hub._take_failure("lfs_batch")
        objects = []
        for item in payload.get("objects", []):
            oid, size = str(item["oid"]), int(item["size"])
            answer: dict[str, Any] = {"oid": oid, "size": size}
            with self.hub._lock:
                present = oid in stored_repo.lfs_objects
                if not present:
                    ticket = secrets.token_urlsafe(16)
                    self.hub._upload_tickets[ticket] = (repo, oid, size)
            if not present:  # already stored objects get no "actions": the client skips their upload
                answer["authenticated"] = True
                answer["actions"] = {
                    "upload": {"href": f"{self.hub.endpoint}/__fake_lfs__/upload/{ticket}", "header": {}},
                    "verify": {"href": f"{self.hub.endpoint}/__fake_lfs__/verify/{ticket}", "header": {}},
                }
            objects.append(answer)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def route_lfs_upload(self, ticket: str) -> None:
        with self.hub._lock:
            target = self.hub._upload_tickets.get(ticket)
        if target is None:
            raise HubError(403, "Unknown or expired upload URL")
        self.hub._take_failure("lfs_upload")
        repo, oid, size = target
        if len(self.body) != size or hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match LFS object {oid} ({size} bytes)")
        with self.hub._lock:
            self.hub.repos[repo].lfs_objects[oid] = self.body
        self._send(200, b"", {"ETag": f'"{hashlib.md5(self.body).hexdigest()}"'})

    def route_lfs_verify(self, ticket: str) -> None:
        payload = self._json_body() or {}
        self._role()  # an unknown token is refused (the client sends its Authorization header here)
        with self.hub._lock:
            target = self.hub._upload_tickets.get(ticket)
            present = target is not None and target[1] in self.hub.repos[target[0]].lfs_objects
        if target is None or payload.get("oid") != target[1]:
            raise HubError(404, "Unknown LFS verify URL")
        if not present:
            raise HubError(404, f"LFS object {target[1]} was not uploaded")
        self._send_json({})

    def route_commit(self, repo: str, revision: str) -> None:
        create_pr = self.query.get("create_pr", ["0"])[0] in ("1", "true", "True")
        with self.hub._lock:
            stored_repo = self._writable_repo(repo)
        self.hub._take_failure("commit")
        try:
            lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise HubError(400, f"Invalid NDJSON commit payload: {error}") from None
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        title = header.get("summary") or ""
        if not title:
            raise HubError(400, "Commit summary is required")

        with self.hub._lock:  # validate everything, then apply at once: the commit is atomic
            is_branch = revision in stored_repo.refs
            if not is_branch:
                raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            head = stored_repo.commits[stored_repo.refs[revision]]
            parent_oid = header.get("parentCommit")
            base = head
            if parent_oid:
                parent = stored_repo.resolve(parent_oid)
                if parent is None:
                    raise HubError(404, f"Invalid parent commit: {parent_oid}", code="RevisionNotFound")
                if create_pr:
                    base = parent
                elif parent.oid != head.oid:
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(base.files)
            for line in lines[1:]:
                self._apply_operation(stored_repo, base, files, line)
            if self.hub._tamper is not None:
                self.hub._tamper(files)
                self.hub._tamper = None
            if create_pr:
                stored_repo.pull_requests += 1
                ref = f"refs/pr/{stored_repo.pull_requests}"
            else:
                ref = revision
            commit = self.hub._add_commit(
                stored_repo, ref, parent=base.oid, files=files, title=title, message=header.get("description") or ""
            )
        endpoint = self.hub.endpoint
        self._send_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{endpoint}/{repo}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": f"{endpoint}/{repo}/discussions/{stored_repo.pull_requests}" if create_pr else None,
            }
        )

    def _apply_operation(self, repo: Repo, base: Commit, files: dict[str, StoredFile], line: dict) -> None:
        key, value = line.get("key"), line.get("value") or {}
        path = str(value.get("path", "")).strip("/")
        if not path or any(part in ("", ".", "..") for part in path.split("/")):
            raise HubError(400, f"Invalid path in commit: {value.get('path')!r}")
        if key == "file":
            if value.get("encoding") != "base64":
                raise HubError(400, f"Unsupported encoding for {path}: {value.get('encoding')!r}")
            content = base64.b64decode(value.get("content", ""))
            if self.hub._is_lfs(base, path, len(content), content[:512]):
                raise HubError(400, f"Your push was rejected because {path} must be stored with LFS (preupload)")
            files[path] = StoredFile.regular(content)
        elif key == "lfsFile":
            oid = value.get("oid")
            if value.get("algo", "sha256") != "sha256" or oid not in repo.lfs_objects:
                raise HubError(
                    400, f"Your push was rejected because an LFS pointer pointed to a file that does not exist: {path}"
                )
            size = len(repo.lfs_objects[oid])
            if value.get("size") not in (None, size):
                raise HubError(400, f"LFS object size mismatch for {path}")
            files[path] = StoredFile.lfs(oid, size)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
        elif key == "deletedFolder":
            doomed = [existing for existing in files if existing.startswith(f"{path}/")]
            if not doomed:
                raise HubError(404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound")
            for existing in doomed:
                del files[existing]
        else:
            raise HubError(400, f"Unsupported commit operation {key!r}")

    def route_resolve(self, repo: str, revision: str, path: str) -> None:
        self.hub._take_failure("resolve")
        with self.hub._lock:
            stored_repo = self._readable_repo(repo)
            commit = self._commit_at(stored_repo, revision)
            stored = commit.files.get(path)
            if stored is None:
                missing = HubError(404, f"Entry not found: {path}", code="EntryNotFound")
                missing.headers["X-Repo-Commit"] = commit.oid  # lets the client cache the absence per commit
                raise missing
            content = self.hub._content(stored_repo, stored)
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{stored.etag}"',
            "Accept-Ranges": "bytes",
        }
        if stored.is_lfs:
            headers.update({"X-Linked-Etag": f'"{stored.etag}"', "X-Linked-Size": str(stored.size)})
        status, body = 200, content
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match and self.command == "GET":
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(content) - 1
            status, body = 206, content[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(content)}"
        self._send(status, body, headers, length=len(body))
