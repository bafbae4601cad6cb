"""Near-duplicates (SPEC 2.7): one split per group, one copy per part.

Byte-identical files are dropped by ``hae_data.pipeline.drop_duplicates``; this stage finds the
copies that differ in bytes (re-encoded, resized, cropped by up to a tenth of each side, the
same photo in two sources or in both parts) by their perceptual hashes (:mod:`hae_data.phash`):

- the distance of two images is the smallest number of differing bits between one's
  whole-image hash and any hash of the other (whole or centre crop), both ways round; two
  images within ``max_distance`` are near-duplicates, and a group is a connected set of them;
- within one part, the group keeps its first image in (source, file name) order, as the
  byte-level stage does, and every other one becomes a ``near_duplicate`` rejection naming it;
- the images a group keeps (at most one per part) share its ``duplicate_group`` id, and the
  split gives the group one split (:func:`hae_data.split.assign_splits`), so no photo is in
  train as one copy and in test as another.

``DEFAULT_MAX_DISTANCE`` is measured (``python -m bench.near_duplicates``, BENCHMARKS.md) on
scikit-image's real photos: every re-encoded (JPEG quality 30-90), resized (1/2, 1/4),
brightened and cropped (2-10% a side) copy lies within 8 bits of its original, every pair of
different photos at least 18 apart. Were the hashes of unrelated images random, 6 x 10^-9 of
image pairs (9 comparisons each) would fall within 8 bits: some 40 false pairs among the paper's
108,586 images (real collections, aligned frontal faces say, can be less random). A lower
``max_distance`` (6: about one) trades that for missing some 2% crops; the card reports the
counts, and each rejection names the copy that was kept, to audit. Not caught: crops of a fifth
of each side (another composition) and some one-sided crops (13 of 17 found at 5%).

Every pair is compared (numpy, in tiles, on one thread per core): about two minutes for the
paper's 108,586 images on one core of the development machine.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hae_data.phash import hamming
from hae_data.records import Record, Rejection

__all__ = [
    "DEFAULT_MAX_DISTANCE",
    "REASON",
    "NearDuplicateResult",
    "card_lines",
    "distance",
    "drop_near_duplicates",
    "near_duplicate_counts",
    "near_pairs",
]

log = logging.getLogger(__name__)

#: Bits two images' hashes may differ in and still be one photo (measured; see the module doc).
DEFAULT_MAX_DISTANCE = 8
#: Rejection reason of a within-part near-duplicate.
REASON = "near_duplicate"
#: Bits of one perceptual hash: a distance above this would make every image one photo.
HASH_BITS = 64


def check_max_distance(
    max_distance: int | None, name: str = "near_duplicate_distance"
) -> int | None:
    """``max_distance`` if it is None (the stage off) or a whole number of bits in 0-64; a
    ``ValueError`` naming it (as ``name``) otherwise: more bits than a hash has would group every
    image as one photo."""
    if max_distance is None:
        return None
    if (
        isinstance(max_distance, bool)
        or not isinstance(max_distance, int)
        or not 0 <= max_distance <= HASH_BITS
    ):
        raise ValueError(f"{name} must be None or 0-{HASH_BITS} bits, got {max_distance!r}")
    return max_distance


_STAGE = "dedupe"
# Tiles of 64 x 4,096 pairs keep every temporary array in the CPU cache: 13x faster than rows
# against the whole set (0.9 against 0.07 billion pairs/s measured on one core).
_ROWS, _COLS = 64, 4096


def distance(a: Sequence[str], b: Sequence[str]) -> int:
    """The distance of two images from their :func:`hae_data.phash.phashes`: the fewest bits
    between one's whole-image hash and any hash of the other, both ways round."""
    return min(min(hamming(a[0], h) for h in b), min(hamming(h, b[0]) for h in a))


def _bit_count(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 of ``x``, into ``out`` (uint8)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x, out=out)
    out[...] = np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)
    return out


