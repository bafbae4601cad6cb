"""Rater reliability of 12-dimension annotations: how much the raters agree, and who does not.

Three figures, all on the [0, 1] ratings of the project's annotation rows (SPEC 2.4):

- **Per dimension, Krippendorff's alpha (interval metric)** over images ("units") and raters,
  with a percentile bootstrap confidence interval over images. Alpha is 1 for perfect
  agreement, 0 when raters agree no better than chance, and tolerates missing ratings (each
  image is rated by a different subset of raters), which ICC(2,k) does not.
  The point estimate on per-rater rows is computed by the maintained ``krippendorff`` package
  (Castro, https://github.com/pln-fing-udelar/fast-krippendorff, ``krippendorff.alpha(...,
  level_of_measurement="interval")``) whenever it fits: a small value domain (any rating
  scale) and a dense raters x images matrix of at most 2 million cells. The bootstrap
  replicates, continuous values (the package would build a value-by-value coincidence
  matrix) and large batches (the 50K part: 368 raters x 50,000 images) use the closed form
  below, which the tests check against the package to 1e-9; ``method`` says which answered.
- **Per rater**, the Pearson correlation of their ratings with the mean of the *other* raters of
  the same image (leave-one-out mean), per dimension and averaged over dimensions, and the
  number of images rated.
- **An optional screen**: a rater whose mean leave-one-out correlation is below a threshold (or
  whose ratings never vary) is excluded, with the reason recorded; raters with too few
  compared images to judge are kept and flagged.

Closed form (Krippendorff 2011, "Computing Krippendorff's alpha-reliability", interval
metric delta^2 = (a - b)^2): with ``m_u`` pairable values in unit ``u`` (units with a single
value are dropped), ``n = sum m_u``, ``S1_u`` / ``S2_u`` the sum and sum of squares of the
unit's values, the ordered-pair sum of squared differences inside a unit is
``2 (m_u S2_u - S1_u^2)``, so::

    D_o = (1/n) sum_u 2 (m_u S2_u - S1_u^2) / (m_u - 1)
    D_e = 2 (n sum S2 - (sum S1)^2) / (n (n - 1))
    alpha = 1 - D_o / D_e

Everything needed is per-unit ``(m, S1, S2)``, which a per-image mean, sample standard
deviation and rater count also give exactly (``S1 = m * mean``, ``S2 = (m - 1) std^2 + m
mean^2``): that is how :func:`records_reliability` computes alpha for a build's exported
images, from the rows the export already has. A bootstrap replicate resamples images with
replacement, which only reweights the per-unit sums.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from annotation_schema import load_standard

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_MIN_IMAGES",
    "SCREEN_REASON",
    "DimensionAgreement",
    "RaterAgreement",
    "ReliabilityReport",
    "alpha_from_unit_stats",
    "assess_reliability",
    "bootstrap_alpha",
    "krippendorff_alpha",
    "rater_agreement",
    "records_reliability",
    "reliability_markdown",
    "reliability_text",
    "unit_stats",
    "unit_stats_from_summary",
]

log = logging.getLogger(__name__)

#: Bootstrap replicates for the confidence interval (resampling images).
DEFAULT_BOOTSTRAP = 1000
#: A rater is judged by the screen only after this many images shared with other raters.
DEFAULT_MIN_IMAGES = 10
#: Beyond these the ``krippendorff`` package's matrices (values x values, raters x images) get
#: large and slow; the closed form gives the same number in O(ratings) from per-image sums.
_LIBRARY_MAX_DISTINCT = 512
_LIBRARY_MAX_CELLS = 2_000_000
#: Reason of the rating rows of a rater the screen excluded (set by the 50K loader).
SCREEN_REASON = "unreliable_rater"
#: Raters listed in the text report besides the excluded ones (the least agreeing first).
_SHOWN = 15


@dataclass(frozen=True)
class DimensionAgreement:
    """Agreement on one dimension: alpha with its bootstrap interval, and what it rests on."""

    key: str
    name: str
    alpha: float | None
    ci_low: float | None
    ci_high: float | None
    #: Images with at least two ratings (the only ones alpha can use) and their ratings.
    images: int
    ratings: int


@dataclass(frozen=True)
class RaterAgreement:
    """One rater: leave-one-out correlation per dimension and its mean, and the screen's verdict."""

    rater: str
    images: int
    #: Images this rater shares with at least one other rater (what the correlation rests on).
    compared: int
    correlation: float | None
    per_dimension: dict[str, float | None]
    excluded: bool = False
    reason: str | None = None


