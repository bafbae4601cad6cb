"""The 12-dimension part of a build from an annotation root, without the face stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hae_data.export import ExportSummary, export_dataset
from hae_data.images import read_image
from hae_data.pipeline import finalise
from hae_data.records import Record, Rejection
from hae_data.sources.annotations import AnnotationSource


def build_fine_grained(
    root: Path, out: Path, **options: Any
) -> tuple[ExportSummary, AnnotationSource, list[Record], list[Rejection]]:
    """Load ``root`` with the humanbeauty_50k loader, then finalise and export as a build does
    (face detection left out: the fixtures' images are noise, and it is not what is tested)."""
    source = AnnotationSource(root, **options)
    records, rejections = [], []
    for item in source.iter_items():
        (records if isinstance(item, Record) else rejections).append(item)
    for rec in records:
        decoded = read_image(rec.image_path)
        rec.image_id, rec.width, rec.height = decoded.image_id, decoded.width, decoded.height
    final = finalise(records)
    summary = export_dataset(final.records, rejections + final.rejections, out)
    return summary, source, final.records, rejections + final.rejections
