"""Scores: per-source min-max normalisation (SPEC 2.3, paper Eq. 1) and MOS from per-rater rows.

Both are strict: a constant source is an error with a message, and a rating that is not a
number, out of the declared scale or duplicated for the same (image, rater) is rejected with a
reason, never clipped or averaged in.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotation_schema import load_standard
from hae_data.defaults import MIN_RATERS
from hae_data.levels import SCORE_DECIMALS, score_to_level
from hae_data.records import RATING_STAGE, Record, Rejection

__all__ = [
    "ConstantScoresError",
    "MosResult",
    "aggregate_mos",
    "apply_levels",
    "check_min_raters",
    "minmax_normalise",
    "normalise_by_source",
]

log = logging.getLogger(__name__)


class ConstantScoresError(ValueError):
    """Min-max normalisation is undefined: every score of the source is the same."""


def minmax_normalise(values: Sequence[float] | np.ndarray, *, source: str = "") -> np.ndarray:
    """``(x - min x) / (max x - min x)`` over ``values``; raises on NaN or constant input."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    where = f" of source {source!r}" if source else ""
    if np.isnan(x).any():
        raise ValueError(f"scores{where} contain NaN; reject those items before normalising")
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        raise ConstantScoresError(
            f"all {x.size} scores{where} equal {lo}: min-max normalisation needs at least two "
            "distinct scores (check the label file, or the face filter kept too few images)"
        )
    return (x - lo) / (hi - lo)


def normalise_by_source(records: Iterable[Record]) -> tuple[list[Record], list[Rejection]]:
    """Set ``score`` of overall records by min-max over their source's raw scores.

    Fine-grained records keep their MOS scale ([0,1] already) and pass through, with ``score``
    set to their Overall Aesthetic dimension when unset. An overall record whose ``score`` is
    already set was normalised by its publisher (the public release's ``label.jsonl``, SPEC
    2.4) and passes through as it is: it neither moves nor takes part in its source's min and
    max. A source whose scores are all equal cannot be normalised: its records come back as
    ``constant_scores`` rejections instead of stopping the whole build.
    """
    kept: list[Record] = []
    rejected: list[Rejection] = []
    by_source: dict[str, list[Record]] = defaultdict(list)
    root = load_standard().root
    for rec in records:
        if rec.part == "overall" and rec.score is None:
            by_source[rec.source].append(rec)
            continue
        if rec.score is None:
            # The 12-dimension MOS is already in [0,1]; its overall score is the root dimension.
            rec.score = rec.dimension_scores[root - 1] if rec.dimension_scores else rec.raw_score
        kept.append(rec)
    for source, recs in by_source.items():
        try:
            normed = minmax_normalise([r.raw_score for r in recs], source=source)
        except ValueError as exc:
            log.error("%s", exc)
            reason = "constant_scores" if isinstance(exc, ConstantScoresError) else "nan"
            rejected.extend(Rejection.from_record(r, reason, "normalise", str(exc)) for r in recs)
            continue
        for rec, value in zip(recs, normed, strict=True):
            rec.score = float(value)
            kept.append(rec)
    return kept, rejected


def apply_levels(record: Record) -> Record:
    """Set ``level`` (and ``dimension_levels`` for 12-dimension rows) from the scores."""
    if record.score is None:
        raise ValueError(f"{record.file_name}: score must be set before levels")
    record.level = score_to_level(record.score)
    if record.dimension_scores is not None:
        record.dimension_levels = [score_to_level(s) for s in record.dimension_scores]
    return record


def check_min_raters(min_raters: int) -> int:
    """``min_raters`` if it is at least 1; a ``ValueError`` naming it otherwise."""
    if min_raters < 1:
        raise ValueError(f"min_raters must be >= 1, got {min_raters}")
    return min_raters


@dataclass(frozen=True)
class MosResult:
    """Per-image MOS: ``table`` is indexed by image with, per column ``c``, ``c`` (mean) and
    ``c_std``, plus ``rater_count``; ``rejections`` lists every dropped rating and image."""

    table: pd.DataFrame
    rejections: list[Rejection]