def near_pairs(
    hashes: np.ndarray, max_distance: int, *, workers: int | None = None
) -> Iterator[tuple[int, int, int]]:
    """``(i, j, distance)`` for every ``i < j`` within ``max_distance`` bits, in order.

    ``hashes`` is ``(n, k)`` uint64: column 0 the whole image's hash, the others its centre
    crops; the distance is the smallest over ``whole_i ^ any_j`` and ``any_i ^ whole_j``. Row
    blocks run on ``workers`` threads (default: one per core; numpy releases the GIL).
    """
    n = len(hashes)
    starts = range(0, n, _ROWS)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(starts)))
    if n_workers == 1:
        for r0 in starts:
            yield from _row_block(hashes, r0, max_distance)
        return
    with ThreadPoolExecutor(n_workers, thread_name_prefix="near-dup") as pool:
        for pairs in pool.map(lambda r0: list(_row_block(hashes, r0, max_distance)), starts):
            yield from pairs


def _row_block(hashes: np.ndarray, r0: int, max_distance: int) -> Iterator[tuple[int, int, int]]:
    """The pairs of :func:`near_pairs` whose first index is in rows ``r0 : r0 + _ROWS``."""
    n, k = hashes.shape
    r1 = min(n, r0 + _ROWS)
    whole = hashes[:, 0]
    xor = np.empty((_ROWS, _COLS), np.uint64)
    bits = np.empty((_ROWS, _COLS), np.uint8)
    best = np.empty((_ROWS, _COLS), np.uint8)
    for c0 in range(r0, n, _COLS):
        c1 = min(n, c0 + _COLS)
        x, b = xor[: r1 - r0, : c1 - c0], bits[: r1 - r0, : c1 - c0]
        m = best[: r1 - r0, : c1 - c0]
        m.fill(255)
        for v in range(k):
            np.bitwise_xor(whole[r0:r1, None], hashes[None, c0:c1, v], out=x)
            np.minimum(m, _bit_count(x, b), out=m)
            if v:
                np.bitwise_xor(hashes[r0:r1, v, None], whole[None, c0:c1], out=x)
                np.minimum(m, _bit_count(x, b), out=m)
        rows, cols = np.nonzero(m <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if r0 + r < c0 + c:
                yield r0 + r, c0 + c, int(m[r, c])


@dataclass
class NearDuplicateResult:
    """What the stage kept and rejected, and the counts the dataset card reports."""

    records: list[Record] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def drop_near_duplicates(
    records: Iterable[Record], *, max_distance: int | None = DEFAULT_MAX_DISTANCE
) -> NearDuplicateResult:
    """Group near-duplicates, reject all but one per part, and mark the groups for the split.

    Records without a hash (their detections were stored by an older version) are kept as they
    are and counted under ``unhashed``. ``max_distance=None`` turns the stage off.
    """
    check_max_distance(max_distance, "max_distance")
    recs = sorted(records, key=lambda r: (r.source, r.file_name))
    for rec in recs:
        rec.duplicate_group = None  # decided afresh from this build's images
    result = NearDuplicateResult()
    hashed = [r for r in recs if r.phash is not None]
    stats: dict[str, Any] = {
        "max_distance": max_distance,
        "images": len(recs),
        "unhashed": len(recs) - len(hashed),
        "groups": 0,
        "grouped_images": 0,
        "rejected": 0,
        "rejected_by_source": {},
        "cross_part_groups": 0,
        "cross_source_groups": 0,
    }
    result.stats = stats
    if stats["unhashed"]:
        log.warning(
            "near-duplicates: %d image(s) have no perceptual hash (detections stored by an "
            "older version?) and are not compared",
            stats["unhashed"],
        )
    if max_distance is None or len(hashed) < 2:
        result.records = recs
        return result
    values = np.array([[int(h, 16) for h in r.phash] for r in hashed], dtype=np.uint64)  # type: ignore[union-attr]
    parent = list(range(len(hashed)))
    distance: dict[tuple[int, int], int] = {}
    for i, j, d in near_pairs(values, max_distance):
        distance[(i, j)] = d
        a, b = _find(parent, i), _find(parent, j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(hashed)):
        members[_find(parent, i)].append(i)

    rejected: set[int] = set()
    by_source: Counter[str] = Counter()
    for group in members.values():
        if len(group) < 2:
            continue
        stats["groups"] += 1
        stats["grouped_images"] += len(group)
        stats["cross_source_groups"] += len({hashed[i].source for i in group}) > 1
        first_in_part: dict[str, int] = {}
        for i in group:  # (source, file name) order, as sorted above
            rec = hashed[i]
            keep = first_in_part.setdefault(rec.part, i)
            if keep == i:
                continue
            kept = hashed[keep]
            d = distance.get((min(i, keep), max(i, keep)))
            how = f"{d} bit(s) from" if d is not None else "in one near-duplicate group with"
            result.rejections.append(
                Rejection.from_record(
                    rec,
                    REASON,
                    _STAGE,
                    f"perceptual hash {how} {kept.source}/{kept.file_name} "
                    f"(max_distance {max_distance})",
                )
            )
            rejected.add(i)
            by_source[rec.source] += 1
        kept_ids = [hashed[i].image_id or "" for i in first_in_part.values()]
        if len(first_in_part) > 1:
            stats["cross_part_groups"] += 1
        for i in first_in_part.values():
            hashed[i].duplicate_group = min(kept_ids) if len(kept_ids) > 1 else None
    stats["rejected"] = len(rejected)
    stats["rejected_by_source"] = dict(sorted(by_source.items()))
    result.records = [r for i, r in enumerate(hashed) if i not in rejected]
    result.records += [r for r in recs if r.phash is None]
    log.info(
        "near-duplicates (<= %d bits): %d group(s) of %d image(s); %d rejected within a part, "
        "%d group(s) span both parts",
        max_distance,
        stats["groups"],
        stats["grouped_images"],
        stats["rejected"],
        stats["cross_part_groups"],
    )
    return result


def near_duplicate_counts(
    records: Iterable[Record], rejections: Iterable[Rejection]
) -> dict[str, Any]:
    """What the dataset card reports: near-duplicates rejected (per source), and the groups
    whose copies stay in both parts, each in one split."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for rec in records:
        if rec.duplicate_group is not None:
            groups[rec.duplicate_group].append(rec)
    rejected = Counter(r.source for r in rejections if r.reason == REASON)
    return {
        "rejected": sum(rejected.values()),
        "rejected_by_source": dict(sorted(rejected.items())),
        "cross_part_groups": len(groups),
        "cross_part_images": sum(len(g) for g in groups.values()),
        "cross_part_test_groups": sum(g[0].split == "test" for g in groups.values()),
    }


def card_lines(counts: Mapping[str, Any] | None) -> list[str]:
    """The card's near-duplicate section (Markdown lines) from :func:`near_duplicate_counts`."""
    if not counts:
        return []
    by_source = ", ".join(f"{k} {v}" for k, v in counts["rejected_by_source"].items()) or "none"
    return [
        "",
        "### Near-duplicates",
        "",
        "Copies of one photo that differ in bytes (re-encoded, resized, cropped by up to a tenth "
        "of each side) are found by perceptual hash (the `phash` column: the whole image, then "
        "centre crops). Within a part all but the first are rejected (`near_duplicate`, naming "
        "the copy kept); copies kept in both parts share a `duplicate_group` and one split.",
        "",
        f"- rejected as near-duplicates within a part: {counts['rejected']} ({by_source})",
        f"- groups kept in both parts: {counts['cross_part_groups']} "
        f"({counts['cross_part_images']} images; {counts['cross_part_test_groups']} in test)",
    ]
