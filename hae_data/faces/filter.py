"""Streaming face filtering: decode in a thread pool, detect in batches, decide, never stop.

Decoding (file read, SHA-256, PIL decode at reduced size, resize, perceptual hashes of the
reduced pixels for the near-duplicate stage) runs in a thread pool: PIL's decoders, OpenCV's
resize and DCT and hashlib all release the GIL, and threads hand numpy arrays to the detector
without pickling them. The pool works ahead of the detector (``prefetch`` items), so a
GPU batch is being assembled while the previous one runs. Results come back in input order, one
per input: a file that cannot be read or decoded carries its reason, and a batch that fails in
the detector is retried image by image, so one bad file costs one rejection and nothing else.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from hae_data.defaults import DETECTOR_BATCH_CPU, FACE_THRESHOLD
from hae_data.faces.decision import count_faces, decide
from hae_data.faces.detectors import Detector
from hae_data.images import (
    DEFAULT_DECODE_PIXEL_BUDGET,
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    PixelBudget,
    ReducedImage,
    read_reduced,
)
from hae_data.phash import phashes
from hae_data.records import Face, Part, Record, Rejection

__all__ = [
    "DETECT_ERROR",
    "STAGE",
    "FaceResult",
    "FilterStats",
    "decide_records",
    "default_workers",
    "detect_items",
    "filter_records",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``Rejection.stage`` of everything this module rejects.
STAGE = "faces"
#: Reason when the detector itself failed on an image (decoded fine, detection raised).
DETECT_ERROR = "detect_error"


def default_workers() -> int:
    """Decode threads by default: one per core, at most 32."""
    return max(1, min(32, os.cpu_count() or 1))


@dataclass(slots=True)
class FaceResult:
    """What happened to one input: decoded size and detections, or why it failed."""

    image_id: str | None
    width: int | None
    height: int | None
    faces: list[Face] | None
    reason: str | None = None
    detail: str = ""
    #: Perceptual hashes of the decoded image (:func:`hae_data.phash.phashes`).
    phash: list[str] | None = None

    @property
    def decoded(self) -> bool:
        """Whether the image decoded and went through the detector."""
        return self.faces is not None


@dataclass(slots=True)
class FilterStats:
    """Counts of a run, for the progress line and the summary."""

    total: int | None = None
    done: int = 0
    kept: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)

    def rate(self) -> float:
        """Inputs per second since the start."""
        return self.done / max(time.perf_counter() - self.started, 1e-9)

    def progress(self) -> str:
        """One line: done (of total), rate, ETA when the total is known."""
        rate = self.rate()
        if self.total:
            eta = (self.total - self.done) / max(rate, 1e-9)
            return f"{self.done}/{self.total} images, {rate:.1f} images/s, ETA {eta:.0f} s"
        return f"{self.done} images, {rate:.1f} images/s"

    def summary(self) -> str:
        """One line: processed, kept, rejections by reason, rate."""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items())) or "none"
        return (
            f"{self.done} images, {self.kept} kept, rejected: {reasons}; {self.rate():.1f} images/s"
        )


_Loaded = tuple[ReducedImage, list[str]] | ImageDecodeError


def _load(path: str, long_side: int, max_pixels: int, budget: PixelBudget) -> _Loaded:
    try:
        reduced = read_reduced(path, long_side=long_side, max_pixels=max_pixels, budget=budget)
        # Hashed here, in the decode thread, from the pixels just decoded: no second read.
        return reduced, phashes(reduced.pixels)
    except ImageDecodeError as exc:
        return exc
    except Exception as exc:  # a worker must hand back a result for every input
        return ImageDecodeError("corrupt", f"{path}: {type(exc).__name__}: {exc}")


def _detect_chunk(
    detector: Detector, chunk: list[tuple[T, _Loaded]]
) -> Iterator[tuple[T, FaceResult]]:
    decoded = [(i, d[0]) for i, (_, d) in enumerate(chunk) if not isinstance(d, ImageDecodeError)]
    faces: dict[int, list[Face] | Exception] = {}
    if decoded:
        try:
            found = detector.detect_batch(
                [d.pixels for _, d in decoded], [(d.width, d.height) for _, d in decoded]
            )
            faces.update(zip((i for i, _ in decoded), found, strict=True))
        except Exception as exc:
            log.warning("detector failed on a batch (%s); retrying image by image", exc)
            for i, d in decoded:
                try:
                    faces[i] = detector.detect_batch([d.pixels], [(d.width, d.height)])[0]
                except Exception as one:
                    faces[i] = one
    for i, (item, loaded) in enumerate(chunk):
        if isinstance(loaded, ImageDecodeError):
            yield item, FaceResult(None, None, None, None, loaded.reason, loaded.detail)
            continue
        d, hashes = loaded
        got = faces[i]
        if isinstance(got, Exception):
            detail = f"{type(got).__name__}: {got}"
            yield (
                item,
                FaceResult(d.image_id, d.width, d.height, None, DETECT_ERROR, detail, hashes),
            )
        else:
            yield item, FaceResult(d.image_id, d.width, d.height, got, phash=hashes)


def detect_items(
    items: Iterable[T],
    path_of: Callable[[T], str | os.PathLike[str]],
    detector: Detector,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    window_batches: int | None = None,
    pixel_budget: int | PixelBudget = DEFAULT_DECODE_PIXEL_BUDGET,
) -> Iterator[tuple[T, FaceResult]]:
    """``(item, result)`` for every item, in input order, streaming.

    ``batch_size`` defaults to the detector's; the detector is handed ``window_batches`` batches
    of decoded images at a time (default 4 on a GPU, 1 otherwise) so it can group them by shape.
    The decode threads share ``pixel_budget`` (a count of pixels, or a :class:`PixelBudget`), so
    peak decode memory does not grow with ``workers``.
    """
    budget = pixel_budget if isinstance(pixel_budget, PixelBudget) else PixelBudget(pixel_budget)
    batch = batch_size or getattr(detector, "batch_size", DETECTOR_BATCH_CPU)
    window = window_batches or (4 if "cuda" in getattr(detector, "name", "") else 1)
    target = batch * window
    n_workers = workers or default_workers()
    prefetch = target * 2 + n_workers
    long_side = detector.long_side
    with ThreadPoolExecutor(n_workers, thread_name_prefix="face-decode") as pool:
        source = iter(items)
        pending: deque[tuple[T, Future[_Loaded]]] = deque()

        def refill() -> None:
            while len(pending) < prefetch:
                try:
                    item = next(source)
                except StopIteration:
                    return
                try:
                    path = os.fspath(path_of(item))
                except Exception as exc:  # an item without a usable path is its own rejection
                    failed: Future[_Loaded] = Future()
                    failed.set_result(ImageDecodeError("missing_file", f"no image path: {exc}"))
                    pending.append((item, failed))
                    continue
                pending.append((item, pool.submit(_load, path, long_side, max_pixels, budget)))

        refill()
        chunk: list[tuple[T, _Loaded]] = []
        images = 0
        while pending:
            item, future = pending.popleft()
            refill()
            decoded = future.result()
            chunk.append((item, decoded))
            images += not isinstance(decoded, ImageDecodeError)
            if images >= target:
                yield from _detect_chunk(detector, chunk)
                chunk, images = [], 0
        yield from _detect_chunk(detector, chunk)


def _rejection(record: Record, result: FaceResult, reason: str, detail: str) -> Rejection:
    rej = Rejection.from_record(record, reason, STAGE, detail)
    rej.image_id, rej.faces = result.image_id, result.faces
    return rej


def decide_records(
    results: Iterable[tuple[Record, FaceResult]],
    *,
    threshold: float = FACE_THRESHOLD,
    min_face_size: float = 0.0,
    filter_parts: Collection[Part] = ("overall",),
    stats: FilterStats | None = None,
    progress_seconds: float = 10.0,
) -> tuple[list[Record], list[Rejection]]:
    """Apply the single-face rule to detection results; every record comes back once.

    Separate from the detection so stored results can be decided again under another rule
    (``threshold``, ``min_face_size``) without running the detector.
    """
    stats = stats or FilterStats()
    kept: list[Record] = []
    rejections: list[Rejection] = []
    last_log = time.perf_counter()
    for record, result in results:
        stats.done += 1
        if not result.decoded:
            assert result.reason is not None
            rejections.append(_rejection(record, result, result.reason, result.detail))
            stats.reasons[result.reason] += 1
        else:
            record.image_id = result.image_id
            record.width, record.height = result.width, result.height
            record.faces = result.faces
            record.phash = result.phash
            faces = result.faces or []
            reason = None
            if record.part in filter_parts:
                reason = decide(faces, threshold=threshold, min_face_size=min_face_size)
            if reason is None:
                kept.append(record)
                stats.kept += 1
            else:
                n = count_faces(faces, threshold)
                detail = f"{n} face(s) with score >= {threshold}"
                rejections.append(_rejection(record, result, reason, detail))
                stats.reasons[reason] += 1
        now = time.perf_counter()
        if now - last_log >= progress_seconds:
            last_log = now
            log.info("faces: %s", stats.progress())
    return kept, rejections


def filter_records(
    records: Iterable[Record],
    detector: Detector,
    *,
    threshold: float = FACE_THRESHOLD,
    min_face_size: float = 0.0,
    batch_size: int | None = None,
    workers: int | None = None,
    filter_parts: Collection[Part] = ("overall",),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress_seconds: float = 10.0,
) -> tuple[list[Record], list[Rejection]]:
    """Decode, detect and apply the single-face rule to ``records`` (SPEC 2.2).

    Every record comes back exactly once: kept (with ``image_id``, ``width``, ``height`` and
    ``faces`` set, every detection with ``score >= detector.min_score``) or as a
    :class:`Rejection` of stage ``faces`` (decode reasons from :mod:`hae_data.images`,
    ``no_face``, ``multi_face``, ``too_small``, ``detect_error``). Records whose ``part`` is not in
    ``filter_parts`` (by default the 12-dimension ``fine_grained`` part) get their faces
    annotated but are never rejected for them; ``filter_parts=()`` annotates only. Progress
    (images/s, ETA) is logged every ``progress_seconds``.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if detector.min_score > threshold:
        raise ValueError(
            f"detector.min_score {detector.min_score} > threshold {threshold}: faces between "
            "them would be missing from the decision and from the export"
        )
    total = len(records) if isinstance(records, Sequence) else None
    stats = FilterStats(total=total)
    results = detect_items(
        records,
        lambda r: r.image_path,
        detector,
        batch_size=batch_size,
        workers=workers,
        max_pixels=max_pixels,
    )
    kept, rejections = decide_records(
        results,
        threshold=threshold,
        min_face_size=min_face_size,
        filter_parts=filter_parts,
        stats=stats,
        progress_seconds=progress_seconds,
    )
    log.info("faces done: %s", stats.summary())
    return kept, rejections
