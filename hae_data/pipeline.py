"""The build's stages as plain functions over records, for the Prefect flow (or any runner).

Data moves one way: load (per source) -> face filter (per shard, resumable) -> finalise
(de-duplicate, normalise per source, levels, QA, split) -> export. Each stage returns a
:class:`StageResult` (what went on, what was dropped and why), so nothing is lost on the way.

Resumability: a finished shard leaves a completion file under ``work_dir`` named by a
fingerprint of its inputs (each file's relative path, size and modification time, plus the
detector settings). A rerun finds the file and reuses the shard's result instead of detecting
again; a changed image or setting changes the fingerprint, so stale results are never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hae_data.qa import make_qa
from hae_data.records import Face, Record, Rejection
from hae_data.scores import apply_levels, normalise_by_source
from hae_data.split import DEFAULT_QUICK_PER_SOURCE, DEFAULT_TEST_FRACTION, assign_splits

__all__ = [
    "BuildSpec",
    "FaceSettings",
    "ShardOutcome",
    "ShardStore",
    "StageResult",
    "detect_shard",
    "drop_duplicates",
    "finalise",
    "load_source",
    "plan_shards",
    "read_build_spec",
    "read_plan",
    "shard_fingerprint",
    "write_plans",
]

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """Records that went on and rejections that did not, from one stage."""

    records: list[Record] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def extend(self, other: StageResult) -> StageResult:
        """Append another result's records and rejections; returns self."""
        self.records.extend(other.records)
        self.rejections.extend(other.rejections)
        return self


@dataclass(frozen=True)
class BuildSpec:
    """Which sources to build from: name -> (root folder, loader options)."""

    sources: dict[str, tuple[str, dict[str, Any]]]

    def validate(self) -> None:
        """Fail fast, before any work, on unknown names, bad options or missing folders."""
        import inspect

        from hae_data.sources import SOURCES

        if not self.sources:
            raise ValueError("no sources given: name at least one source and its root folder")
        for name, (root, options) in self.sources.items():
            if name not in SOURCES:
                raise ValueError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
            if not Path(root).is_dir():
                raise ValueError(f"source {name!r}: root folder {root!r} does not exist")
            allowed = set(inspect.signature(SOURCES[name].__init__).parameters) - {"self", "root"}
            unknown = set(options) - allowed
            if unknown:
                raise ValueError(
                    f"source {name!r}: unknown option(s) {sorted(unknown)}; "
                    f"allowed: {sorted(allowed) or 'none'}"
                )


def read_build_spec(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    sources: Mapping[str, Any] | None = None,
    annotations: str | None = None,
    min_raters: int | None = None,
) -> BuildSpec:
    """Merge a YAML/JSON config file (or mapping) with explicit ``sources``/``annotations``.

    The config's shape: ``sources: {name: root | {root: ..., options: {...}}}`` and an optional
    ``annotations: root`` (the 12-dimension part). Explicit arguments win over the file.
    ``min_raters`` is passed to every loader that takes it. Raises ``ValueError`` with a clear
    message on anything malformed.
    """
    import inspect

    import yaml

    from hae_data.sources import SOURCES

    raw: dict[str, Any] = {}
    if isinstance(config, Mapping):
        raw = dict(config)
    elif config is not None:
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"sources config {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"sources config {str(path)!r} is not valid YAML/JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"sources config {str(path)!r} must be a mapping with 'sources'")
        unknown = set(raw) - {"sources", "annotations"}
        if unknown:
            raise ValueError(f"sources config: unknown key(s) {sorted(unknown)}")
    entries: dict[str, Any] = dict(raw.get("sources") or {})
    entries.update(sources or {})
    ann = annotations if annotations is not None else raw.get("annotations")
    if ann:
        entries["humanbeauty_50k"] = ann
    specs: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, entry in entries.items():
        if isinstance(entry, str | os.PathLike):
            root, options = str(entry), {}
        elif isinstance(entry, Mapping) and "root" in entry:
            root, options = str(entry["root"]), dict(entry.get("options") or {})
        else:
            raise ValueError(
                f"source {name!r}: expected a folder or {{root: ..., options: ...}}, got {entry!r}"
            )
        cls = SOURCES.get(name)
        if (
            min_raters is not None
            and cls is not None
            and "min_raters" in inspect.signature(cls.__init__).parameters
        ):
            options.setdefault("min_raters", min_raters)
        specs[name] = (root, options)
    spec = BuildSpec(sources=specs)
    spec.validate()
    return spec