@dataclass
class ReliabilityReport:
    """Agreement per dimension and per rater, and the screen's settings and exclusions."""

    dimensions: list[DimensionAgreement]
    raters: list[RaterAgreement]
    method: str
    confidence: float
    bootstrap: int
    min_correlation: float | None = None
    min_images: int = DEFAULT_MIN_IMAGES
    duplicates_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def excluded(self) -> list[RaterAgreement]:
        """Raters the screen excluded."""
        return [r for r in self.raters if r.excluded]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        out = asdict(self)
        out["excluded"] = [r.rater for r in self.excluded]
        return out

    def to_text(self) -> str:
        """A readable multi-line summary (what ``inspect`` prints)."""
        return reliability_text(self.to_dict())


def reliability_text(report: Mapping[str, Any]) -> str:
    """:meth:`ReliabilityReport.to_text` from the report's plain-data form (``to_dict``)."""
    pct = round(float(report["confidence"]) * 100)
    lines = [f"  rater reliability ({report['method']}; {pct}% bootstrap CI over images):"]
    for d in report["dimensions"]:
        lines.append(f"    {d['name']}: alpha {_fmt_alpha(d)}  ({d['images']} images)")
    raters = report["raters"]
    lines.append(f"  raters: {len(raters)}; correlation with the others' leave-one-out mean:")
    ranked = sorted(raters, key=lambda r: (_sort_key(r["correlation"]), r["rater"]))
    # The least agreeing raters first; every excluded one, then at most _SHOWN others.
    shown = [r for r in ranked if r["excluded"]]
    shown += [r for r in ranked if not r["excluded"]][:_SHOWN]
    for r in shown:
        corr = "-" if r["correlation"] is None else f"{r['correlation']:.3f}"
        flag = f"  EXCLUDED: {r['reason']}" if r["excluded"] else ""
        if r["reason"] and not r["excluded"]:
            flag = f"  ({r['reason']})"
        lines.append(f"    {r['rater']}: r={corr}  images={r['images']}{flag}"[:220])
    if len(shown) < len(raters):
        lines.append(f"    ... {len(raters) - len(shown)} more, agreeing more (all with --json)")
    if report["min_correlation"] is not None:
        lines.append(
            f"  screen: exclude raters below r={report['min_correlation']:g} (judged after "
            f"{report['min_images']} shared images): {len(report['excluded'])} excluded"
        )
    lines.extend(f"  note: {n}" for n in report["notes"])
    return "\n".join(lines)


def _sort_key(value: float | None) -> float:
    return math.inf if value is None else value


def _fmt_alpha(d: Mapping[str, Any]) -> str:
    alpha, lo, hi = d["alpha"], d["ci_low"], d["ci_high"]
    if alpha is None:
        return "-"
    ci = "" if lo is None else f" [{lo:.3f}, {hi:.3f}]"
    return f"{alpha:.3f}{ci}"


# -- Krippendorff's alpha, interval metric ----------------------------------------------------


