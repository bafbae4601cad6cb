"""A small local stand-in for the Hugging Face Hub HTTP API, for end-to-end tests.

It answers what huggingface_hub 2.x calls for `create_repo`, `repo_info`, `create_branch`,
`upload_folder` (over LFS with `HF_HUB_DISABLE_XET=1`, else over Xet) and `snapshot_download`:

- `POST /api/repos/create` (409 when the repo exists);
- `GET  /api/{type}s/{ns}/{name}[/revision/{rev}]` (repo info);
- `POST /api/validate-yaml` (README front matter, parsed for real);
- `POST /api/{type}s/{ns}/{name}/preupload/{rev}` (regular or LFS, remote oids);
- `POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch` (LFS batch API; objects already
  stored get no actions);
- `PUT  /_storage/{oid}`: the storage side, without authentication like presigned URLs;
- `POST /api/{type}s/{ns}/{name}/commit/{rev}` (NDJSON: header, file, lfsFile, deletedFile);
- `GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]`, `POST .../branch/{branch}`;
- `GET|HEAD /{prefix}{ns}/{name}/resolve/{rev}/{path}` (a file at a branch or commit);
- Xet: `GET /api/{type}s/{ns}/{name}/xet-write-token/{rev}` (a CAS URL on this server and a
  CAS token), `POST /_cas/v1/xorbs/{prefix}/{hash}` and `POST /_cas/v1/shards`, kept as
  received, never decoded (a file uploaded this way is known by the commit's sha256 only);
  the newer calls hf_xet tries first (global dedup, upload grants, v2 shards) answer 404, and
  the client falls back to the v1 ones.

It keeps what it received (repositories with their files per branch and commit, commits with
messages and operations, LFS objects by sha256, every request with its Authorization header)
and can be told to require a token (401 otherwise) or to fail the next N calls of a route with
a status code, by dropping the connection, or by losing the answer of work it did.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# What the Hub writes into a new dataset repo: the LFS rules the preupload call answers from.
DEFAULT_GITATTRIBUTES = (
    "*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    "*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    "*.png filter=lfs diff=lfs merge=lfs -text\n"
    "*.jpg filter=lfs diff=lfs merge=lfs -text\n"
    "*.zip filter=lfs diff=lfs merge=lfs -text\n"
)
# Fault kinds for LocalHub.fail besides HTTP status codes.
DROP = 0
LOSE_RESPONSE = -1
# The Hub stores any file above 10 MB with LFS whatever its name.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

_TYPES = "models|datasets|spaces"
_REPO = r"(?P<repo>[^/]+/[^/]+?)"
_ROUTES: list[tuple[str, str, re.Pattern[str]]] = [
    ("GET", "agent_harnesses", re.compile(r"^/api/agent-harnesses$")),
    ("POST", "create", re.compile(r"^/api/repos/create$")),
    ("POST", "validate_yaml", re.compile(r"^/api/validate-yaml$")),
    (
        "POST",
        "preupload",
        re.compile(rf"^/api/(?P<type>{_TYPES})/{_REPO}/preupload/(?P<rev>[^/]+)$"),
    ),
    ("POST", "commit", re.compile(rf"^/api/(?P<type>{_TYPES})/{_REPO}/commit/(?P<rev>[^/]+)$")),
    ("POST", "branch", re.compile(rf"^/api/(?P<type>{_TYPES})/{_REPO}/branch/(?P<rev>[^/]+)$")),
    (
        "GET",
        "tree",
        re.compile(rf"^/api/(?P<type>{_TYPES})/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$"),
    ),
    (
        "GET",
        "repo_info",
        re.compile(rf"^/api/(?P<type>{_TYPES})/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"),
    ),
    (
        "POST",
        "lfs_batch",
        re.compile(
            r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$"
        ),
    ),
    (
        "GET",
        "resolve",
        re.compile(
            r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"
        ),
    ),
    ("PUT", "lfs_upload", re.compile(r"^/_storage/(?P<oid>[0-9a-f]{64})$")),
    (
        "GET",
        "xet_token",
        re.compile(rf"^/api/(?P<type>{_TYPES})/{_REPO}/xet-write-token/(?P<rev>[^/]+)$"),
    ),
    ("POST", "cas_xorb", re.compile(r"^/_cas/v1/xorbs/[^/]+/(?P<hash>[0-9a-f]{64})$")),
    ("POST", "cas_shard", re.compile(r"^/_cas/v1/shards$")),
    # What hf_xet tries first and falls back from on a 404: global dedup, upload grants, v2.
    ("GET", "cas_fallback", re.compile(r"^/_cas/v1/chunks/.+$")),
    ("POST", "cas_fallback", re.compile(r"^/_cas/(?:v1/xorb-grants/.+|v2/shards)$")),
]
# Storage URLs stand for presigned S3 URLs: they carry no token and are never checked for one.
_STORAGE_ROUTES = frozenset({"lfs_upload"})
# Public: huggingface_hub fetches it without a token to build its User-Agent.
_PUBLIC_ROUTES = _STORAGE_ROUTES | {"agent_harnesses"}
# The CAS side of Xet: authenticated by the short-lived token of xet_token, not the Hub's.
_CAS_ROUTES = frozenset({"cas_xorb", "cas_shard", "cas_fallback"})
XET_ACCESS_TOKEN = "xet-access-for-tests"


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob, which the Hub reports as the oid of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True)
class StoredFile:
    """One file of a repository at one branch head."""

    content: bytes
    lfs: bool
    #: A file uploaded through Xet: its bytes are chunks in xorbs, only the commit's sha256 is
    #: known (reconstructing the file would need the Xet formats).
    xet_sha256: str | None = None

    @property
    def sha256(self) -> str:
        return self.xet_sha256 or hashlib.sha256(self.content).hexdigest()

    @property
    def oid(self) -> str:
        # What preupload returns as the remote oid: sha256 for LFS files, git sha1 otherwise.
        return self.sha256 if self.lfs else git_blob_oid(self.content)


@dataclass
class Commit:
    """One commit as received: message, branch, and the operations of its NDJSON body."""

    oid: str
    branch: str
    summary: str
    description: str
    parent: str | None
    operations: list[tuple[str, str]]  # (key, path): key is file, lfsFile, deletedFile, ...


@dataclass
class Repo:
    """A repository: its creation payload, files per branch and commit history."""

    repo_id: str
    repo_type: str
    private: bool
    create_payload: dict[str, Any]
    branches: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, dict[str, StoredFile]] = field(default_factory=dict)  # by commit oid
    commits: list[Commit] = field(default_factory=list)

    def files(self, branch: str = "main") -> dict[str, bytes]:
        """Path -> content at the head of `branch`."""
        return {path: f.content for path, f in self.branches[branch].items()}


@dataclass
class RequestRecord:
    """One request as the server saw it."""

    method: str
    path: str
    route: str | None
    status: int
    authorization: str | None


class _HubError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class LocalHub:
    """The server and everything it stored. Use as a context manager or call start()/stop()."""

    def __init__(self, *, valid_tokens: set[str] | None = None) -> None:
        self.valid_tokens = valid_tokens
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.lfs_uploads: list[str] = []  # oids, one per completed storage upload
        self.xorbs: dict[str, bytes] = {}  # Xet uploads: serialized xorbs by hash
        self.shards: list[bytes] = []
        self.requests: list[RequestRecord] = []
        self.calls: Counter[str] = Counter()
        self.unhandled: list[str] = []
        self.errors: list[str] = []
        self._faults: dict[str, deque[tuple[int, bool]]] = defaultdict(deque)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalHub:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.hub = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-hub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The endpoint to give the client (HF_ENDPOINT or endpoint=)."""
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- test controls ---------------------------------------------------------------------

    def fail(
        self,
        route: str,
        times: int = 1,
        status: int = 503,
        echo_authorization: bool = False,
    ) -> None:
        """Make the next `times` calls of `route` fail.

        `status` > 0 answers with that code without doing anything; `DROP` closes the
        connection without an answer; `LOSE_RESPONSE` does the work and then closes the
        connection, as when a response is lost on the way back. With `echo_authorization`, the
        error body and message header repeat the request's Authorization header, as some
        proxies and debug servers do.
        """
        with self._lock:
            self._faults[route].extend([(status, echo_authorization)] * times)

    def reset(self) -> None:
        """Forget every repository, object, record and pending fault (the port stays)."""
        with self._lock:
            self.repos.clear()
            self.lfs_objects.clear()
            self.lfs_uploads.clear()
            self.xorbs.clear()
            self.shards.clear()
            self.requests.clear()
            self.calls.clear()
            self.unhandled.clear()
            self.errors.clear()
            self._faults.clear()

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        """The stored repository (KeyError if it was never created)."""
        return self.repos[(repo_type, repo_id)]

    def api_requests(self) -> list[RequestRecord]:
        """The requests to the Hub API proper (not to the storage URLs)."""
        return [r for r in self.requests if r.route not in _STORAGE_ROUTES]

    # -- dispatch --------------------------------------------------------------------------

    def _take_fault(self, route: str) -> tuple[int, bool] | None:
        with self._lock:
            queue = self._faults.get(route)
            return queue.popleft() if queue else None

    def _check_auth(self, authorization: str | None) -> None:
        if self.valid_tokens is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.valid_tokens:
            raise _HubError(401, "Invalid credentials in Authorization header")

    def _repo_for(self, params: dict[str, str]) -> Repo:
        repo_type = (params.get("type") or "models").removesuffix("s")
        repo = self.repos.get((repo_type, params["repo"]))
        if repo is None:
            raise _HubError(404, "Repository not found", code="RepoNotFound")
        return repo

    def _files_at(self, repo: Repo, rev: str) -> tuple[str, dict[str, StoredFile]]:
        """``(commit oid, files)`` at a branch or a commit."""
        rev = unquote(rev)
        commit = rev if rev in repo.snapshots else repo.heads[self._branch(repo, rev)]
        return commit, repo.snapshots[commit]

    @staticmethod
    def _branch(repo: Repo, rev: str | None) -> str:
        branch = unquote(rev) if rev else "main"
        if branch not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {branch}", code="RevisionNotFound")
        return branch

    # -- Hub API ---------------------------------------------------------------------------

    def agent_harnesses(self, body: bytes, **_: Any) -> tuple[int, Any]:
        return 200, {"standardEnvVars": [], "harnesses": {}}

    def create(self, body: bytes, **_: Any) -> tuple[int, Any]:
        payload = json.loads(body)
        name, organization = payload["name"], payload.get("organization")
        repo_id = f"{organization}/{name}" if organization else f"user/{name}"
        repo_type = payload.get("type") or "model"
        url = f"{self.url}/{_url_prefix(repo_type)}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                return 409, {"error": "You already created this repo", "url": url}
            repo = Repo(
                repo_id=repo_id,
                repo_type=repo_type,
                private=payload.get("visibility") == "private" or payload.get("private") is True,
                create_payload=payload,
            )
            repo.branches["main"] = {}
            self.repos[(repo_type, repo_id)] = repo
            self._apply_commit(
                repo,
                "main",
                "initial commit",
                "",
                [("file", ".gitattributes", StoredFile(DEFAULT_GITATTRIBUTES.encode(), lfs=False))],
            )
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def repo_info(self, body: bytes, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        with self._lock:
            repo = self._repo_for(params)
            branch = self._branch(repo, params.get("rev"))
            files = repo.branches[branch]
            return 200, {
                "id": repo.repo_id,
                "private": repo.private,
                "sha": repo.heads[branch],
                "siblings": [{"rfilename": path} for path in sorted(files)],
            }

    def validate_yaml(self, body: bytes, **_: Any) -> tuple[int, Any]:
        content = json.loads(body)["content"]
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.DOTALL)
        if match is None:
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]}
        try:
            metadata = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"invalid YAML: {exc}"}], "warnings": []}
        if metadata is not None and not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def preupload(self, body: bytes, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        payload = json.loads(body)
        with self._lock:
            repo = self._repo_for(params)
            branch = self._branch(repo, params["rev"])
            files = repo.branches[branch]
            lfs_patterns = _lfs_patterns(files)
            answers = []
            for item in payload["files"]:
                sample = base64.b64decode(item["sample"])
                path = item["path"]
                is_lfs = (
                    item["size"] >= LFS_SIZE_THRESHOLD
                    or b"\0" in sample
                    or any(
                        fnmatch(path.rsplit("/", 1)[-1], p) or fnmatch(path, p)
                        for p in lfs_patterns
                    )
                )
                existing = files.get(path)
                answers.append(
                    {
                        "path": path,
                        "uploadMode": "lfs" if is_lfs else "regular",
                        "shouldIgnore": False,
                        "oid": existing.oid if existing is not None else None,
                    }
                )
            return 200, {"files": answers, "commitOid": repo.heads[branch]}

    def lfs_batch(self, body: bytes, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            return 422, {"message": "only uploads are supported"}
        with self._lock:
            self._repo_for({"type": params.get("type") or "models", "repo": params["repo"]})
            objects = []
            for obj in payload["objects"]:
                oid, size = obj["oid"], obj["size"]
                answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if oid not in self.lfs_objects:
                    answer["actions"] = {"upload": {"href": f"{self.url}/_storage/{oid}"}}
                objects.append(answer)
        return 200, {"transfer": "basic", "objects": objects}

    def lfs_upload(self, body: bytes, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        self._store_lfs(params["oid"], body)
        return 200, None

    def _store_lfs(self, oid: str, content: bytes) -> None:
        if hashlib.sha256(content).hexdigest() != oid:
            raise _HubError(400, "content does not match its sha256")
        with self._lock:
            self.lfs_objects[oid] = content
            self.lfs_uploads.append(oid)

    def commit(
        self, body: bytes, *, params: dict[str, str], query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        if query.get("create_pr"):
            return 400, {"error": "pull requests are not supported by this test server"}
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return 400, {"error": "the first NDJSON line must be the commit header"}
        header = lines[0]["value"]
        with self._lock:
            repo = self._repo_for(params)
            branch = self._branch(repo, params["rev"])
            parent = header.get("parentCommit")
            if parent is not None and not repo.heads[branch].startswith(parent):
                return 412, {"error": "parent commit is not the head of the branch"}
            operations: list[tuple[str, str, StoredFile | None]] = []
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        return 400, {"error": f"unsupported encoding for {path}"}
                    content = base64.b64decode(value["content"])
                    operations.append((key, path, StoredFile(content, lfs=False)))
                elif key == "lfsFile" and value["oid"] not in self.lfs_objects and self.xorbs:
                    stored = StoredFile(b"", lfs=True, xet_sha256=value["oid"])
                    operations.append((key, path, stored))
                elif key == "lfsFile":
                    content = self.lfs_objects.get(value["oid"])
                    if content is None or value.get("algo") != "sha256":
                        return 422, {"error": f"LFS object of {path} was never uploaded"}
                    if "size" in value and len(content) != value["size"]:
                        return 422, {"error": f"LFS object of {path} has the wrong size"}
                    operations.append((key, path, StoredFile(content, lfs=True)))
                elif key == "deletedFile":
                    operations.append((key, path, None))
                else:
                    return 400, {"error": f"unknown commit operation {key}"}
            oid = self._apply_commit(
                repo, branch, header["summary"], header.get("description", ""), operations
            )
        return 200, {
            "commitUrl": f"{self.url}/{_url_prefix(repo.repo_type)}{repo.repo_id}/commit/{oid}",
            "commitOid": oid,
            "pullRequestUrl": None,
            "success": True,
        }

    def _apply_commit(
        self,
        repo: Repo,
        branch: str,
        summary: str,
        description: str,
        operations: list[tuple[str, str, StoredFile | None]],
    ) -> str:
        files = dict(repo.branches[branch])
        for key, path, stored in operations:
            if key == "deletedFile":
                if path not in files:
                    raise _HubError(
                        404, f"A file with this name doesn't exist: {path}", code="EntryNotFound"
                    )
                del files[path]
            else:
                assert stored is not None
                files[path] = stored
        parent = repo.heads.get(branch)
        digest = hashlib.sha1(f"{parent}\n{summary}\n{len(repo.commits)}".encode())
        for path in sorted(files):
            digest.update(f"{path}:{files[path].oid}\n".encode())
        oid = digest.hexdigest()
        repo.branches[branch] = files
        repo.heads[branch] = oid
        repo.snapshots[oid] = files
        repo.commits.append(
            Commit(oid, branch, summary, description, parent, [(k, p) for k, p, _ in operations])
        )
        return oid

    def tree(
        self, body: bytes, *, params: dict[str, str], query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        base = unquote(params.get("path") or "").strip("/")
        with self._lock:
            repo = self._repo_for(params)
            _, files = self._files_at(repo, params["rev"])
            prefix = f"{base}/" if base else ""
            entries: dict[str, dict[str, Any]] = {}
            for path, stored in sorted(files.items()):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix) :].split("/")
                # Directories on the way down: all of them when recursive, the first otherwise.
                for depth in range(1, len(rest) if recursive else min(2, len(rest))):
                    folder = prefix + "/".join(rest[:depth])
                    entries.setdefault(
                        folder, {"type": "directory", "path": folder, "oid": "0" * 40}
                    )
                if recursive or len(rest) == 1:
                    entry: dict[str, Any] = {
                        "type": "file",
                        "path": path,
                        "size": len(stored.content),
                        "oid": git_blob_oid(stored.content),
                    }
                    if stored.lfs:
                        entry["lfs"] = {
                            "oid": stored.sha256,
                            "size": len(stored.content),
                            "pointerSize": 134,
                        }
                    entries[path] = entry
            if base and not entries:
                raise _HubError(404, f"{base} does not exist", code="EntryNotFound")
        return 200, list(entries.values())

    def resolve(
        self, body: bytes, *, params: dict[str, str], method: str = "GET", **_: Any
    ) -> tuple[int, Any, dict[str, str]]:
        """A file's bytes at a branch or commit, with the headers huggingface_hub's download
        reads (``X-Repo-Commit``, ``ETag`` / ``X-Linked-Etag``, sizes); HEAD: headers only."""
        with self._lock:
            repo = self._repo_for(params)
            commit, files = self._files_at(repo, params["rev"])
            stored = files.get(unquote(params["path"]))
        if stored is None:
            raise _HubError(404, "Entry not found", code="EntryNotFound")
        headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_oid(stored.content)}"'}
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(len(stored.content))
        return 200, _Raw(stored.content, head=method == "HEAD"), headers

    # -- Xet (the default upload path of huggingface_hub 2.x with hf_xet) -------------------

    def xet_token(self, body: bytes, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        with self._lock:
            self._repo_for(params)
        exp = int(time.time()) + 3600
        return 200, {"accessToken": XET_ACCESS_TOKEN, "exp": exp, "casUrl": f"{self.url}/_cas"}

    def cas_xorb(self, body: bytes, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        with self._lock:
            self.xorbs[params["hash"]] = body
        return 200, {"was_inserted": True}

    def cas_shard(self, body: bytes, **_: Any) -> tuple[int, Any]:
        with self._lock:
            self.shards.append(body)
        return 200, {"result": 1}

    def cas_fallback(self, body: bytes, **_: Any) -> tuple[int, Any]:
        return 404, {"error": "not served here; the client falls back to the v1 upload"}

    def branch(self, body: bytes, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        payload = json.loads(body) if body else {}
        with self._lock:
            repo = self._repo_for(params)
            name = unquote(params["rev"])
            if name in repo.branches:
                return 409, {"error": f"Reference already exists: refs/heads/{name}"}
            start = self._branch(repo, payload.get("startingPoint"))
            repo.branches[name] = dict(repo.branches[start])
            repo.heads[name] = repo.heads[start]
        return 200, None


def _url_prefix(repo_type: str) -> str:
    return "" if repo_type == "model" else f"{repo_type}s/"


def _lfs_patterns(files: dict[str, StoredFile]) -> list[str]:
    attributes = files.get(".gitattributes")
    if attributes is None:
        return []
    return [
        line.split()[0]
        for line in attributes.content.decode().splitlines()
        if "filter=lfs" in line and line.split()
    ]


@dataclass(frozen=True)
class _Raw:
    """A response body sent as bytes (a file), or only its length for a HEAD request."""

    content: bytes
    head: bool = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        # The test reads the server's records; stderr stays for the client's logs.
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        # huggingface_hub sends every body with a Content-Length (never chunked).
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self, method: str) -> None:
        hub: LocalHub = self.server.hub  # type: ignore[attr-defined]
        # Read the whole body first: a keep-alive connection must be left at a request boundary.
        body = self._read_body()
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        route, params = None, {}
        for route_method, name, pattern in _ROUTES:
            match = pattern.match(path)
            head = (method, route_method, name) == ("HEAD", "GET", "resolve")
            if (route_method == method or head) and match:
                route, params = name, {k: v for k, v in match.groupdict().items() if v is not None}
                break
        authorization = self.headers.get("Authorization")
        with hub._lock:
            hub.calls[route or "unhandled"] += 1
        status, _ = self._answer(hub, method, route, params, query, body, authorization)
        with hub._lock:
            hub.requests.append(RequestRecord(method, path, route, status, authorization))

    def _answer(
        self,
        hub: LocalHub,
        method: str,
        route: str | None,
        params: dict[str, str],
        query: dict[str, list[str]],
        body: bytes,
        authorization: str | None,
    ) -> tuple[int, Any]:
        if route is None:
            with hub._lock:
                hub.unhandled.append(f"{method} {self.path}")
            return self._send(404, {"error": f"no route for {method} {self.path}"})
        status, echo = hub._take_fault(route) or (None, False)
        if status == DROP:
            # An abrupt disconnect: the client sees a protocol error, never a status code.
            self.close_connection = True
            return DROP, None
        if status is not None and status != LOSE_RESPONSE:
            headers = {}
            message = f"injected failure on {route}"
            if echo:
                message += f" (request had Authorization: {authorization})"
                headers["X-Error-Message"] = message
            return self._send(status, {"error": message}, headers)
        lose_response = status == LOSE_RESPONSE
        try:
            if route in _CAS_ROUTES:
                if authorization != f"Bearer {XET_ACCESS_TOKEN}":
                    raise _HubError(401, "CAS calls need the Xet access token")
            elif route not in _PUBLIC_ROUTES:
                hub._check_auth(authorization)
            status, payload, *extra = getattr(hub, route)(
                body, params=params, query=query, method=method
            )
            if lose_response:
                self.close_connection = True
                return LOSE_RESPONSE, payload
        except _HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code is not None:
                headers["X-Error-Code"] = err.code
            return self._send(err.status, {"error": err.message}, headers)
        except Exception as exc:
            # A bug here must not pass for a transient Hub error: tests assert `errors` is empty.
            with hub._lock:
                hub.errors.append(f"{method} {self.path}: {type(exc).__name__}: {exc}")
            return self._send(500, {"error": f"test server error: {exc}"})
        return self._send(status, payload, extra[0] if extra else None)

    def _send(
        self, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        if isinstance(payload, _Raw):
            data, kind = payload.content, "application/octet-stream"
        else:
            data, kind = (
                b"" if payload is None else json.dumps(payload).encode(),
                "application/json",
            )
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not (isinstance(payload, _Raw) and payload.head):
            self.wfile.write(data)
        return status, None if isinstance(payload, _Raw) else payload
