"""The build's stages as plain functions over records, for the Prefect flow (or any runner).

Data moves one way: load (per source) -> face filter (per shard, resumable) -> finalise
(de-duplicate, normalise per source, levels, QA, split) -> export. Each stage returns a
:class:`StageResult` (what went on, what was dropped and why), so nothing is lost on the way.

Resumability: a finished shard leaves a completion file under ``work_dir`` named by a
fingerprint of its inputs (each file's relative path, size and modification time, plus the
settings that change detections: long side, weights, lowest stored confidence). The inode
change time is part of it: an edit that keeps the size and restores the modification time
(``cp -p``, ``rsync -t``, ``exiftool -P``) cannot restore the change time, so it is detected
again. A completion file holds each image's detections, not the records: a rerun applies the
face rule and this run's labels to them, so a corrected label file or a new threshold reuses
every shard, while a changed image changes the fingerprint and is detected again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hae_data.defaults import DETECTOR_BATCH_SIZE, DETECTOR_LONG_SIDE, FACE_THRESHOLD
from hae_data.hashing import unit_hash
from hae_data.images import DEFAULT_DECODE_PIXEL_BUDGET
from hae_data.near_duplicates import DEFAULT_MAX_DISTANCE, drop_near_duplicates
from hae_data.outdir import BuildLock, ExportFolder, check_not_overlapping
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
    "check_build_options",
    "detect_shard",
    "drop_duplicates",
    "finalise",
    "load_source",
    "open_build",
    "plan_shards",
    "read_build_spec",
    "read_plan",
    "remove_plans",
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
    """Which sources to build from: name -> (root folder, loader options); ``settings``: build
    settings the config fixes, which win over the flow's defaults (``near_duplicate_distance``)."""

    sources: dict[str, tuple[str, dict[str, Any]]]
    settings: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Fail fast, before any work, on unknown names, bad options or missing folders."""
        from hae_data.sources import SOURCES

        if not self.sources:
            raise ValueError("no sources given: name at least one source and its root folder")
        from hae_data.protocol import check_build_sources
        from hae_data.sources import TRAINING_SOURCES

        check_build_sources(self.sources)
        raw = sorted(set(self.sources) & set(TRAINING_SOURCES))
        if "humanbeauty_release" in self.sources and raw:
            # The release's rows carry their original source's name with scores already in
            # [0,1]: normalised together with the raw loader's 1-10 scores they would be wrong.
            raise ValueError(
                f"humanbeauty_release cannot be built together with the raw sources {raw}: "
                "its rows already carry those sources' normalised scores"
            )
        for name, (root, options) in self.sources.items():
            if name not in SOURCES:
                raise ValueError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
            if not Path(root).is_dir():
                raise ValueError(f"source {name!r}: root folder {root!r} does not exist")
            allowed = _loader_options(SOURCES[name])
            unknown = set(options) - allowed
            if unknown:
                raise ValueError(
                    f"source {name!r}: unknown option(s) {sorted(unknown)}; "
                    f"allowed: {sorted(allowed) or 'none'}"
                )


def check_build_options(
    *,
    shard_size: int,
    test_fraction: float,
    quick_per_source: int,
    shard_max_mb: int,
    row_group_max_mb: int,
    task_runner: str,
    dask_workers: int,
    hub_repo_id: str | None = None,
    near_duplicate_distance: int | None = None,
) -> None:
    """Check a build's scalar options before any work: ``ValueError`` says which and why.

    (The sources, the face settings and the output folder have checks of their own:
    :meth:`BuildSpec.validate`, :meth:`FaceSettings.validate`,
    :class:`hae_data.outdir.ExportFolder`.) With ``hub_repo_id``, the repository id's form and
    that a token is available are checked too, not discovered after the whole build.
    """
    from hae_data.split import check_split_options

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    check_split_options(test_fraction, quick_per_source)
    if shard_max_mb < 1 or row_group_max_mb < 1:
        raise ValueError(
            f"shard_max_mb and row_group_max_mb must be >= 1, got {shard_max_mb}, "
            f"{row_group_max_mb}"
        )
    if task_runner not in ("threads", "dask"):
        raise ValueError(f"task_runner must be 'threads' or 'dask', got {task_runner!r}")
    if dask_workers < 1:
        raise ValueError(f"dask_workers must be >= 1, got {dask_workers}")
    if near_duplicate_distance is not None and not 0 <= near_duplicate_distance <= 64:
        raise ValueError(
            f"near_duplicate_distance must be None or 0-64 bits, got {near_duplicate_distance}"
        )
    if hub_repo_id is not None:
        from hae_data.hub import check_push_target

        check_push_target(hub_repo_id)


@contextmanager
def open_build(
    output_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    source_roots: Iterable[str],
) -> Iterator[str]:
    """Everything a build checks and holds around its work; yields this build's id.

    Before any work: the output folder must not overlap a source root and must be empty, new or
    a previous export (:class:`hae_data.outdir.ExportFolder`), else
    :class:`~hae_data.outdir.BuildRefusedError`. Then the output folder (and the work folder,
    where it lies elsewhere) is locked for the whole build (a second build gets
    :class:`~hae_data.outdir.BuildBusyError`), an export swap a killed build left half done is
    finished, and plan files of killed builds are removed. On the way out this build's plans go.
    """
    out, work = Path(output_dir), Path(work_dir)
    check_not_overlapping(out, source_roots)
    folder = ExportFolder(out)
    folder.check_usable()
    with ExitStack() as stack:
        stack.enter_context(BuildLock(out))
        if not work.resolve().is_relative_to(out.resolve()):
            stack.enter_context(BuildLock(work))
        folder.claim()
        folder.recover()
        remove_plans(work)  # under the locks: only killed builds' plans can be there
        build_id = uuid.uuid4().hex[:12]
        try:
            yield build_id
        finally:
            remove_plans(work, build_id)


def _loader_options(cls: type) -> set[str]:
    """The keyword options a source loader's constructor takes (besides its root)."""
    import inspect

    return set(inspect.signature(cls.__init__).parameters) - {"self", "root"}


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
        unknown = set(raw) - {"sources", "annotations", *_CONFIG_SETTINGS}
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
        if min_raters is not None and cls is not None and "min_raters" in _loader_options(cls):
            options.setdefault("min_raters", min_raters)
        specs[name] = (root, options)
    spec = BuildSpec(sources=specs, settings=_config_settings(raw))
    spec.validate()
    return spec