def unit_stats(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit ``(m, S1, S2)`` of a ``[raters, units]`` (or ``[raters, units, dims]``) matrix
    with NaN for a missing rating."""
    x = np.asarray(matrix, dtype=np.float64)
    present = ~np.isnan(x)
    filled = np.where(present, x, 0.0)
    return present.sum(axis=0).astype(np.float64), filled.sum(axis=0), (filled**2).sum(axis=0)


def unit_stats_from_summary(
    means: np.ndarray, stds: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(m, S1, S2)`` from per-unit mean, sample std (ddof=1) and count: exact, since the
    interval alpha only needs sums and sums of squares. Units with a NaN std count as single."""
    mean = np.asarray(means, dtype=np.float64)
    std = np.asarray(stds, dtype=np.float64)
    m = np.broadcast_to(
        np.asarray(counts, dtype=np.float64).reshape(-1, *([1] * (mean.ndim - 1))), mean.shape
    )
    m = np.where(np.isnan(std) | np.isnan(mean), 0.0, m)  # no spread known: not pairable
    s1 = np.where(m > 0, m * np.nan_to_num(mean), 0.0)
    s2 = np.where(m > 0, (m - 1) * np.nan_to_num(std) ** 2 + m * np.nan_to_num(mean) ** 2, 0.0)
    return m, s1, s2


def alpha_from_unit_stats(m: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Interval alpha along axis 0 (units) from per-unit sums; NaN where it is undefined (fewer
    than two pairable values, or no variation at all)."""
    m = np.asarray(m, dtype=np.float64)
    pairable = m >= 2
    mm = np.where(pairable, m, 0.0)
    a1 = np.where(pairable, s1, 0.0)
    a2 = np.where(pairable, s2, 0.0)
    within = np.where(pairable, 2.0 * (mm * a2 - a1**2) / np.where(pairable, mm - 1.0, 1.0), 0.0)
    return _alpha(mm.sum(axis=0), a1.sum(axis=0), a2.sum(axis=0), within.sum(axis=0))


def _alpha(n: np.ndarray, t1: np.ndarray, t2: np.ndarray, within: np.ndarray) -> np.ndarray:
    """alpha from pooled totals; ``within`` = sum over units of the D_o numerators."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_o = within / n
        d_e = 2.0 * (n * t2 - t1**2) / (n * (n - 1.0))
        alpha = 1.0 - d_o / d_e
    # Rounding can leave a tiny negative D_e for constant data: that is "no variation", not alpha.
    return np.where((n >= 2) & (d_e > 1e-15), alpha, np.nan)


def bootstrap_alpha(
    m: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    *,
    replicates: int = DEFAULT_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of alpha per column, resampling units (images) with
    replacement; ``(low, high)`` arrays (NaN where alpha is undefined)."""
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    m = np.asarray(m, dtype=np.float64)
    m2 = m.reshape(m.shape[0], -1)
    pairable = m2 >= 2
    mm = np.where(pairable, m2, 0.0)
    a1 = np.where(pairable, np.asarray(s1, dtype=np.float64).reshape(m2.shape), 0.0)
    a2 = np.where(pairable, np.asarray(s2, dtype=np.float64).reshape(m2.shape), 0.0)
    within = np.where(pairable, 2.0 * (mm * a2 - a1**2) / np.where(pairable, mm - 1.0, 1.0), 0.0)
    # One matrix of per-unit sums: a replicate is a vector of draw counts per unit, so each
    # replicate's totals are one matrix product (no per-replicate Python loop over units).
    per_unit = np.concatenate([mm, a1, a2, within], axis=1)
    units, cols = m2.shape
    rng = np.random.default_rng(seed)
    alphas = np.empty((replicates, cols))
    for start in range(0, replicates, chunk):
        b = min(chunk, replicates - start)
        draws = rng.integers(0, units, size=(b, units))
        flat = (draws + (np.arange(b) * units)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * units).reshape(b, units).astype(np.float64)
        totals = counts @ per_unit
        n, t1, t2, w = np.split(totals, 4, axis=1)
        alphas[start : start + b] = _alpha(n, t1, t2, w)
    tail = (1.0 - confidence) / 2.0 * 100.0
    with np.errstate(invalid="ignore"):
        defined = ~np.isnan(alphas).all(axis=0)
        low = np.full(cols, np.nan)
        high = np.full(cols, np.nan)
        if defined.any():
            low[defined] = np.nanpercentile(alphas[:, defined], tail, axis=0)
            high[defined] = np.nanpercentile(alphas[:, defined], 100.0 - tail, axis=0)
    shape = m.shape[1:]
    return low.reshape(shape), high.reshape(shape)


def krippendorff_alpha(matrix: np.ndarray) -> tuple[float, str]:
    """Interval alpha of one ``[raters, units]`` matrix (NaN = missing) and how it was computed:
    by the ``krippendorff`` package when the value domain is small, else by the closed form."""
    x = np.asarray(matrix, dtype=np.float64)
    values = np.unique(x[~np.isnan(x)])
    m, s1, s2 = unit_stats(x)
    closed = float(alpha_from_unit_stats(m, s1, s2))
    if math.isnan(closed):
        return closed, "undefined"
    if len(values) <= _LIBRARY_MAX_DISTINCT and x.size <= _LIBRARY_MAX_CELLS:
        import krippendorff

        keep = m >= 2  # the package raises on units nobody pairs; they carry no information
        result = float(
            krippendorff.alpha(
                reliability_data=x[:, keep],
                level_of_measurement="interval",
                value_domain=values,
            )
        )
        return result, f"krippendorff {_package_version('krippendorff')}"
    return closed, "closed form"


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "(version unknown)"


# -- per-rater rows ---------------------------------------------------------------------------


def _deduplicate(df: pd.DataFrame, image_col: str, rater_col: str) -> tuple[pd.DataFrame, int]:
    """Drop every copy of an (image, rater) pair rated twice, as the MOS does."""
    keys = df[image_col].astype(str) + "\x00" + df[rater_col].astype(str)
    dup = keys.duplicated(keep=False)
    return df[~dup], int(dup.sum())


def _unit_table(
    df: pd.DataFrame, keys: Sequence[str], image_col: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Index]:
    """Per-image ``(m, S1, S2)`` as ``[images, dims]`` arrays (images in sorted order), from
    the long table: never a raters x images matrix (368 x 50,000 x 12 would be 1.8 GB)."""
    codes, images = pd.factorize(df[image_col].astype(str), sort=True)
    m, s1, s2 = _image_sums(df[list(keys)].to_numpy(dtype=np.float64), codes, len(images))
    return m, s1, s2, pd.Index(images)


def _image_sums(
    values: np.ndarray, codes: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, sum and sum of squares of the non-NaN ``values`` per image code: ``[n, dims]``."""
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)

    def per_image(weights: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                np.bincount(codes, weights=weights[:, j], minlength=n)
                for j in range(values.shape[1])
            ],
            axis=1,
        )

    return per_image(present.astype(np.float64)), per_image(filled), per_image(filled**2)


def _rater_matrix(
    df: pd.DataFrame, key: str, images: pd.Index, image_col: str, rater_col: str
) -> np.ndarray:
    """``[raters, images]`` ratings of one dimension, NaN where a rater did not rate."""
    raters = pd.Index(sorted(df[rater_col].astype(str).unique()))
    out = np.full((len(raters), len(images)), np.nan)
    rr = raters.get_indexer(df[rater_col].astype(str))
    ii = images.get_indexer(df[image_col].astype(str))
    out[rr, ii] = df[key].to_numpy(dtype=np.float64)
    return out


def rater_agreement(
    df: pd.DataFrame,
    keys: Sequence[str],
    *,
    image_col: str = "image",
    rater_col: str = "rater",
) -> list[RaterAgreement]:
    """Per rater: Pearson r of their ratings with the mean of the other raters of each image,
    per dimension (over the images they share with at least one other rater; ``None`` with
    fewer than 3 such images or no variation) and the mean over dimensions."""
    df, _ = _deduplicate(df, image_col, rater_col)
    values = df[list(keys)].to_numpy(dtype=np.float64)
    # Integer codes, not string keys: group sums by bincount cost O(rows).
    codes, images = pd.factorize(df[image_col].astype(str))
    count, total, _ = _image_sums(values, codes, len(images))
    c, s = count[codes], total[codes]
    with np.errstate(divide="ignore", invalid="ignore"):
        others = np.where(c >= 2, (s - values) / (c - 1), np.nan)  # leave-one-out mean
    out = []
    # Rows sorted by rater once, then one contiguous slice per rater: a boolean mask over all
    # rows per rater would cost raters x rows (368 x 450,000 for the 50K part).
    rater_codes, names = pd.factorize(df[rater_col].astype(str), sort=True)
    order = np.argsort(rater_codes, kind="stable")
    starts = np.searchsorted(rater_codes[order], np.arange(len(names)))
    ends = [*starts[1:], len(order)]
    for rater, start, end in zip(names, starts, ends, strict=True):
        rows = order[start:end]
        per: dict[str, float | None] = {}
        for j, key in enumerate(keys):
            x, y = values[rows, j], others[rows, j]
            ok = ~np.isnan(x) & ~np.isnan(y)
            per[key] = _pearson(x[ok], y[ok])
        defined = [v for v in per.values() if v is not None]
        compared = int((~np.isnan(others[rows]).all(axis=1)).sum())
        out.append(
            RaterAgreement(
                rater=str(rater),
                images=len(rows),
                compared=compared,
                correlation=float(np.mean(defined)) if defined else None,
                per_dimension=per,
            )
        )
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def screen(
    raters: Iterable[RaterAgreement], min_correlation: float, min_images: int
) -> list[RaterAgreement]:
    """The raters with the screen's verdict: excluded below ``min_correlation`` (or with
    ratings that never vary) once they share ``min_images`` images with others."""
    if not -1.0 <= min_correlation <= 1.0:
        raise ValueError(f"min_correlation must be in [-1, 1], got {min_correlation}")
    if min_images < 3:
        raise ValueError(
            f"min_images must be >= 3 (a correlation needs 3 points), got {min_images}"
        )
    out = []
    for r in raters:
        if r.compared < min_images:
            reason = f"not judged: {r.compared} shared image(s) < {min_images}"
            out.append(_replace(r, excluded=False, reason=reason))
        elif r.correlation is None:
            reason = f"ratings never vary over {r.compared} shared images: correlation undefined"
            out.append(_replace(r, excluded=True, reason=reason))
        elif r.correlation < min_correlation:
            reason = (
                f"mean correlation {r.correlation:.3f} with the others' mean over "
                f"{r.compared} shared images < {min_correlation:g}"
            )
            out.append(_replace(r, excluded=True, reason=reason))
        else:
            out.append(r)
    return out


def _replace(r: RaterAgreement, **changes: Any) -> RaterAgreement:
    from dataclasses import replace

    return replace(r, **changes)


def assess_reliability(
    ratings: pd.DataFrame,
    keys: Sequence[str] | None = None,
    *,
    image_col: str = "image",
    rater_col: str = "rater",
    bootstrap: int = DEFAULT_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
    min_correlation: float | None = None,
    min_images: int = DEFAULT_MIN_IMAGES,
) -> ReliabilityReport:
    """Agreement per dimension (alpha + bootstrap CI) and per rater (leave-one-out r) on one
    row per (image, rater) with numeric [0, 1] columns ``keys`` (the standard's by default).

    Pairs rated twice are dropped (both copies, as the MOS does) before anything is computed;
    with ``min_correlation`` the screen's verdict is recorded on each rater (nothing is
    removed here: :meth:`ReliabilityReport.excluded` says whom to drop).
    """
    std = load_standard()
    keys = tuple(keys or std.keys)
    names = {d.key: d.name for d in std.dimensions}
    df, dups = _deduplicate(ratings[[image_col, rater_col, *keys]], image_col, rater_col)
    notes = [f"{dups} rating row(s) of (image, rater) pairs rated twice left out"] if dups else []
    m, s1, s2, images = _unit_table(df, keys, image_col)  # [images, dims]
    low, high = (
        bootstrap_alpha(m, s1, s2, replicates=bootstrap, confidence=confidence, seed=seed)
        if len(df)
        else (np.full(len(keys), np.nan), np.full(len(keys), np.nan))
    )
    methods = set()
    dims = []
    for j, key in enumerate(keys):
        if len(df):
            cells = len(images) * df[rater_col].nunique()
            if cells <= _LIBRARY_MAX_CELLS:
                matrix = _rater_matrix(df, key, images, image_col, rater_col)
                alpha, method = krippendorff_alpha(matrix)
            else:
                alpha, method = (
                    float(alpha_from_unit_stats(m[:, j], s1[:, j], s2[:, j])),
                    "closed form",
                )
            methods.add(method)
        else:
            alpha = math.nan
        pairable = m[:, j] >= 2
        dims.append(
            DimensionAgreement(
                key=key,
                name=names.get(key, key),
                alpha=_num(alpha),
                ci_low=_num(low[j]),
                ci_high=_num(high[j]),
                images=int(pairable.sum()),
                ratings=int(m[pairable, j].sum()),
            )
        )
    raters = rater_agreement(df, keys, image_col=image_col, rater_col=rater_col)
    if min_correlation is not None:
        raters = screen(raters, min_correlation, min_images)
    methods.discard("undefined")
    method = "Krippendorff's alpha, interval; " + (" + ".join(sorted(methods)) or "undefined")
    return ReliabilityReport(
        dimensions=dims,
        raters=raters,
        method=method,
        confidence=confidence,
        bootstrap=bootstrap,
        min_correlation=min_correlation,
        min_images=min_images,
        duplicates_dropped=dups,
        notes=notes,
    )


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


# -- from a build's exported rows (mean, std, count per image) --------------------------------


def records_reliability(
    records: Iterable[Any],
    rejections: Iterable[Any] = (),
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Alpha per dimension, with its bootstrap CI, over the 12-dimension records of a build
    (their ``dimension_scores``, ``dimension_std`` and ``rater_count``); ``None`` when no
    record carries a spread (no fine-grained rows, or released labels without raters).

    Per source, as ``{source: {"images": n, "screened_rating_rows": n, "dimensions": [{key,
    name, alpha, ci_low, ci_high}, ...]}}`` plus ``"confidence"`` and ``"bootstrap"``: plain
    data for stats.json. ``screened_rating_rows`` counts the source's ``unreliable_rater``
    rejections (rows of raters the loader's screen excluded)."""
    std = load_standard()
    screened = Counter(r.source for r in rejections if r.reason == SCREEN_REASON)
    by_source: dict[str, list[Any]] = {}
    for rec in records:
        if rec.dimension_scores is not None and rec.dimension_std is not None and rec.rater_count:
            by_source.setdefault(rec.source, []).append(rec)
    if not by_source:
        return None
    out: dict[str, Any] = {"confidence": confidence, "bootstrap": bootstrap, "sources": {}}
    for source, recs in sorted(by_source.items()):
        means = np.array([r.dimension_scores for r in recs], dtype=np.float64)
        stds = np.array([r.dimension_std for r in recs], dtype=np.float64)
        counts = np.array([r.rater_count for r in recs], dtype=np.float64)
        m, s1, s2 = unit_stats_from_summary(means, stds, counts)
        alpha = alpha_from_unit_stats(m, s1, s2)
        low, high = bootstrap_alpha(
            m, s1, s2, replicates=bootstrap, confidence=confidence, seed=seed
        )
        out["sources"][source] = {
            "images": len(recs),
            "screened_rating_rows": screened[source],
            "dimensions": [
                {
                    "key": d.key,
                    "name": d.name,
                    "alpha": _num(alpha[j]),
                    "ci_low": _num(low[j]),
                    "ci_high": _num(high[j]),
                }
                for j, d in enumerate(std.dimensions)
            ],
        }
    return out


def reliability_markdown(summary: Mapping[str, Any] | None) -> list[str]:
    """Markdown lines (a heading and one table per source) for a dataset card or a build
    report, from :func:`records_reliability`'s output; no lines when it is ``None``."""
    if not summary:
        return []
    pct = round(float(summary["confidence"]) * 100)
    lines = [
        "",
        "### Rater agreement (12-dimension part)",
        "",
        "Krippendorff's alpha (interval) per dimension over the exported images, computed from "
        "each image's mean, standard deviation and rater count, with a "
        f"{pct}% bootstrap interval over images ({summary['bootstrap']} replicates). "
        "1 is perfect agreement, 0 chance level.",
    ]
    for source, entry in summary["sources"].items():
        lines += [
            "",
            f"| {source} ({entry['images']} images) | alpha | {pct}% CI |",
            "|---|---:|---|",
        ]
        for d in entry["dimensions"]:
            alpha = "-" if d["alpha"] is None else f"{d['alpha']:.3f}"
            ci = "-" if d["ci_low"] is None else f"{d['ci_low']:.3f} - {d['ci_high']:.3f}"
            lines.append(f"| {d['name']} | {alpha} | {ci} |")
        if entry.get("screened_rating_rows"):
            lines += [
                "",
                f"The rater screen left out {entry['screened_rating_rows']} rating row(s) of "
                f"raters who agreed too little with the others (`{SCREEN_REASON}` in "
                "`rejected.parquet`, each with the rater's correlation).",
            ]
    return lines
