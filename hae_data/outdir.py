"""The export folder: what the project owns in it, who is building into it, and how a new
export replaces the old one.

Three rules keep a user's files safe (SPEC 2.8):

- **Ownership.** An export folder carries a manifest, ``.humanbeauty-export.json``, listing the
  top-level entries the project wrote there. A build refuses, before any work, an output folder
  that is, contains or lies inside a source root, and a non-empty folder that is not a previous
  export of this project. A swap only ever removes entries the manifest lists.
- **One build at a time.** :class:`BuildLock` takes an OS lock (``flock``) on a file in the
  folder for the whole build; the kernel drops it when the process dies, so a crash never leaves
  a stale lock. A second build fails at once, naming the holder's pid.
- **A recoverable swap.** The new export is staged *inside* the folder (same file system, so
  every move is one ``rename``; a mount point or a read-only parent do not matter), then a
  journal is written, then entries are moved one rename at a time. A build killed at any point
  leaves either the old export or a journal from which the next build finishes the swap
  (:meth:`ExportFolder.recover`): never a folder without ``data/``, never leftovers.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "EXPORT_ENTRIES",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "BuildBusyError",
    "BuildLock",
    "BuildRefusedError",
    "ExportFolder",
    "atomic_path",
    "check_not_overlapping",
    "write_text_atomic",
]

log = logging.getLogger(__name__)

#: Names the project gives its own bookkeeping files inside an export folder.
MANIFEST_NAME = ".humanbeauty-export.json"
LOCK_NAME = ".humanbeauty.lock"
_JOURNAL_NAME = ".humanbeauty-swap.json"
_STAGING_PREFIX = ".humanbeauty-staging-"
_OLD_PREFIX = ".humanbeauty-old-"
#: The top-level entries an export writes (and a push uploads). Anything else in the folder (a
#: flow's work directory, a user's notes) is never replaced.
EXPORT_ENTRIES = (
    "data",
    "README.md",
    "LICENSE.md",
    "stats.json",
    "stats.md",
    "rejected.parquet",
    "plots",
    "report.html",
)
#: What an export of an earlier version (before manifests) held; recognised as ours.
_LEGACY_ENTRIES = frozenset({*EXPORT_ENTRIES, "_work"})
_FORMAT = 1


class BuildRefusedError(ValueError):
    """A build that must not start: the message says why and what to do instead."""


class BuildBusyError(BuildRefusedError):
    """Another build holds the lock on a folder this build needs."""


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def check_not_overlapping(output_dir: str | os.PathLike[str], roots: Iterable[str]) -> None:
    """Refuse an output folder that is, contains, or lies inside one of the source ``roots``.

    Paths are compared after resolving symlinks, so a link to a dataset counts as the dataset.
    """
    out = _real(output_dir)
    for root in roots:
        src = _real(root)
        if out == src:
            how = "is"
        elif src.is_relative_to(out):
            how = "contains"
        elif out.is_relative_to(src):
            how = "lies inside"
        else:
            continue
        raise BuildRefusedError(
            f"output folder {str(out)!r} {how} the source folder {str(src)!r}: an export "
            "replaces entries of its folder (data/, README.md...), which could destroy the "
            "raw dataset. Choose an output folder outside every source folder."
        )


class ExportFolder:
    """An export folder and the project's bookkeeping inside it (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        """Where the ownership manifest lives."""
        return self.path / MANIFEST_NAME

    def manifest(self) -> dict[str, Any] | None:
        """The manifest of a previous export, or None where there is none (or it is unreadable)."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("tool") == "humanbeauty" else None

    def owned(self) -> list[str]:
        """Top-level entries the project wrote here (what a swap may remove)."""
        manifest = self.manifest()
        if manifest is not None:
            return [str(e) for e in manifest.get("entries", []) if _plain_name(str(e))]
        if self._is_legacy_export():
            return sorted(_LEGACY_ENTRIES - {"_work"})
        return []

    def _is_legacy_export(self) -> bool:
        """An export written before manifests existed: only its entries and a HumanBeauty card."""
        try:
            names = {p.name for p in self.path.iterdir() if not p.name.startswith(".")}
            card = (self.path / "README.md").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        return bool(names) and names <= _LEGACY_ENTRIES and "pretty_name: HumanBeauty" in card

    def check_usable(self) -> None:
        """Refuse a non-empty folder that is not a previous export of this project."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise BuildRefusedError(f"output {str(self.path)!r} exists and is not a folder")
        if self.manifest() is not None or self._is_legacy_export():
            owned = set(self.owned())
            clash = [n for n in EXPORT_ENTRIES if n not in owned and (self.path / n).exists()]
            if clash:
                raise BuildRefusedError(
                    f"{str(self.path)!r} holds {', '.join(clash)}, which an export would replace "
                    "but which no earlier export wrote; move them away or choose another folder"
                )
            return
        foreign = sorted(
            p.name
            for p in self.path.iterdir()
            if not (p.name.startswith(".humanbeauty") and p.name != MANIFEST_NAME)
        )
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise BuildRefusedError(
                f"output folder {str(self.path)!r} is not empty ({shown}) and is not an export "
                f"of this project (no {MANIFEST_NAME}); nothing in it was touched. Choose an "
                "empty or new folder, or a folder a previous build exported to."
            )

    def claim(self) -> None:
        """Create the folder and its manifest (with no entries yet) if it has none, so that a
        build that stops before its first export can still be rerun into the same folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.manifest() is None:
            self._write_manifest(self.owned())

    def _write_manifest(self, entries: Iterable[str]) -> None:
        payload = {
            "tool": "humanbeauty",
            "format": _FORMAT,
            "entries": sorted(set(entries)),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _write_json(self.manifest_path, payload)

    def new_staging(self) -> Path:
        """A fresh staging folder inside the export folder (same file system as the target)."""
        self.path.mkdir(parents=True, exist_ok=True)
        stage = self.path / f"{_STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        stage.mkdir()
        return stage

    def commit(self, stage: Path) -> None:
        """Replace the owned entries with the staged ones; recoverable at every step.

        The journal is written once the staging folder is complete; from then on a rerun rolls
        the swap forward (:meth:`recover`), before it, a rerun discards the staging folder.
        """
        entries = sorted(p.name for p in stage.iterdir())
        owned = set(self.owned())
        clash = [n for n in entries if n not in owned and (self.path / n).exists()]
        if clash:
            raise BuildRefusedError(
                f"{str(self.path)!r} holds {', '.join(clash)}, not written by an earlier export: "
                "refusing to replace it"
            )
        journal = {
            "staging": stage.name,
            "old": f"{_OLD_PREFIX}{stage.name.removeprefix(_STAGING_PREFIX)}",
            "entries": entries,
            "remove": sorted(owned - set(entries)),
        }
        _write_json(self.path / _JOURNAL_NAME, journal)
        self._roll_forward(journal)

    def discard(self, stage: Path) -> None:
        """Remove a staging folder that never reached :meth:`commit`. One a journal names is
        half swapped in: it stays for :meth:`recover` (the next build) to finish."""
        journal = self._journal()
        if journal is not None and journal.get("staging") == stage.name:
            log.error(
                "the export swap in %s was interrupted; the next build into it finishes it",
                self.path,
            )
            return
        shutil.rmtree(stage, ignore_errors=True)

    def _journal(self) -> dict[str, Any] | None:
        path = self.path / _JOURNAL_NAME
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BuildRefusedError(
                f"{path} (an interrupted export's journal) is unreadable ({exc}); "
                "inspect the folder and remove the journal by hand"
            ) from None

    def _roll_forward(self, journal: dict[str, Any]) -> None:
        # Every step is one rename guarded by the state it leaves, so running this again after
        # a kill at any point continues where the first run stopped.
        stage = self.path / str(journal["staging"])
        old = self.path / str(journal["old"])
        old.mkdir(exist_ok=True)
        for name in [*journal["entries"], *journal["remove"]]:
            if not _plain_name(name):
                continue
            staged = stage / name
            incoming = name in journal["entries"]
            if incoming and not staged.exists():
                continue  # already moved in
            target = self.path / name
            if target.exists() or target.is_symlink():
                os.replace(target, old / name)
            if incoming:
                os.replace(staged, target)
        self._write_manifest(journal["entries"])
        (self.path / _JOURNAL_NAME).unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(stage, ignore_errors=True)

    def recover(self) -> None:
        """Finish a swap a killed build left half done; drop staging folders of killed builds.

        Only call it while holding the folder's :class:`BuildLock`: without the lock, another
        build's staging folder would look abandoned.
        """
        if not self.path.is_dir():
            return
        journal = self._journal()
        if journal is not None:
            log.warning("finishing the export swap a killed build left in %s", self.path)
            self._roll_forward(journal)
        for entry in self.path.iterdir():
            if entry.name.startswith((_STAGING_PREFIX, _OLD_PREFIX)) and entry.is_dir():
                log.warning("removing %s, left by an interrupted export", entry)
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(".humanbeauty") and ".tmp-" in entry.name:
                entry.unlink(missing_ok=True)  # a manifest or journal killed while written


def _plain_name(name: str) -> bool:
    """A single path component: a journal or manifest entry can never reach outside."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; when the block ends without an error it
    replaces ``path`` in one rename (a reader sees the old file or the new one, never half of
    it), otherwise it is removed. Its name is unique to this writer (``NAME.tmp-PID-RANDOM``),
    so two processes writing the same file at once never write into each other's."""
    target = Path(path)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


