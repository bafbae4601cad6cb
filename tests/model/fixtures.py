"""Generated exports for the model tests: images whose scores are known functions of the pixels.

Every image is noise around a brightness ``b``; the overall raw score is the image's mean
intensity (so after per-source min-max it is a known function of the image), and the 12
dimension scores of the fine-grained rows are fixed affine functions of the same mean. The
export goes through the real pipeline helpers and ``hae_data.export.export_dataset``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hae_data.export import export_dataset
from hae_data.images import read_image
from hae_data.qa import make_qa
from hae_data.records import Record
from hae_data.scores import apply_levels, normalise_by_source
from hae_data.split import assign_splits

OVERALL_SOURCES = ("ava", "baid")
FINE_SOURCE = "humanbeauty_50k"


def brightness_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """An RGB noise image ``[h, w, 3]`` uint8 around a random brightness."""
    w, h = size
    b = rng.uniform(0.05, 0.95)
    noise = rng.uniform(-0.25, 0.25, (h, w, 3))
    return (np.clip(b + noise, 0.0, 1.0) * 255).round().astype(np.uint8)


def dimension_scores(mean: float) -> list[float]:
    """12 scores in [0, 1], each an affine function of the image's mean intensity."""
    return [float(np.clip(0.1 + 0.8 * mean + 0.02 * (i - 6), 0.0, 1.0)) for i in range(12)]


def make_records(
    folder: Path,
    *,
    n_overall: int,
    n_fine: int,
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
    test_fraction: float = 0.25,
) -> list[Record]:
    """Complete records (images written as PNG into ``folder``), as the pipeline leaves them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n_overall + n_fine):
        part = "overall" if i < n_overall else "fine_grained"
        source = OVERALL_SOURCES[i % len(OVERALL_SOURCES)] if part == "overall" else FINE_SOURCE
        arr = brightness_image(rng, size)
        path = folder / f"{source}-{i:05d}.png"
        Image.fromarray(arr).save(path)
        mean = float(arr.mean() / 255.0)
        rec = Record(source=source, file_name=path.name, image_path=str(path), part=part)
        dec = read_image(path)
        rec.image_id, rec.width, rec.height = dec.image_id, dec.width, dec.height
        if part == "overall":
            rec.raw_score = mean
        else:
            rec.dimension_scores = dimension_scores(mean)
            rec.dimension_std = [0.05] * 12
            rec.rater_count = 9
            rec.raw_score = rec.score = rec.dimension_scores[-1]
        recs.append(rec)
    recs, rejected = normalise_by_source(recs)
    assert not rejected
    for rec in recs:
        make_qa(apply_levels(rec))
    return assign_splits(recs, test_fraction=test_fraction, quick_per_source=3)


def make_export(root: Path, *, row_group_max_bytes: int = 64 * 2**10, **kwargs) -> Path:
    """Write an export folder under ``root`` (see :func:`make_records` for the arguments).

    Small row groups, so even a small export has several and the streaming code is exercised.
    """
    recs = make_records(root / "images", **kwargs)
    export_dataset(recs, [], root / "export", row_group_max_bytes=row_group_max_bytes)
    return root / "export"
