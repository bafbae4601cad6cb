"""Label Studio exports (JSON, JSON-MIN) -> the project's per-rater annotation rows.

Reads the two JSON export formats Label Studio documents
(https://labelstud.io/guide/export#JSON and #JSON-MIN; the JSON-MIN writer is
``Converter.convert_to_json_min`` in ``label_studio_sdk/converter/converter.py``):

- **JSON**: a list of tasks ``{"id", "data": {...}, "annotations": [{"id", "completed_by",
  "was_cancelled", "result": [{"from_name", "to_name", "type": "choices", "value":
  {"choices": ["7"]}}, ...], ...}], ...}``; ``completed_by`` is a user id or an object with
  ``id`` (and ``email``);
- **JSON-MIN**: one flat object per (task, annotation): the task's data fields, ``id`` (task),
  ``annotator`` (user id; an e-mail in older versions), ``annotation_id``, ``created_at``,
  ``updated_at``, ``lead_time``, and one field per control named by its ``from_name``, a
  single choice flattened to its string (``"7"``). Cancelled (skipped) annotations are left out
  of JSON-MIN by Label Studio itself; a task nobody annotated appears with no annotator.

A candidate row is ``image`` (the task's ``data.hb_image``, written by
:mod:`hae_data.annotate.tasks`), ``rater`` (the Label Studio user id, as text, after an
optional prefix) and one [0, 1] value per dimension (rating ``k`` -> ``k / 10``,
:func:`hae_data.annotate.labeling.rating_to_score`), validated with
:func:`annotation_schema.validate_annotation_row`. Every annotation that does not become a row
is a :class:`~hae_data.records.Rejection` (stage ``label_studio``) with one of these reasons:

``cancelled_annotation`` (skipped in Label Studio), ``malformed_task`` (not an object, no
``data``), ``no_image_reference`` (no ``data.hb_image``), ``no_rater``, ``missing_dimension``
(named), ``rating_out_of_range`` (not an integer 0-10, quoted), ``malformed_annotation`` (a
dimension answered twice, a result that is not a list), ``schema_violation`` (the JSON
Schema's own messages), ``duplicate_rating`` (the same rater twice on one image in this export:
all copies, as the MOS does) and ``changed_since_import`` (the rater's ratings of that image
differ from the row already imported: the imported row stands).

Incremental: rows already present in ``ROOT/annotations/`` (any ``.csv``/``.parquet`` there,
whoever wrote it) with the same (image, rater) and values are skipped, so importing the same
export twice writes nothing, and a later export of the same project adds only its new
annotations, as a new file ``ROOT/annotations/label-studio-NNNN.csv`` that
:class:`hae_data.sources.annotations.AnnotationSource` reads with the rest.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from annotation_schema import load_standard, validate_annotation_row
from hae_data.annotate.labeling import rating_to_score
from hae_data.annotate.tasks import IMAGE_KEY
from hae_data.records import Rejection

__all__ = [
    "STAGE",
    "ExportFormatError",
    "ImportResult",
    "import_export",
    "parse_export",
]

log = logging.getLogger(__name__)

#: Stage of every rejection made while reading an export.
STAGE = "label_studio"
_SOURCE = "humanbeauty_50k"
_BATCH_RE = re.compile(r"^label-studio-(\d{4,})\.csv$")
#: JSON-MIN's own fields, never a control's value.
_MIN_META = frozenset({"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"})
_TOLERANCE = 1e-9


class ExportFormatError(ValueError):
    """The file is not a Label Studio JSON or JSON-MIN export at all (not a list of objects)."""


@dataclass
class ImportResult:
    """What one import did: rows written (and where), rows already there, rejections."""

    tasks: int = 0
    annotations: int = 0
    unannotated_tasks: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    already_imported: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    written: Path | None = None
    format: str = ""

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Rejection counts by reason, most frequent first."""
        return dict(Counter(r.reason for r in self.rejections).most_common())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (rejections with their details)."""
        return {
            "format": self.format,
            "tasks": self.tasks,
            "annotations": self.annotations,
            "unannotated_tasks": self.unannotated_tasks,
            "new_rows": len(self.rows),
            "already_imported": self.already_imported,
            "written": None if self.written is None else str(self.written),
            "rejected": len(self.rejections),
            "rejected_by_reason": self.rejected_by_reason,
            "rejections": [
                {"image": r.file_name, "reason": r.reason, "detail": r.detail}
                for r in self.rejections
            ],
        }


@dataclass
class _Candidate:
    image: str
    rater: str
    values: dict[str, float]
    where: str


def _reject(image: str, reason: str, detail: str) -> Rejection:
    return Rejection(source=_SOURCE, file_name=image, reason=reason, stage=STAGE, detail=detail)


def _rater(value: Any, prefix: str) -> str | None:
    """The rater id: a user id (int, or an object's ``id``), or an e-mail from old JSON-MIN."""
    if isinstance(value, Mapping):
        value = value.get("id", value.get("email"))
    if value is None or isinstance(value, bool) or str(value).strip() == "":
        return None
    return f"{prefix}{str(value).strip()}"


def _values(
    answers: Mapping[str, Any], image: str, where: str
) -> tuple[dict[str, float] | None, Rejection | None]:
    """Scores per dimension from ``{key: exported value}``; a rejection when any is missing or
    off the scale (every problem named in one detail)."""
    keys = load_standard().keys
    missing = [k for k in keys if k not in answers]
    if missing:
        return None, _reject(image, "missing_dimension", f"{where}: no rating for {missing}")
    values: dict[str, float] = {}
    bad = []
    for key in keys:
        try:
            values[key] = rating_to_score(answers[key])
        except ValueError as exc:
            bad.append(f"{key}: {exc}")
    if bad:
        return None, _reject(image, "rating_out_of_range", f"{where}: " + "; ".join(bad))
    return values, None


def _from_json_task(
    task: Mapping[str, Any], prefix: str, result: ImportResult
) -> Iterator[_Candidate | Rejection]:
    """Candidates and rejections of one task of a JSON export."""
    keys = set(load_standard().keys)
    task_id = task.get("id")
    data = task.get("data")
    annotations = task.get("annotations")
    if not isinstance(data, Mapping) or not isinstance(annotations, list):
        yield _reject(f"task {task_id}", "malformed_task", f"task {task_id}: no data/annotations")
        return
    result.tasks += 1
    if not annotations:
        result.unannotated_tasks += 1
        return
    image = data.get(IMAGE_KEY)
    for ann in annotations:
        result.annotations += 1
        if not isinstance(ann, Mapping):
            yield _reject(
                str(image or f"task {task_id}"), "malformed_annotation", f"task {task_id}"
            )
            continue
        rater = _rater(ann.get("completed_by"), prefix)
        where = f"task {task_id}, annotation {ann.get('id')}, rater {rater}"
        if not isinstance(image, str) or not image.strip():
            yield _reject(
                f"task {task_id}",
                "no_image_reference",
                f"{where}: data has no {IMAGE_KEY!r} (tasks not made by hae_data.annotate tasks)",
            )
            continue
        if ann.get("was_cancelled") or ann.get("skipped"):
            yield _reject(image, "cancelled_annotation", f"{where}: skipped in Label Studio")
            continue
        if rater is None:
            yield _reject(image, "no_rater", f"{where}: completed_by is empty")
            continue
        items = ann.get("result")
        if not isinstance(items, list):
            yield _reject(image, "malformed_annotation", f"{where}: result is not a list")
            continue
        answers: dict[str, Any] = {}
        twice = []
        for item in items:
            if not isinstance(item, Mapping) or item.get("from_name") not in keys:
                continue  # another control (a comment box a lab added): not a dimension
            name = item["from_name"]
            value = item.get("value")
            kind = item.get("type")
            answer = value.get(kind) if isinstance(value, Mapping) and kind else None
            if name in answers:
                twice.append(name)
            answers[name] = answer
        if twice:
            yield _reject(image, "malformed_annotation", f"{where}: {twice} answered twice")
            continue
        values, rejection = _values(answers, image, where)
        yield rejection or _Candidate(image.strip(), rater, values or {}, where)


def _from_json_min_item(
    item: Mapping[str, Any], prefix: str, result: ImportResult, seen_tasks: set[Any]
) -> Iterator[_Candidate | Rejection]:
    """Candidates and rejections of one JSON-MIN object (one task x annotation)."""
    keys = load_standard().keys
    task_id = item.get("id")
    if task_id not in seen_tasks:
        seen_tasks.add(task_id)
        result.tasks += 1
    image = item.get(IMAGE_KEY)
    answers = {k: item[k] for k in keys if k in item}
    if item.get("annotation_id") is None and not answers:
        result.unannotated_tasks += 1
        return
    result.annotations += 1
    rater = _rater(item.get("annotator"), prefix)
    where = f"task {task_id}, annotation {item.get('annotation_id')}, rater {rater}"
    if not isinstance(image, str) or not image.strip():
        yield _reject(
            f"task {task_id}",
            "no_image_reference",
            f"{where}: no {IMAGE_KEY!r} field (tasks not made by hae_data.annotate tasks)",
        )
        return
    if rater is None:
        yield _reject(image, "no_rater", f"{where}: annotator is empty")
        return
    if not answers:
        # JSON-MIN drops cancelled annotations; an empty one can only be a skip that slipped in.
        yield _reject(image, "cancelled_annotation", f"{where}: no dimension answered")
        return
    values, rejection = _values(answers, image, where)
    yield rejection or _Candidate(image.strip(), rater, values or {}, where)


def parse_export(data: Any, *, rater_prefix: str = "") -> tuple[list[_Candidate], ImportResult]:
    """Candidates from an export already loaded from JSON; the result holds the counts and the
    rejections so far. ``ExportFormatError`` when it is not a list of objects."""
    if not isinstance(data, list):
        raise ExportFormatError(
            f"a Label Studio JSON/JSON-MIN export is a list of objects, got {type(data).__name__}"
        )
    result = ImportResult()
    candidates: list[_Candidate] = []
    is_json = any(isinstance(t, Mapping) and "annotations" in t for t in data)
    result.format = "JSON" if is_json else "JSON_MIN"
    seen: set[Any] = set()
    for index, task in enumerate(data):
        if not isinstance(task, Mapping):
            result.rejections.append(
                _reject(f"item {index}", "malformed_task", f"item {index} is not an object")
            )
            continue
        items = (
            _from_json_task(task, rater_prefix, result)
            if is_json
            else _from_json_min_item(task, rater_prefix, result, seen)
        )
        for out in items:
            if isinstance(out, Rejection):
                result.rejections.append(out)
            else:
                candidates.append(out)
    return candidates, result


def _existing_rows(folder: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(image, rater) -> values of every row already in the annotations folder."""
    keys = list(load_standard().keys)
    out: dict[tuple[str, str], dict[str, float]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".csv", ".parquet") or not path.is_file():
            continue
        try:
            df = (
                pd.read_parquet(path)
                if path.suffix.lower() == ".parquet"
                else pd.read_csv(path, dtype={"image": str, "rater": str}, encoding="utf-8-sig")
            )
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            # The loader reports this file's own problems; here it only cannot be compared
            # against, so a pair in it may be written again (and then dropped as a duplicate).
            log.warning("%s cannot be read (%s); not compared against", path, exc)
            continue
        if not {"image", "rater", *keys} <= set(df.columns):
            log.warning("%s lacks the annotation columns; not compared against", path)
            continue
        numeric = df[keys].apply(pd.to_numeric, errors="coerce")
        for image, rater, row in zip(
            df["image"].astype(str).str.strip(),
            df["rater"].astype(str).str.strip(),
            numeric.to_dict("records"),
            strict=True,
        ):
            out.setdefault((image, rater), row)
    return out


def _next_batch(folder: Path) -> Path:
    numbers = [int(m.group(1)) for p in folder.glob("*.csv") if (m := _BATCH_RE.match(p.name))]
    return folder / f"label-studio-{max(numbers, default=0) + 1:04d}.csv"


def import_export(
    export: str | os.PathLike[str],
    root: str | os.PathLike[str],
    *,
    rater_prefix: str = "",
    dry_run: bool = False,
) -> ImportResult:
    """Read a JSON or JSON-MIN export and write its new rows as
    ``ROOT/annotations/label-studio-NNNN.csv`` (nothing when there is none, or ``dry_run``).

    Refuses (``FileExistsError``) a root with ``annotations.csv``/``.parquet``: the loader reads
    that file alone, so rows written into ``annotations/`` would never be read.
    """
    root = Path(root)
    for single in ("annotations.csv", "annotations.parquet"):
        if (root / single).exists():
            raise FileExistsError(
                f"{root / single} exists: the loader reads it alone and would ignore "
                f"{root / 'annotations'}/; move it into that folder first"
            )
    try:
        with open(export, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(f"{export}: not JSON: {exc}") from None
    candidates, result = parse_export(data, rater_prefix=rater_prefix)

    by_pair: dict[tuple[str, str], list[_Candidate]] = defaultdict(list)
    for cand in candidates:
        by_pair[(cand.image, cand.rater)].append(cand)
    folder = root / "annotations"
    existing = _existing_rows(folder)
    keys = load_standard().keys
    for (image, rater), group in sorted(by_pair.items()):
        if len(group) > 1:
            where = "; ".join(c.where for c in group)
            result.rejections.extend(
                _reject(image, "duplicate_rating", f"rater {rater} rated this image twice: {where}")
                for _ in group
            )
            continue
        cand = group[0]
        row: dict[str, Any] = {"image": image, "rater": rater, **cand.values}
        errors = validate_annotation_row(row)
        if errors:
            detail = f"{cand.where}: " + "; ".join(errors)
            result.rejections.append(_reject(image, "schema_violation", detail[:400]))
            continue
        before = existing.get((image, rater))
        if before is not None:
            if all(abs(float(before[k]) - row[k]) <= _TOLERANCE for k in keys):
                result.already_imported += 1
            else:
                changed = [k for k in keys if abs(float(before[k]) - row[k]) > _TOLERANCE]
                result.rejections.append(
                    _reject(
                        image,
                        "changed_since_import",
                        f"{cand.where}: {changed} differ from the row already imported, "
                        "which stands (delete that row to take the new one)",
                    )
                )
            continue
        result.rows.append(row)

    if result.rows and not dry_run:
        folder.mkdir(parents=True, exist_ok=True)
        out = _next_batch(folder)
        tmp = out.with_name(f".{out.name}.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", "rater", *keys])
            for row in result.rows:
                writer.writerow([row["image"], row["rater"], *(repr(row[k]) for k in keys)])
        os.replace(tmp, out)
        result.written = out
    log.info(
        "%s export %s: %d task(s), %d annotation(s): %d new row(s)%s, %d already imported, "
        "%d rejected %s",
        result.format,
        export,
        result.tasks,
        result.annotations,
        len(result.rows),
        f" -> {result.written}" if result.written else "",
        result.already_imported,
        len(result.rejections),
        result.rejected_by_reason or "",
    )
    return result
