"""Push an exported HumanBeauty folder to the Hugging Face Hub as a dataset repository.

The push is a separate, retryable step after `hae_data.export` (SPEC 2.8): it creates the
repository (private by default), then uploads the folder in one `HfApi.upload_folder` call.

Why `upload_folder` and not `upload_large_folder`: huggingface_hub 2.x no longer has
`upload_large_folder`; its `upload_folder` took over the large-folder work.

- With `hf_xet` installed (a dependency of huggingface_hub 2.x on common platforms), the upload
  is a streamed pipeline that commits large folders in several batches and resumes an
  interrupted upload when it is called again (committed files are skipped, uploaded chunks
  are deduplicated).
- Without Xet (`HF_HUB_DISABLE_XET=1`, or no `hf_xet`), it is one commit over the LFS
  protocol: files are hashed, the LFS batch API says which objects the Hub lacks, only those
  are uploaded, then one commit lists every file. A 50 GB export is ~100 shards of 500 MB,
  far below the per-commit limit (25k LFS files), and a rerun after a failure only re-hashes
  the files: shards already in LFS storage are not sent again.

Either way, resuming is calling the same upload again. The push itself tries each Hub call
once and says whether a failure is worth another try (`HubPushError.transient`: connection
errors, timeouts, HTTP 408/429/5xx; a 401/403/404, a bad id or huggingface_hub's offline mode
are not): one retry layer per concern, huggingface_hub's per-request backoff below, the
caller's whole-push retries above (the flow's Prefect task, flows/build_humanbeauty.py).
Both paths are tested against a local HTTP server (tests/data/test_hub.py): LFS end to end,
byte for byte; Xet up to a CAS stand-in that keeps xorbs without decoding them (whether they
reconstruct the files needs the Hub's CAS service). huggingface_hub reads `HF_ENDPOINT` and
`HF_HUB_DISABLE_XET` once, when it is first imported. `endpoint=` reaches every call of the
push, but huggingface_hub 2.4 still makes one best-effort GET of its agent registry to
`HF_ENDPOINT` (default huggingface.co); it fails silently offline, and setting `HF_ENDPOINT`
instead keeps all traffic on one host.

:func:`upload_folder` is the same guarded upload for any repository type (the model push of
`hae_model.model_hub` uses it).

Only the entries an export manages (`hae_data.outdir.EXPORT_ENTRIES`: `data/`, `README.md`,
`stats.json`, `rejected.parquet`, `plots/`...) are pushed; anything else in the folder (a flow's
work directory, notes) stays local. On the Hub those entries mirror the export: remote files
under them that the export no longer has are deleted in the same commit, so a re-push with
fewer shards leaves no stale shard for the card's `data/...` globs to pick up. Other remote
files (`.gitattributes`, a hand-written addition) are left alone.

The token is never logged: only the repo id, file count and total bytes are, and error texts
are scrubbed of it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from hae_data.outdir import EXPORT_ENTRIES

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
# Transient by HTTP status: what huggingface_hub's own backoff retries, plus any other 5xx.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# What a push uploads, and the remote paths it mirrors (deletes when the export lacks them):
# each managed entry, as a file or as a folder (fnmatch's `*` crosses `/`).
MANAGED_PATTERNS = tuple(p for name in EXPORT_ENTRIES for p in (name, f"{name}/*"))
# Never uploaded: hidden files (editor/OS droppings) and temporaries.
IGNORE_PATTERNS = (".*", "*/.*", "*.tmp", "*.partial")

_T = TypeVar("_T")


class HubPushError(RuntimeError):
    """A push that failed, or cannot start.

    ``transient`` says whether trying again later may succeed (a runner's retry policy reads
    it: connection errors, timeouts, HTTP 408/429/5xx). The message is scrubbed of the token
    and the exception never chains to the library error it replaces: a server's response
    (which can echo the ``Authorization`` header) must not reach a log or a traceback stored
    by an orchestrator.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.transient = transient


_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def check_push_target(repo_id: str, token: str | None = None) -> str:
    """Check a push can start: ``repo_id`` looks like ``namespace/name`` and a token exists.

    Returns the token (``token``, else ``HF_TOKEN`` or the cached login). Raises ``ValueError``
    for a malformed id and :class:`HubPushError` when there is no token: both before any work.
    """
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise ValueError(f"repo_id must look like 'namespace/name', got {repo_id!r}")
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubPushError(
            f"no Hugging Face token to push {repo_id}: pass token=, set HF_TOKEN, "
            "or log in once with `hf auth login`"
        )
    return token


