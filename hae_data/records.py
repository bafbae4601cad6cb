"""The one record type of the pipeline.

A :class:`Record` is one image on its way from a source loader to a Parquet row. Every stage
takes records and fills in its fields (faces, normalised score, level, question/answer, split);
nothing else carries per-image state. A :class:`Rejection` is an item that left the pipeline, with
the stage and the reason; rejections are counted, reported and exported to ``rejected.parquet``.
The exported row itself is declared in :mod:`hae_data.schema`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from annotation_schema import load_standard

__all__ = [
    "N_DIMS",
    "PARTS",
    "RATING_STAGE",
    "Face",
    "Part",
    "Record",
    "Rejection",
]

Part = Literal["overall", "fine_grained"]
#: The two configurations of the exported dataset: the 58K overall part and the 50K 12-dim part.
PARTS: tuple[Part, ...] = ("overall", "fine_grained")
N_DIMS = len(load_standard().dimensions)
#: Stage of rejections that drop one rating row (one rater's opinion), not a whole image.
RATING_STAGE = "ratings"


@dataclass(slots=True)
class Face:
    """One detection: box ``[x1, y1, x2, y2]`` in displayed-image pixels, confidence, 5 landmarks
    as ``[x1, y1, ..., x5, y5]``."""

    box: list[float]
    score: float
    landmarks: list[float]


@dataclass(slots=True, kw_only=True)
class Record:
    """One image and everything the pipeline knows about it.

    ``raw_score`` is on the source's own scale (already a MOS where the source has raters);
    ``score`` is the normalised overall score in [0,1]. For ``fine_grained`` rows
    ``dimension_scores`` holds the 12 MOS values in the standard's vector order and ``score`` is
    the Overall Aesthetic dimension.
    """

    source: str
    file_name: str
    image_path: str
    part: Part = "overall"
    image_id: str | None = None
    raw_score: float | None = None
    rater_count: int | None = None
    score_std: float | None = None
    dimension_scores: list[float] | None = None
    dimension_std: list[float] | None = None
    score: float | None = None
    level: str | None = None
    dimension_levels: list[str] | None = None
    question: str | None = None
    answer: str | None = None
    width: int | None = None
    height: int | None = None
    faces: list[Face] | None = None
    #: Perceptual hashes of the decoded image, 16 hex digits each: the whole image, then its
    #: centre crops (:mod:`hae_data.phash`).
    phash: list[str] | None = None
    #: Near-duplicate group (the lowest image id of the copies kept), None for a unique image.
    duplicate_group: str | None = None
    split: str | None = None
    quick: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Rejection:
    """An item that was dropped, with where and why. ``detail`` is free text for a person."""

    source: str
    file_name: str
    reason: str
    stage: str
    detail: str = ""
    image_path: str | None = None
    image_id: str | None = None
    #: Detections of an image the face rule rejected, so another rule can be applied later.
    faces: list[Face] | None = None

    @classmethod
    def from_record(cls, record: Record, reason: str, stage: str, detail: str = "") -> Rejection:
        """The rejection of ``record`` at ``stage``, carrying its path, id and detections."""
        return cls(
            source=record.source,
            file_name=record.file_name,
            reason=reason,
            stage=stage,
            detail=detail,
            image_path=record.image_path,
            image_id=record.image_id,
            faces=record.faces,
        )

    def to_row(self) -> dict[str, Any]:
        """The row written to ``rejected.parquet``: the source and the path relative to its
        root name the item; no absolute local path (the file may be pushed to the Hub)."""
        row = asdict(self)
        path = row.pop("image_path")
        detail = self.detail
        if path and path.endswith(self.file_name) and len(path) > len(self.file_name):
            root = path[: -len(self.file_name)]
            detail = detail.replace(path, self.file_name).replace(root, "")
        row["detail"] = detail
        return row
