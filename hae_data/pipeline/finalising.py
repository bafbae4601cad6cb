"""The finalise stage: de-duplicate (same bytes, then near-duplicates), normalise scores per
source, levels and QA pairs, train/test split."""

from __future__ import annotations

from collections.abc import Iterable

from hae_data.near_duplicates import DEFAULT_MAX_DISTANCE, drop_near_duplicates
from hae_data.pipeline.stage_result import StageResult
from hae_data.qa import make_qa
from hae_data.records import Record, Rejection
from hae_data.scores import apply_levels, normalise_by_source
from hae_data.split import DEFAULT_QUICK_PER_SOURCE, DEFAULT_TEST_FRACTION, assign_splits

__all__ = ["drop_duplicates", "finalise"]


def drop_duplicates(records: Iterable[Record]) -> StageResult:
    """Keep one record per (part, image_id): the first in (source, file name) order, so the
    choice does not depend on arrival order. The other copies (the same photo in two sources,
    say) become ``duplicate_image`` rejections naming the copy that was kept."""
    result = StageResult()
    seen: dict[tuple[str, str], Record] = {}
    for rec in sorted(records, key=lambda r: (r.source, r.file_name)):
        key = (rec.part, rec.image_id or "")
        first = seen.get(key)
        if first is None or rec.image_id is None:
            seen[key] = rec
            result.records.append(rec)
            continue
        result.rejections.append(
            Rejection.from_record(
                rec, "duplicate_image", "dedupe", f"same bytes as {first.source}/{first.file_name}"
            )
        )
    return result


def finalise(
    records: Iterable[Record],
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    quick_per_source: int = DEFAULT_QUICK_PER_SOURCE,
    near_duplicate_distance: int | None = DEFAULT_MAX_DISTANCE,
) -> StageResult:
    """De-duplicate (same bytes, then near-duplicates within ``near_duplicate_distance`` bits of
    perceptual hash; None: off), min-max normalise per source, set levels and QA pairs, and
    split (a near-duplicate group gets one split)."""
    deduped = drop_duplicates(records)
    near = drop_near_duplicates(deduped.records, max_distance=near_duplicate_distance)
    kept, rejected = normalise_by_source(near.records)
    for rec in kept:
        make_qa(apply_levels(rec))
    assign_splits(kept, test_fraction=test_fraction, quick_per_source=quick_per_source)
    return StageResult(records=kept, rejections=deduped.rejections + near.rejections + rejected)
