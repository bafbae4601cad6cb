"""The face stage (SPEC 2.2) as resumable shards: plan records into shards, write each shard's
plan file, detect a shard (or reuse its stored detections) and apply the single-face rule.

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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hae_data.defaults import DETECTOR_LONG_SIDE, FACE_THRESHOLD
from hae_data.hashing import unit_hash
from hae_data.images import DEFAULT_DECODE_PIXEL_BUDGET
from hae_data.outdir import write_text_atomic
from hae_data.pipeline.stage_result import StageResult
from hae_data.records import Face, Record

__all__ = [
    "FaceSettings",
    "ShardOutcome",
    "ShardStore",
    "detect_shard",
    "plan_shards",
    "read_plan",
    "remove_plans",
    "shard_bounds",
    "shard_fingerprint",
    "write_plans",
]

log = logging.getLogger(__name__)


def shard_bounds(shard_size: int) -> tuple[int, int]:
    """``(smallest, largest)`` shard :func:`plan_shards` makes for ``shard_size`` (a source with
    fewer images than the smallest is one shard of its own)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return max(1, -(-3 * shard_size // 4)), max(1, -(-3 * shard_size // 2))


def plan_shards(records: Sequence[Record], shard_size: int) -> list[list[Record]]:
    """Cut records into shards of ``3/4`` to ``3/2`` of ``shard_size``, never mixing sources.

    Boundaries are content-defined: within a source, in file-name order, a shard may end after
    a file whose name hashes below ``4 / shard_size`` once it holds at least its smallest size,
    and must end at its largest; a short tail is merged into the source's previous shard (or
    the two are cut evenly when that would be too large). Adding or removing a file therefore
    changes the shard it falls in and at most the next one or two (until a boundary is found
    again), not every shard after it, so a grown dataset re-detects a shard or two, not the
    rest of the source. The same inputs always give the same shards.
    """
    smallest, largest = shard_bounds(shard_size)
    cut = 4.0 / shard_size
    by_source: dict[str, list[Record]] = {}
    for rec in records:
        by_source.setdefault(rec.source, []).append(rec)
    shards: list[list[Record]] = []
    for source in sorted(by_source):
        own: list[list[Record]] = []
        current: list[Record] = []
        for rec in sorted(by_source[source], key=lambda r: r.file_name):
            current.append(rec)
            if len(current) >= largest or (
                len(current) >= smallest and unit_hash(rec.file_name, "shard") < cut
            ):
                own.append(current)
                current = []
        if current and own and len(current) < smallest:
            tail = own.pop() + current
            if len(tail) > largest:
                half = (len(tail) + 1) // 2
                own += [tail[:half], tail[half:]]
            else:
                own.append(tail)
        elif current:
            own.append(current)
        shards += own
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
        return write_text_atomic(self.path(key), json.dumps(payload))


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
    #: None: the device's default (``hae_data.defaults.DETECTOR_BATCH_CPU`` / ``_GPU``).
    batch_size: int | None = None
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
        from hae_data.faces.detectors import check_detector_options

        check_device(self.device, local=local)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        check_detector_options(long_side=self.long_side, batch_size=self.batch_size)
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
