"""The one record type of the pipeline and the one schema of its export.

A :class:`Record` is one image on its way from a source loader to a Parquet row. Every stage
takes records and fills in its fields (faces, normalised score, level, question/answer, split);
nothing else carries per-image state. A :class:`Rejection` is an item that left the pipeline, with
the stage and the reason; rejections are counted, reported and exported to ``rejected.parquet``.

``FEATURES`` (the ``datasets`` features, with the Image feature for the bytes) and
``ARROW_SCHEMA`` derived from it are the single declaration of the exported row (SPEC 2.8); the
writer, the reader in ``hae_model`` and the tests all use them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import datasets
import pyarrow as pa

from annotation_schema import load_standard

__all__ = [
    "ARROW_SCHEMA",
    "FEATURES",
    "LEVEL_LABEL",
    "PARTS",
    "RATING_STAGE",
    "REJECTION_SCHEMA",
    "Face",
    "Part",
    "Record",
    "Rejection",
    "level_words",
    "record_to_row",
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


#: The five level words as a ``datasets.ClassLabel`` (stored as their index, 0 = bad): what
#: ``train_test_split(stratify_by_column="level")`` and the Hub's viewer need.
LEVEL_LABEL = datasets.ClassLabel(names=list(load_standard().level_words))

_FACE = {
    "box": datasets.Sequence(datasets.Value("float32"), length=4),
    "score": datasets.Value("float32"),
    "landmarks": datasets.Sequence(datasets.Value("float32"), length=10),
}

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "file_name": datasets.Value("string"),
        "part": datasets.Value("string"),
        "raw_score": datasets.Value("float64"),
        # float64: a float32 0.2 reads back as 0.2000000030, one level up from its exported
        # level at every boundary (SPEC 2.5).
        "score": datasets.Value("float64"),
        "level": LEVEL_LABEL,
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "dimension_scores": datasets.Sequence(datasets.Value("float64"), length=N_DIMS),
        "dimension_levels": datasets.Sequence(LEVEL_LABEL, length=N_DIMS),
        "dimension_std": datasets.Sequence(datasets.Value("float64"), length=N_DIMS),
        "rater_count": datasets.Value("int32"),
        "score_std": datasets.Value("float64"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "face_count": datasets.Value("int32"),
        "faces": datasets.List(_FACE),
        "phash": datasets.List(datasets.Value("string")),
        "duplicate_group": datasets.Value("string"),
        "split": datasets.Value("string"),
        "quick": datasets.Value("bool"),
        "metadata": datasets.Value("string"),
    }
)
#: Arrow schema of an exported shard; its metadata carries the features, so ``datasets`` decodes
#: the ``image`` column as an Image without being told.
ARROW_SCHEMA: pa.Schema = FEATURES.arrow_schema

_FACES_ARROW = FEATURES.arrow_schema.field("faces").type

REJECTION_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("file_name", pa.string()),
        ("reason", pa.string()),
        ("stage", pa.string()),
        ("detail", pa.string()),
        ("image_id", pa.string()),
        ("faces", _FACES_ARROW),
    ]
)


def level_words(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` (read from a shard with pyarrow, where levels are ClassLabel indices) with
    ``level`` and ``dimension_levels`` as words again; words already there are left as they are."""
    level = row.get("level")
    if isinstance(level, int):
        row["level"] = LEVEL_LABEL.int2str(level)
    dims = row.get("dimension_levels")
    if dims is not None:
        row["dimension_levels"] = [
            LEVEL_LABEL.int2str(v) if isinstance(v, int) else v for v in dims
        ]
    return row


def record_to_row(record: Record, image_bytes: bytes) -> dict[str, Any]:
    """The export row of ``record`` (SPEC 2.8), with the image bytes embedded."""
    faces = record.faces or []
    return {
        "image": {"bytes": image_bytes, "path": record.file_name},
        "image_id": record.image_id,
        "source": record.source,
        "file_name": record.file_name,
        "part": record.part,
        "raw_score": record.raw_score,
        "score": record.score,
        "level": None if record.level is None else LEVEL_LABEL.str2int(record.level),
        "question": record.question,
        "answer": record.answer,
        "dimension_scores": record.dimension_scores,
        "dimension_levels": None
        if record.dimension_levels is None
        else [LEVEL_LABEL.str2int(w) for w in record.dimension_levels],
        "dimension_std": record.dimension_std,
        "rater_count": record.rater_count,
        "score_std": record.score_std,
        "width": record.width,
        "height": record.height,
        "face_count": len(faces),
        "faces": [{"box": f.box, "score": f.score, "landmarks": f.landmarks} for f in faces],
        "phash": record.phash,
        "duplicate_group": record.duplicate_group,
        "split": record.split,
        "quick": record.quick,
        "metadata": json.dumps(record.metadata, sort_keys=True, default=str),
    }