@dataclass(frozen=True)
class ExportManifest:
    """The files of an export folder that a push uploads (posix paths relative to the folder)."""

    folder: Path
    files: tuple[str, ...]
    total_bytes: int

    @property
    def shards(self) -> tuple[str, ...]:
        """The Parquet shards under `data/`."""
        return tuple(f for f in self.files if f.startswith("data/") and f.endswith(".parquet"))


def describe_export(folder: str | Path) -> ExportManifest:
    """List what `push_to_hub` would upload; ValueError if `folder` does not look like an export.

    An export (see `hae_data.export.export_dataset`) has a `README.md` dataset card and Parquet
    shards under `data/`. Only its managed entries are listed, without hidden files.
    """
    from huggingface_hub.utils import filter_repo_objects

    root = Path(folder).expanduser()
    what = "an exported dataset folder (README.md and Parquet shards under data/)"
    if not root.exists():
        raise ValueError(f"{root} does not exist; expected {what}")
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory; expected {what}")
    missing = [name for name in ("README.md", "data") if not (root / name).exists()]
    if missing:
        raise ValueError(
            f"{root} is not an export: missing {' and '.join(missing)}; expected {what}"
        )
    if not (root / "README.md").is_file() or not (root / "data").is_dir():
        raise ValueError(f"{root} is not an export: README.md must be a file and data/ a folder")
    every = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    files = tuple(
        filter_repo_objects(
            every,
            allow_patterns=list(MANAGED_PATTERNS),
            ignore_patterns=list(IGNORE_PATTERNS),
        )
    )
    manifest = ExportManifest(
        folder=root,
        files=files,
        total_bytes=sum((root / f).stat().st_size for f in files),
    )
    if not manifest.shards:
        raise ValueError(f"{root} is not an export: no Parquet shards under {root / 'data'}")
    return manifest


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Upload an exported folder to the dataset repository `repo_id`; return the commit URL.

    The repository is created if needed (private unless `private=False`); pushing a private
    export into an existing public repository is refused. `token` defaults to `HF_TOKEN` or
    the cached login; `endpoint` to `HF_ENDPOINT` or https://huggingface.co. `revision` names
    a branch, created from `main` if absent. One attempt: a failure is a :class:`HubPushError`
    whose ``transient`` says whether calling again (which resumes) may succeed.
    """
    manifest = describe_export(folder)
    size = _human_bytes(manifest.total_bytes)
    logger.info(
        "pushing %s to dataset repo %s (private %s): %d files/%d shards, %d bytes",
        manifest.folder,
        repo_id,
        private,
        len(manifest.files),
        len(manifest.shards),
        manifest.total_bytes,
    )
    commit_url = upload_folder(
        manifest.folder,
        repo_id,
        repo_type=REPO_TYPE,
        private=private,
        token=token,
        revision=revision,
        commit_message=commit_message
        or f"Upload HumanBeauty export ({len(manifest.files)} files, {size})",
        endpoint=endpoint,
        allow_patterns=MANAGED_PATTERNS,
        delete_patterns=MANAGED_PATTERNS,
    )
    logger.info(
        "pushed %d files (%d bytes) to dataset repo %s: %s",
        len(manifest.files),
        manifest.total_bytes,
        repo_id,
        commit_url,
    )
    return commit_url


def upload_folder(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str,
    commit_message: str,
    private: bool = True,
    token: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    ignore_patterns: Sequence[str] = (),
    delete_patterns: Sequence[str] | None = None,
) -> str:
    """Create ``repo_id`` (a ``repo_type`` repository, private unless ``private=False``) if
    needed and upload ``folder`` into it in one call; return the commit URL.

    Hidden files, temporaries and ``ignore_patterns`` are never uploaded; remote files matching
    ``delete_patterns`` that the folder lacks are deleted in the same commit. Every Hub call
    is tried once (huggingface_hub retries single requests below; a caller such as a Prefect
    task retries the whole push when :attr:`HubPushError.transient`). The token never reaches
    a log record, an error message or a traceback.
    """
    token = check_push_target(repo_id, token)
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token, library_name="humanbeauty")
    root = Path(folder).expanduser()
    branch = revision or "main"
    logger.info(
        "uploading %s to %s repo %s at %s (branch %s)",
        root,
        repo_type,
        repo_id,
        api.endpoint,
        branch,
    )

    def call(step: str, fn: Callable[[], _T]) -> _T:
        return _hub_call(fn, step=step, repo_id=repo_id, token=token)

    with _scrubbed_logs(token):
        call(
            "create repo",
            lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True),
        )
        info = call("read repo info", lambda: api.repo_info(repo_id, repo_type=repo_type))
        if private and info.private is False:
            raise HubPushError(
                f"{repo_id} already exists and is public; refusing to push a private "
                f"{repo_type} into it (pass private=False to publish, or choose another repo_id)"
            )
        if not private and info.private:
            logger.info("%s already exists and is private; it stays private", repo_id)
        if branch != "main":
            call(
                f"create branch {branch}",
                lambda: api.create_branch(
                    repo_id, branch=branch, repo_type=repo_type, exist_ok=True
                ),
            )
        commit = call(
            "upload",
            lambda: api.upload_folder(
                repo_id=repo_id,
                folder_path=root,
                repo_type=repo_type,
                revision=revision,
                commit_message=commit_message,
                allow_patterns=None if allow_patterns is None else list(allow_patterns),
                ignore_patterns=[*IGNORE_PATTERNS, *ignore_patterns],
                delete_patterns=None if delete_patterns is None else list(delete_patterns),
            ),
        )
    return str(getattr(commit, "commit_url", None) or commit)


class _ScrubFilter(logging.Filter):
    """Rewrites a log record that holds the token (a third-party debug line that prints a
    response echoing the Authorization header, say) before any handler writes it."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = _scrub(text, self.token)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, _scrub(formatted, self.token)
        elif record.exc_text:
            record.exc_text = _scrub(record.exc_text, self.token)
        return True