#: Build settings a sources config may fix, each with its check.
_CONFIG_SETTINGS = {
    "near_duplicate_distance": lambda v: v is None or (isinstance(v, int) and v >= 0),
}


def _config_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The build settings of a sources config; ``ValueError`` naming a bad one."""
    settings = {k: raw[k] for k in _CONFIG_SETTINGS if k in raw}
    bad = [k for k, v in settings.items() if not _CONFIG_SETTINGS[k](v)]
    if bad:
        raise ValueError(f"sources config: bad value for {bad}: {[settings[k] for k in bad]}")
    return settings


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
    """Cut records into shards of about ``shard_size`` (at most 4x), never mixing sources.

    Boundaries are content-defined: within a source, in file-name order, a shard ends after a
    file whose name hashes below ``1 / shard_size``. Adding or removing a file therefore
    changes only the shard it falls in (and its fingerprint), not every shard after it, so a
    grown dataset re-detects a shard, not the rest of the source.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    by_source: dict[str, list[Record]] = {}
    for rec in records:
        by_source.setdefault(rec.source, []).append(rec)
    cut, cap = 1.0 / shard_size, 4 * shard_size
    shards: list[list[Record]] = []
    for source in sorted(by_source):
        current: list[Record] = []
        for rec in sorted(by_source[source], key=lambda r: r.file_name):
            current.append(rec)
            if unit_hash(rec.file_name, "shard") < cut or len(current) >= cap:
                shards.append(current)
                current = []
        if current:
            shards.append(current)
    return shards


def shard_fingerprint(records: Sequence[Record], settings: Mapping[str, Any]) -> str:
    """A key for a shard's inputs: each file's name, size, mtime and ctime, and the settings.

    Stat-based rather than a hash of every byte, so checking for a finished shard costs no I/O
    beyond a ``stat`` per file; the content hash (``image_id``) is computed when the shard runs.
    The ctime catches same-size edits that put the mtime back; the price is that copying or
    ``chmod``-ing a dataset detects it again (a cost, never a wrong result).
    """
    h = hashlib.sha256()
    h.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    for rec in records:
        try:
            st = os.stat(rec.image_path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"\x00{rec.source}\x00{rec.file_name}\x00{stamp}".encode())
    return h.hexdigest()