def load_source(
    name: str, root: str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> StageResult:
    """Read one source dataset from its root folder with its registered loader."""
    from hae_data.sources import SOURCES

    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    loader = SOURCES[name](Path(root), **dict(options or {}))
    result = StageResult()
    for item in loader.iter_items():
        if isinstance(item, Rejection):
            result.rejections.append(item)
        else:
            result.records.append(item)
    log.info(
        "%s: %d records, %d rejections from %s",
        name,
        len(result.records),
        len(result.rejections),
        root,
    )
    return result


def plan_shards(records: Sequence[Record], shard_size: int) -> list[list[Record]]:
    """Cut records into shards of at most ``shard_size``, never mixing sources, in file order
    (so adding images to one source leaves the other sources' shards and fingerprints alone)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    by_source: dict[str, list[Record]] = {}
    for rec in records:
        by_source.setdefault(rec.source, []).append(rec)
    shards = []
    for source in sorted(by_source):
        recs = sorted(by_source[source], key=lambda r: r.file_name)
        shards.extend(recs[i : i + shard_size] for i in range(0, len(recs), shard_size))
    return shards


def shard_fingerprint(records: Sequence[Record], settings: Mapping[str, Any]) -> str:
    """A key for a shard's inputs: each file's name, size and mtime, and the settings.

    Stat-based rather than a hash of every byte, so checking for a finished shard costs no I/O
    beyond a ``stat`` per file; the content hash (``image_id``) is computed when the shard runs.
    """
    h = hashlib.sha256()
    h.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    for rec in records:
        try:
            st = os.stat(rec.image_path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"\x00{rec.source}\x00{rec.file_name}\x00{stamp}".encode())
    return h.hexdigest()


class ShardStore:
    """Completion files for finished shards: ``<work_dir>/<stage>/<fingerprint>.json``."""

    def __init__(self, work_dir: str | os.PathLike[str], stage: str) -> None:
        self.folder = Path(work_dir) / stage
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, fingerprint: str) -> Path:
        """Where the result of the shard with this fingerprint lives."""
        return self.folder / f"{fingerprint}.json"

    def load(self, fingerprint: str) -> StageResult | None:
        """The stored result, or None if the shard has not finished (or its file is unreadable)."""
        path = self.path(fingerprint)
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return StageResult(
                records=[_record_from_dict(r) for r in raw["records"]],
                rejections=[Rejection(**r) for r in raw["rejections"]],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable completion file %s (%s); redoing shard", path, exc)
            return None

    def save(self, fingerprint: str, result: StageResult) -> Path:
        """Store a finished shard's result atomically (temporary name, then rename)."""
        path = self.path(fingerprint)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        payload = {
            "records": [asdict(r) for r in result.records],
            "rejections": [r.to_row() for r in result.rejections],
        }
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        os.replace(tmp, path)
        return path


def write_plans(shards: Sequence[Sequence[Record]], work_dir: str | os.PathLike[str]) -> list[str]:
    """Write each shard's records to ``<work_dir>/plans/shard-NNNNN.json``; returns the paths.

    A runner then ships a path per task instead of the records themselves: Prefect stores a
    flow run's parameters on its server, and a hundred thousand records are far too many.
    """
    store = ShardStore(work_dir, "plans")
    for stale in store.folder.glob("shard-*.json"):
        stale.unlink()
    return [
        str(store.save(f"shard-{i:05d}", StageResult(records=list(shard))))
        for i, shard in enumerate(shards)
    ]


def read_plan(path: str | os.PathLike[str]) -> list[Record]:
    """The records of a shard written by :func:`write_plans`."""
    p = Path(path)
    result = ShardStore(p.parent.parent, p.parent.name).load(p.stem)
    if result is None:
        raise FileNotFoundError(f"shard plan {p} is missing or unreadable")
    return result.records


def _record_from_dict(raw: dict[str, Any]) -> Record:
    faces = raw.pop("faces", None)
    rec = Record(**raw)
    rec.faces = None if faces is None else [Face(**f) for f in faces]
    return rec


@dataclass(frozen=True)
class FaceSettings:
    """How the face stage runs (SPEC 2.2). Only the fields that change results enter a shard's
    fingerprint: a build started on the CPU resumes on a GPU without detecting again."""

    device: str = "auto"
    batch_size: int = 32
    threshold: float = 0.9
    long_side: int = 640
    weights: str | None = None
    min_face_size: float = 0.0
    workers: int | None = None
    #: Parts whose images are rejected by the single-face rule; other parts are only annotated.
    filter_parts: tuple[str, ...] = ("overall",)

    def fingerprint_fields(self) -> dict[str, Any]:
        """The settings that decide a shard's output (never the device or batch size)."""
        weights = None
        if self.weights is not None:
            st = os.stat(self.weights)
            weights = f"{Path(self.weights).name}:{st.st_size}:{st.st_mtime_ns}"
        return {
            "threshold": self.threshold,
            "long_side": self.long_side,
            "weights": weights,
            "min_face_size": self.min_face_size,
            "filter_parts": list(self.filter_parts),
        }


@dataclass
class ShardOutcome:
    """A face-stage shard's result and whether it came from a completion file."""

    result: StageResult
    reused: bool
    fingerprint: str


_DETECTORS: dict[tuple[Any, ...], Any] = {}
# One shard at a time per process: the detector batches and decodes in parallel already, and
# two shards on one GPU (or on a few CPU cores) would only contend for it.
_DETECT_LOCK = threading.Lock()


def _detector(settings: FaceSettings) -> Any:
    """One detector per process and settings: loading the network once, not once per shard."""
    from hae_data.faces import load_detector

    key = (settings.device, settings.weights, settings.long_side, settings.batch_size)
    if key not in _DETECTORS:
        _DETECTORS[key] = load_detector(
            device=settings.device,
            weights=settings.weights,
            long_side=settings.long_side,
            batch_size=settings.batch_size,
        )
    return _DETECTORS[key]


def detect_shard(
    records: Sequence[Record], settings: FaceSettings, work_dir: str | os.PathLike[str]
) -> ShardOutcome:
    """Run the face stage on one shard, or reuse its completion file from an earlier run."""
    from hae_data.faces import filter_records

    store = ShardStore(work_dir, "faces")
    fingerprint = shard_fingerprint(records, settings.fingerprint_fields())
    done = store.load(fingerprint)
    if done is not None:
        log.info("faces: shard %s... already done (%d records)", fingerprint[:12], len(records))
        return ShardOutcome(result=done, reused=True, fingerprint=fingerprint)
    with _DETECT_LOCK:
        kept, rejected = filter_records(
            records,
            _detector(settings),
            threshold=settings.threshold,
            min_face_size=settings.min_face_size,
            batch_size=settings.batch_size,
            workers=settings.workers,
            filter_parts=settings.filter_parts,  # type: ignore[arg-type]
        )
    result = StageResult(records=kept, rejections=rejected)
    store.save(fingerprint, result)
    return ShardOutcome(result=result, reused=False, fingerprint=fingerprint)


def drop_duplicates(records: Iterable[Record]) -> StageResult:
    """Keep one record per (part, image_id): the first in (source, file name) order, so the
    choice does not depend on arrival order. The other copies (the same photo in two sources,
    say) become ``duplicate_image`` rejections naming the copy that was kept."""
    result = StageResult()
    seen: dict[tuple[str, str], Record] = {}
    for rec in sorted(records, key=lambda r: (r.source, r.file_name)):
        key = (rec.part, rec.image_id or "")
        first = seen.get(key)
        if first is None or rec.image_id is None:
            seen[key] = rec
            result.records.append(rec)
            continue
        result.rejections.append(
            Rejection(
                source=rec.source,
                file_name=rec.file_name,
                image_path=rec.image_path,
                image_id=rec.image_id,
                reason="duplicate_image",
                stage="dedupe",
                detail=f"same bytes as {first.source}/{first.file_name}",
            )
        )
    return result


def finalise(
    records: Iterable[Record],
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    quick_per_source: int = DEFAULT_QUICK_PER_SOURCE,
) -> StageResult:
    """De-duplicate, min-max normalise per source, set levels and QA pairs, and split."""
    deduped = drop_duplicates(records)
    kept, rejected = normalise_by_source(deduped.records)
    for rec in kept:
        make_qa(apply_levels(rec))
    assign_splits(kept, test_fraction=test_fraction, quick_per_source=quick_per_source)
    return StageResult(records=kept, rejections=deduped.rejections + rejected)