class BuildLock:
    """An exclusive, non-blocking OS lock on ``<folder>/.humanbeauty.lock`` for one build.

    ``flock`` locks belong to the open file, so the kernel releases them when the process exits
    however it exits; the pid written into the file only serves the error message. Within one
    process the lock is re-entrant (a flow holds it for the build, the export it calls takes it
    again), so it separates processes: two CLI runs, two deployment runs, two users.
    """

    _held: ClassVar[dict[str, tuple[int, int]]] = {}  # lock path -> (fd, holders)
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._key: str | None = None

    def acquire(self) -> BuildLock:
        """Take the lock or raise :class:`BuildBusyError` naming the build that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        with self._guard:
            if key in self._held:
                fd, holders = self._held[key]
                self._held[key] = (fd, holders + 1)
                self._key = key
                return self
            self._held[key] = (self._lock_file(), 1)
            self._key = key
        return self

    def _lock_file(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise BuildBusyError(
                f"another build is using {str(self.folder)!r} ({holder or 'holder unknown'}); "
                "wait for it to finish, or give this build another output/work folder"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}\n".encode(), 0)
        return fd

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with a waiting build)."""
        if self._key is None:
            return
        key, self._key = self._key, None
        with self._guard:
            fd, holders = self._held[key]
            if holders > 1:
                self._held[key] = (fd, holders - 1)
                return
            del self._held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> BuildLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