def aggregate_mos(
    ratings: pd.DataFrame,
    columns: Sequence[str],
    *,
    source: str,
    scale: tuple[float, float] = (0.0, 1.0),
    min_raters: int = MIN_RATERS,
    image_col: str = "image",
    rater_col: str = "rater",
) -> MosResult:
    """Mean, sample std and rater count per image and column, from one row per (image, rater).

    Means are rounded to :data:`hae_data.levels.SCORE_DECIMALS` decimals (no float noise).

    A rating row is dropped, with a reason, when a value is missing or not a number
    (``non_numeric_rating``), outside ``scale`` (``rating_out_of_range``), when the image or
    rater id is empty (``malformed_rating_row``), or when the same rater rated the same image
    twice (``duplicate_rating``: all copies go, since neither can be trusted). An image left with
    fewer than ``min_raters`` valid ratings is rejected as ``too_few_raters``.
    """
    check_min_raters(min_raters)
    missing = [c for c in (image_col, rater_col, *columns) if c not in ratings.columns]
    if missing:
        raise KeyError(f"rating table lacks column(s) {missing}; has {list(ratings.columns)}")
    lo, hi = scale
    df = ratings[[image_col, rater_col, *columns]].copy()
    rejections: list[Rejection] = []

    def reject_rows(mask: pd.Series, reason: str, describe: object) -> None:
        for _, row in df[mask].iterrows():
            rejections.append(
                Rejection(
                    source=source,
                    file_name=str(row[image_col]),
                    reason=reason,
                    stage=RATING_STAGE,
                    detail=describe(row),  # type: ignore[operator]
                )
            )

    ids_bad = df[image_col].isna() | (df[image_col].astype(str).str.strip() == "")
    ids_bad |= df[rater_col].isna() | (df[rater_col].astype(str).str.strip() == "")
    reject_rows(ids_bad, "malformed_rating_row", lambda r: f"empty image or rater id: {dict(r)}")
    df = df[~ids_bad]

    numeric = df[list(columns)].apply(pd.to_numeric, errors="coerce")
    non_numeric = numeric.isna().any(axis=1)

    def bad_values(row: pd.Series) -> str:
        bad = [f"{c}={row[c]!r}" for c in columns if _not_number(row[c])]
        return f"rater {row[rater_col]}: not a number: {', '.join(bad)}"

    reject_rows(non_numeric, "non_numeric_rating", bad_values)
    df, numeric = df[~non_numeric], numeric[~non_numeric]

    out_of_range = ((numeric < lo) | (numeric > hi)).any(axis=1)

    def range_values(row: pd.Series) -> str:
        vals = {c: float(row[c]) for c in columns}
        bad = [f"{c}={v}" for c, v in vals.items() if not lo <= v <= hi]
        return f"rater {row[rater_col]}: outside [{lo}, {hi}]: {', '.join(bad)}"

    df = df.assign(**{c: numeric[c] for c in columns})
    reject_rows(out_of_range, "rating_out_of_range", range_values)
    df = df[~out_of_range]

    keys = df[image_col].astype(str) + "\x00" + df[rater_col].astype(str)
    dup = keys.duplicated(keep=False)
    reject_rows(dup, "duplicate_rating", lambda r: f"rater {r[rater_col]} rated this image twice")
    df = df[~dup]

    grouped = df.groupby(df[image_col].astype(str), sort=True)
    # Rounded so a mean that is exact in decimal is stored exactly (0.6, not 0.6000000000000001):
    # free, since ratings carry a few decimals at most, and the stored score then bins as shown.
    means = grouped[list(columns)].mean().round(SCORE_DECIMALS)
    stds = grouped[list(columns)].std(ddof=1).add_suffix("_std")
    counts = grouped.size().rename("rater_count")
    table = pd.concat([means, stds, counts], axis=1)

    # Images whose every rating was dropped still need a verdict of their own.
    all_images = pd.Index(ratings[image_col].dropna().astype(str).unique())
    all_images = all_images[all_images.str.strip() != ""]
    table = table.reindex(all_images.union(table.index))
    table["rater_count"] = table["rater_count"].fillna(0).astype(int)
    few = table["rater_count"] < min_raters
    for image, count in table.loc[few, "rater_count"].items():
        rejections.append(
            Rejection(
                source=source,
                file_name=str(image),
                reason="too_few_raters",
                stage="mos",
                detail=f"{count} valid rating(s), need at least {min_raters}",
            )
        )
    table = table[~few].sort_index()
    table.index.name = image_col
    if rejections:
        log.info("%s: MOS dropped %d rating row(s)/image(s)", source, len(rejections))
    return MosResult(table=table, rejections=rejections)


def _not_number(value: object) -> bool:
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