@contextmanager
def _scrubbed_logs(token: str) -> Iterator[None]:
    """Scrub the token from every record any handler of this process writes during a push."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {h for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers}
    scrub = _ScrubFilter(token)
    for handler in handlers:
        handler.addFilter(scrub)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(scrub)


def _hub_call(call: Callable[[], _T], *, step: str, repo_id: str, token: str) -> _T:
    """Run one Hub call; a failure leaves as a :class:`HubPushError` built outside the
    ``except`` block, so it carries no chained exception (see the class docstring)."""
    try:
        return call()
    except Exception as exc:
        status = _status_code(exc)
        detail = _scrub(f"{type(exc).__name__}: {exc}", token)
        transient = _is_transient(exc)
    if status is not None:
        what = f"HTTP {status}{_hint(status)}"
    else:
        what = "a connection error" if transient else "an error"
    again = " (transient: calling again resumes the push)" if transient else ""
    raise HubPushError(
        f"{step} for {repo_id} failed with {what}{again}\n{detail}",
        status_code=status,
        transient=transient,
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it (huggingface_hub wraps some HTTP errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status_code(exc: BaseException) -> int | None:
    for err in _chain(exc):
        status = getattr(getattr(err, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    # Only modules already imported can have raised: no import just to classify an error.
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, names in (
        ("httpx2", ("TimeoutException", "NetworkError", "RemoteProtocolError")),
        ("httpx", ("TimeoutException", "NetworkError", "RemoteProtocolError")),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        module = sys.modules.get(module_name)
        found += [getattr(module, name) for name in names if hasattr(module, name)]
    return tuple(found)


def _is_transient(exc: BaseException) -> bool:
    status = _status_code(exc)
    if status is not None:
        return status in TRANSIENT_STATUS or 500 <= status < 600
    chain = list(_chain(exc))
    # huggingface_hub's offline mode raises a ConnectionError subclass: no retry can fix it.
    if any(type(err).__name__ == "OfflineModeIsEnabled" for err in chain):
        return False
    transport = _transport_errors()
    return any(isinstance(err, transport) for err in chain)


def _hint(status: int) -> str:
    hints = {
        401: "the token was rejected: check HF_TOKEN or log in again",
        403: "the token has no write access to this namespace",
        404: "repository or revision not found (or not visible with this token)",
        409: "conflict: the repository or branch is in a conflicting state",
        413: "payload too large",
    }
    return f" ({hints[status]})" if status in hints else ""


def _scrub(text: str, token: str) -> str:
    """``text`` without the token, and without any other Hub token a server may echo."""
    text = text.replace(token, "***") if token else text
    return _TOKEN_LIKE.sub("hf_***", text)


_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{8,}")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
