"""The single-face rule (SPEC 2.2) as one function of the stored detections.

Because it reads only the stored faces, the rule can be re-applied to an exported dataset with
another threshold (down to the detector's ``min_score``) without detecting again.
"""

from __future__ import annotations

from collections.abc import Sequence

from hae_data.defaults import FACE_THRESHOLD
from hae_data.records import Face

__all__ = [
    "FACE_REASONS",
    "MULTI_FACE",
    "NO_FACE",
    "TOO_SMALL",
    "count_faces",
    "decide",
]

NO_FACE = "no_face"
MULTI_FACE = "multi_face"
TOO_SMALL = "too_small"
FACE_REASONS = (NO_FACE, MULTI_FACE, TOO_SMALL)


def count_faces(faces: Sequence[Face], threshold: float = FACE_THRESHOLD) -> int:
    """How many detections have ``score >= threshold``."""
    return sum(1 for f in faces if f.score >= threshold)


def decide(
    faces: Sequence[Face],
    *,
    threshold: float = FACE_THRESHOLD,
    min_face_size: float = 0.0,
) -> str | None:
    """``None`` to keep the image, else the rejection reason.

    Keep iff exactly one detection has ``score >= threshold``; zero is ``no_face``, more is
    ``multi_face``. With ``min_face_size > 0`` (pixels, displayed frame; off by default) a single
    face whose box has a shorter side below it is ``too_small``.
    """
    counted = [f for f in faces if f.score >= threshold]
    if not counted:
        return NO_FACE
    if len(counted) > 1:
        return MULTI_FACE
    x1, y1, x2, y2 = counted[0].box
    if min_face_size > 0 and min(x2 - x1, y2 - y1) < min_face_size:
        return TOO_SMALL
    return None
