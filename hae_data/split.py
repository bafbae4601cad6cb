"""Train/test split (SPEC 2.7): hash-based, stratified by source, stable when images are added.

An image is in ``test`` when ``split_key(image_id) < test_fraction``. Each source is split on
its own, so every source contributes about ``test_fraction`` of its images. The ``quick``
subset is the ``quick_per_source`` test images with the lowest keys per source.

When can an image's split change? Only in these cases, and never because other images of its
source were added or removed:

- the image's bytes change (its id is their hash), or ``test_fraction`` changes;
- a near-duplicate of it joins or leaves the build (:mod:`hae_data.near_duplicates`): a group of
  near-duplicates takes the lowest key of its members, so it is ``test`` as soon as any member
  would be; a new near-duplicate can move an image from train to test, and removing one can
  move it back;
- the image belongs to a zero-shot source (:mod:`hae_data.protocol`): always ``test``.

**Decision** (issue 11): there is no forced test image for a small source. Any rule that
guarantees a source a test image must depend on the other images of the source, and then
adding images moves existing ones: if an image's split may not change when the source grows,
``split(x, S) == split(x, {x})`` for every source ``S`` containing ``x``, so the split is a
function of the image alone. The old rule (the lowest key was forced into test) sent that image
back to train whenever an image with a lower key joined. A source smaller than about 20 images
may therefore have no test image at the default fraction (0.867**20 = 6%); a warning says so.
Real sources have thousands.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from hae_data.hashing import unit_hash
from hae_data.protocol import is_zero_shot
from hae_data.records import Record

__all__ = [
    "DEFAULT_QUICK_PER_SOURCE",
    "DEFAULT_TEST_FRACTION",
    "assign_splits",
    "check_split_options",
    "split_key",
]

log = logging.getLogger(__name__)

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


def _keys(records: list[Record]) -> list[float]:
    """Each record's key: the lowest key of its near-duplicate group (its own without one)."""
    group_key: dict[str, float] = {}
    own = [split_key(rec.image_id) for rec in records]  # type: ignore[arg-type]
    for rec, key in zip(records, own, strict=True):
        if rec.duplicate_group is not None:
            group_key[rec.duplicate_group] = min(key, group_key.get(rec.duplicate_group, key))
    return [
        key if rec.duplicate_group is None else group_key[rec.duplicate_group]
        for rec, key in zip(records, own, strict=True)
    ]


def assign_splits(
    records: Iterable[Record],
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    quick_per_source: int = DEFAULT_QUICK_PER_SOURCE,
) -> list[Record]:
    """Set ``split`` and ``quick`` on every record; returns them in their original order.

    Records of a zero-shot source all go to ``test`` (SPEC 3.4: evaluation-only, never split).
    """
    check_split_options(test_fraction, quick_per_source)
    records = list(records)
    for rec in records:
        if rec.image_id is None:
            raise ValueError(f"{rec.file_name}: image_id must be set before the split")
    by_source: dict[str, list[tuple[float, Record]]] = defaultdict(list)
    for key, rec in zip(_keys(records), records, strict=True):
        by_source[rec.source].append((key, rec))
    for source, keyed in by_source.items():
        # The image id breaks ties between members of one near-duplicate group.
        keyed.sort(key=lambda kr: (kr[0], kr[1].image_id))
        everything = is_zero_shot(source)
        for key, rec in keyed:
            rec.split = "test" if everything or key < test_fraction else "train"
            rec.quick = False
        test = [rec for _, rec in keyed if rec.split == "test"]
        if not test:
            log.warning(
                "source %s: none of its %d image(s) falls in the test split at fraction %g; "
                "the split is left to the hash so that adding images never moves one",
                source,
                len(keyed),
                test_fraction,
            )
        for rec in test[:quick_per_source]:
            rec.quick = True
    return records
