"""The one schema of the export: the columns of an exported row and of ``rejected.parquet``.

``FEATURES`` (the ``datasets`` features, with the Image feature for the bytes) and
``ARROW_SCHEMA`` derived from it are the single declaration of the exported row (SPEC 2.8); the
writer, the reader in ``hae_model`` and the tests all use them. Kept apart from
:mod:`hae_data.records` so that what only handles records (loaders, the face filter and their
command lines) does not import ``datasets``.
"""

from __future__ import annotations

import json
from typing import Any

import datasets
import pyarrow as pa

from annotation_schema import load_standard
from hae_data.records import N_DIMS, Record

__all__ = [
    "ARROW_SCHEMA",
    "FEATURES",
    "LEVEL_LABEL",
    "REJECTION_SCHEMA",
    "level_words",
    "record_to_row",
]

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