class ShardStore:
    """JSON files of finished shards: ``<work_dir>/<stage>/<key>.json``, written atomically."""

    def __init__(self, work_dir: str | os.PathLike[str], stage: str) -> None:
        self.folder = Path(work_dir) / stage
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Where the payload stored under ``key`` lives."""
        return self.folder / f"{key}.json"

    def load(self, key: str) -> Any | None:
        """The stored payload, or None if there is none (or its file is unreadable)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable completion file %s (%s); redoing shard", path, exc)
            return None

    def save(self, key: str, payload: Any) -> Path:
        """Store ``payload`` (JSON-able) under ``key`` (temporary name, then rename)."""
        path = self.path(key)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        os.replace(tmp, path)
        return path


def write_plans(
    shards: Sequence[Sequence[Record]], work_dir: str | os.PathLike[str], build_id: str
) -> list[str]:
    """Write each shard's records to ``<work_dir>/plans/<build_id>/shard-NNNNN.json``.

    A runner then ships a path per task instead of the records themselves: Prefect stores a
    flow run's parameters on its server, and a hundred thousand records are far too many. The
    folder is this build's own (:func:`remove_plans` deletes it), so two builds never read or
    delete each other's plans. Returns the paths.
    """
    store = ShardStore(Path(work_dir) / "plans", build_id)
    return [
        str(store.save(f"shard-{i:05d}", [asdict(r) for r in shard]))
        for i, shard in enumerate(shards)
    ]


