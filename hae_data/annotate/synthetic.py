"""Miniature Label Studio exports and synthetic ratings with known rater noise, for tests.

:func:`synthetic_ratings` draws a true score per image and dimension and gives each rater
their own Gaussian noise, so agreement figures have a known answer. :func:`write_export`
writes such ratings as Label Studio would export them, in the two formats its documentation
describes (https://labelstud.io/guide/export#JSON, https://labelstud.io/guide/task_format and
``Converter.convert_to_json_min`` in label-studio-sdk): a task list with nested
``annotations[].result[]`` (JSON) or one flat object per annotation (JSON-MIN, single choices
flattened to their string, cancelled annotations left out). The keys, their order and the
value types are those of a real Label Studio 1.23.2 export (``GET /api/projects/{id}/export``,
captured while writing ``tests/annotate/test_label_studio_server.py``): ``completed_by`` and
JSON-MIN's ``annotator`` are integer user ids.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from annotation_schema import load_standard
from hae_data.annotate.labeling import IMAGE_FIELD, IMAGE_OBJECT, SCALE_MAX
from hae_data.annotate.tasks import IMAGE_KEY, LOCAL_FILES_PREFIX

__all__ = ["synthetic_ratings", "to_scale", "write_export"]

Format = Literal["JSON", "JSON_MIN"]
_STAMP = "2026-11-29T10:00:00.000000Z"


def synthetic_ratings(
    n_images: int,
    noise: Mapping[str, float],
    *,
    seed: int = 0,
    coverage: float = 1.0,
    truth_sd: float = 0.2,
    dims: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (image, rater): ``truth + N(0, noise[rater])`` per dimension (unclipped,
    continuous). Each rater rates each image with probability ``coverage`` (at least two
    raters per image). Returns the rows and the ``[images, dims]`` true scores (centred on
    0.5 with standard deviation ``truth_sd``)."""
    rng = np.random.default_rng(seed)
    keys = load_standard().keys[: dims or None]
    truth = 0.5 + truth_sd * rng.standard_normal((n_images, len(keys)))
    raters = list(noise)
    rows = []
    for i in range(n_images):
        chosen = [r for r in raters if rng.random() < coverage]
        if len(chosen) < 2:
            chosen = list(rng.choice(raters, size=2, replace=False))
        for rater in chosen:
            values = truth[i] + noise[rater] * rng.standard_normal(len(keys))
            scores = dict(zip(keys, values, strict=True))
            rows.append({"image": f"img{i:04d}.jpg", "rater": rater, **scores})
    return pd.DataFrame(rows), truth


def to_scale(values: np.ndarray | Sequence[float]) -> np.ndarray:
    """[0, 1]-ish values -> the integer points 0..SCALE_MAX an annotator would click."""
    return np.clip(np.rint(np.asarray(values, dtype=float) * SCALE_MAX), 0, SCALE_MAX).astype(int)


def _uid(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:10]


def _result(points: Mapping[str, int | str]) -> list[dict[str, Any]]:
    return [
        {
            "from_name": key,
            "to_name": IMAGE_OBJECT,
            "type": "choices",
            "value": {"choices": [str(v)]},
        }
        for key, v in points.items()
    ]


def write_export(
    path: str | os.PathLike[str],
    annotations: Sequence[Mapping[str, Any]],
    *,
    fmt: Format = "JSON",
    images: Sequence[str] | None = None,
    project: int = 1,
) -> Path:
    """Write a Label Studio export of ``annotations``: dicts with ``image`` (path under the
    images folder), ``rater`` (a user id), one scale point (0..10, or any raw value to test
    rejections) per dimension key present, and optionally ``cancelled`` (a skip) or
    ``task_extra`` / ``annotation_id``. ``images`` adds tasks nobody annotated."""
    keys = load_standard().keys
    order = list(dict.fromkeys([*(a["image"] for a in annotations), *(images or [])]))
    task_ids = {image: n for n, image in enumerate(order, 1)}
    per_task: dict[str, list[dict[str, Any]]] = {image: [] for image in order}
    for n, ann in enumerate(annotations, 1):
        image = ann["image"]
        points = {k: ann[k] for k in keys if k in ann}
        per_task[image].append(
            {
                "id": ann.get("annotation_id", n),
                "completed_by": ann["rater"],
                "result": [] if ann.get("cancelled") else _result(points),
                "was_cancelled": bool(ann.get("cancelled")),
                "ground_truth": False,
                "created_at": _STAMP,
                "updated_at": _STAMP,
                "draft_created_at": None,
                "lead_time": 12.5,
                "prediction": {},
                "result_count": 0 if ann.get("cancelled") else 1,
                "unique_id": _uid("ann", n),
                "import_id": None,
                "last_action": None,
                "bulk_created": False,
                "task": task_ids[image],
                "project": project,
                "updated_by": ann["rater"],
                "parent_prediction": None,
                "parent_annotation": None,
                "last_created_by": None,
            }
        )
    tasks = []
    for image, anns in per_task.items():
        data = {IMAGE_FIELD: LOCAL_FILES_PREFIX + f"images/{image}", IMAGE_KEY: image}
        tasks.append(
            {
                "id": task_ids[image],
                "annotations": anns,
                "drafts": [],
                "predictions": [],
                "data": data,
                "meta": {},
                "created_at": _STAMP,
                "updated_at": _STAMP,
                "allow_skip": True,
                "inner_id": task_ids[image],
                "total_annotations": sum(not a["was_cancelled"] for a in anns),
                "cancelled_annotations": sum(a["was_cancelled"] for a in anns),
                "total_predictions": 0,
                "comment_count": 0,
                "unresolved_comment_count": 0,
                "last_comment_updated_at": None,
                "project": project,
                "updated_by": 1,
                "comment_authors": [],
            }
        )
    out: list[dict[str, Any]] = tasks if fmt == "JSON" else _json_min(tasks)
    target = Path(path)
    target.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return target


def _json_min(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON-MIN as Label Studio writes it: cancelled annotations dropped, an unannotated task
    as its data alone, one choice flattened to its string."""
    out = []
    for task in tasks:
        if not task["annotations"]:
            out.append({**task["data"], "id": task["id"]})
            continue
        for ann in task["annotations"]:
            if ann["was_cancelled"]:
                continue
            record: dict[str, Any] = {**task["data"], "id": task["id"]}
            for item in ann["result"]:
                choices = item["value"]["choices"]
                record[item["from_name"]] = choices[0] if len(choices) == 1 else choices
            record.update(
                annotator=ann["completed_by"],
                annotation_id=ann["id"],
                created_at=ann["created_at"],
                updated_at=ann["updated_at"],
                lead_time=ann["lead_time"],
            )
            out.append(record)
    return out
