"""Train/test split (SPEC 2.7): hash-based, stratified by source, stable when images are added.

An image is in ``test`` when ``unit_hash(image_id) < test_fraction``: the decision depends on
the image alone, so adding images never moves an existing one. Each source is split on its own
(so every source contributes about ``test_fraction`` of its images), and a source with at least
two images always has one test image (its lowest hash) so small sources are evaluated too.
The ``quick`` subset is the ``quick_per_source`` test images with the lowest hashes per source.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from hae_data.hashing import unit_hash
from hae_data.records import Record

__all__ = [
    "DEFAULT_QUICK_PER_SOURCE",
    "DEFAULT_TEST_FRACTION",
    "assign_splits",
    "check_split_options",
    "split_key",
]

#: The paper's 14,487 test images out of 108,586.
DEFAULT_TEST_FRACTION = 0.133
#: The paper's ablation subset: at most 138 test images per source.
DEFAULT_QUICK_PER_SOURCE = 138


def split_key(image_id: str) -> float:
    """The image's position in [0, 1) that decides its split."""
    return unit_hash(image_id, "split")


def check_split_options(test_fraction: float, quick_per_source: int) -> None:
    """``ValueError`` unless ``0 < test_fraction < 1`` and ``quick_per_source >= 0``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if quick_per_source < 0:
        raise ValueError(f"quick_per_source must be >= 0, got {quick_per_source}")


def assign_splits(
    records: Iterable[Record],
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    quick_per_source: int = DEFAULT_QUICK_PER_SOURCE,
) -> list[Record]:
    """Set ``split`` and ``quick`` on every record; returns them in their original order."""
    check_split_options(test_fraction, quick_per_source)
    records = list(records)
    by_source: dict[str, list[tuple[float, Record]]] = defaultdict(list)
    for rec in records:
        if rec.image_id is None:
            raise ValueError(f"{rec.file_name}: image_id must be set before the split")
        by_source[rec.source].append((split_key(rec.image_id), rec))
    for keyed in by_source.values():
        keyed.sort(key=lambda kr: kr[0])
        for key, rec in keyed:
            rec.split = "test" if key < test_fraction else "train"
            rec.quick = False
        if len(keyed) >= 2 and keyed[0][1].split != "test":
            keyed[0][1].split = "test"
        test = [rec for _, rec in keyed if rec.split == "test"]
        for rec in test[:quick_per_source]:
            rec.quick = True
    return records