def remove_plans(work_dir: str | os.PathLike[str], build_id: str | None = None) -> None:
    """Delete one build's plan folder, or (``build_id=None``) every build's: only call that
    while holding the work folder's lock, when no other build can be using them."""
    plans = Path(work_dir) / "plans"
    if not plans.is_dir():
        return
    for folder in [plans / build_id] if build_id else list(plans.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
        if folder.is_file():
            folder.unlink()


def read_plan(path: str | os.PathLike[str]) -> list[Record]:
    """The records of a shard written by :func:`write_plans`."""
    p = Path(path)
    raw = ShardStore(p.parent.parent, p.parent.name).load(p.stem)
    if raw is None:
        raise FileNotFoundError(f"shard plan {p} is missing or unreadable")
    return [_record_from_dict(r) for r in raw]


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
    batch_size: int = DETECTOR_BATCH_SIZE
    threshold: float = FACE_THRESHOLD
    long_side: int = DETECTOR_LONG_SIDE
    weights: str | None = None
    min_face_size: float = 0.0
    workers: int | None = None
    #: Pixels the decode threads may hold at once (see ``hae_data.images.PixelBudget``).
    decode_pixel_budget: int = DEFAULT_DECODE_PIXEL_BUDGET
    #: Parts whose images are rejected by the single-face rule; other parts are only annotated.
    filter_parts: tuple[str, ...] = ("overall",)

    @property
    def min_score(self) -> float:
        """Lowest confidence stored: the reference 0.5, or the threshold if it is lower."""
        from hae_data.faces import DEFAULT_MIN_SCORE

        return min(self.threshold, DEFAULT_MIN_SCORE)

    def validate(self, *, local: bool = True) -> None:
        """Fail fast on settings that could only fail later, inside every detection task.

        ``local=False`` when detection runs elsewhere (Dask workers): the device name is
        checked, not whether this process has that device."""
        from hae_data.faces import check_device

        check_device(self.device, local=local)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.batch_size < 1 or self.long_side < 32:
            raise ValueError("batch_size must be >= 1 and long_side >= 32")
        if self.min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0 pixels, got {self.min_face_size}")
        if self.weights is not None and not Path(self.weights).is_file():
            raise ValueError(f"weights file {self.weights!r} does not exist")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.decode_pixel_budget < 1:
            raise ValueError(f"decode_pixel_budget must be >= 1, got {self.decode_pixel_budget}")

    def fingerprint_fields(self) -> dict[str, Any]:
        """What decides the stored detections: never the rule applied to them (threshold, face
        size, parts), nor the device or batch size, so changing those reuses every shard."""
        weights = None
        if self.weights is not None:
            st = os.stat(self.weights)
            weights = f"{Path(self.weights).name}:{st.st_size}:{st.st_mtime_ns}"
        from hae_data.phash import PHASH_VERSION

        # The perceptual hashes are stored with the detections: another hash, another shard.
        return {
            "long_side": self.long_side,
            "weights": weights,
            "min_score": self.min_score,
            "phash": PHASH_VERSION,
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

    key = (
        settings.device,
        settings.weights,
        settings.long_side,
        settings.batch_size,
        settings.min_score,
    )
    if key not in _DETECTORS:
        _DETECTORS[key] = load_detector(
            device=settings.device,
            weights=settings.weights,
            long_side=settings.long_side,
            batch_size=settings.batch_size,
            min_score=settings.min_score,
        )
    return _DETECTORS[key]


def detect_shard(
    records: Sequence[Record], settings: FaceSettings, work_dir: str | os.PathLike[str]
) -> ShardOutcome:
    """Run the face stage on one shard, reusing its stored detections from an earlier run.

    What is stored is each file's detection result (image id, size, every face, or why it
    could not be decoded), keyed by file name; the single-face rule and the labels always come
    from this run. So a corrected label file or another threshold never needs the detector.
    """
    from hae_data.faces import decide_records, detect_items

    store = ShardStore(work_dir, "faces")
    fingerprint = shard_fingerprint(records, settings.fingerprint_fields())
    stored = store.load(fingerprint)
    names = {r.file_name for r in records}
    reused = isinstance(stored, dict) and set(stored) == names
    if reused:
        results = {name: _face_result_from_dict(raw) for name, raw in stored.items()}
        log.info("faces: shard %s... already done (%d records)", fingerprint[:12], len(records))
    else:
        started = time.perf_counter()
        with _DETECT_LOCK:
            detected = detect_items(
                records,
                lambda r: r.image_path,
                _detector(settings),
                batch_size=settings.batch_size,
                workers=settings.workers,
                pixel_budget=settings.decode_pixel_budget,
            )
            results = {rec.file_name: res for rec, res in detected}
        store.save(fingerprint, {name: asdict(res) for name, res in results.items()})
        seconds = time.perf_counter() - started
        log.info(
            "faces: shard %s... (%s, %d images) detected in %.1f s, %.1f images/s",
            fingerprint[:12],
            records[0].source if records else "-",
            len(records),
            seconds,
            len(records) / max(seconds, 1e-9),
        )
    kept, rejected = decide_records(
        ((rec, results[rec.file_name]) for rec in records),
        threshold=settings.threshold,
        min_face_size=settings.min_face_size,
        filter_parts=settings.filter_parts,  # type: ignore[arg-type]
    )
    return ShardOutcome(
        result=StageResult(records=kept, rejections=rejected),
        reused=reused,
        fingerprint=fingerprint,
    )


def _face_result_from_dict(raw: dict[str, Any]) -> Any:
    from hae_data.faces import FaceResult

    faces = raw.pop("faces", None)
    return FaceResult(**raw, faces=None if faces is None else [Face(**f) for f in faces])


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
            Rejection.from_record(
                rec, "duplicate_image", "dedupe", f"same bytes as {first.source}/{first.file_name}"
            )
        )
    return result


def finalise(
    records: Iterable[Record],
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    quick_per_source: int = DEFAULT_QUICK_PER_SOURCE,
    near_duplicate_distance: int | None = DEFAULT_MAX_DISTANCE,
) -> StageResult:
    """De-duplicate (same bytes, then near-duplicates within ``near_duplicate_distance`` bits of
    perceptual hash; None: off), min-max normalise per source, set levels and QA pairs, and
    split (a near-duplicate group gets one split)."""
    deduped = drop_duplicates(records)
    near = drop_near_duplicates(deduped.records, max_distance=near_duplicate_distance)
    kept, rejected = normalise_by_source(near.records)
    for rec in kept:
        make_qa(apply_levels(rec))
    assign_splits(kept, test_fraction=test_fraction, quick_per_source=quick_per_source)
    return StageResult(records=kept, rejections=deduped.rejections + near.rejections + rejected)
