"""What ``python -m hae_data.sources inspect`` shows: a one-pass summary of a loaded source.

:func:`inspect_source` streams a source once, keeping running counts and ranges (never the
whole list of records), and returns an :class:`InspectReport` with counts, score ranges,
rejections by reason and a few example rows, as a dict (for ``--json``) or as text.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from annotation_schema import load_standard
from hae_data.records import Record, Rejection
from hae_data.reliability import reliability_text
from hae_data.sources.base import Source

__all__ = ["InspectReport", "Range", "inspect_source"]


@dataclass
class Range:
    """Running minimum, maximum and mean of a stream of numbers."""

    count: int = 0
    min: float | None = None
    max: float | None = None
    total: float = 0.0

    def add(self, value: float) -> None:
        """Take one value into account."""
        self.count += 1
        self.total += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    def to_dict(self) -> dict[str, float | int | None] | None:
        """``{count, min, max, mean}``, or None when no value was seen."""
        if not self.count:
            return None
        return {
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "mean": self.total / self.count,
        }


def _fmt(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    return f"{r['min']:.4g} .. {r['max']:.4g} (mean {r['mean']:.4g}, n={r['count']})"


@dataclass
class InspectReport:
    """Summary of one pass over a source."""

    source: str
    title: str
    root: str
    scale: tuple[float, float]
    layout_confirmed: bool
    items: int = 0
    kept: int = 0
    rejected: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    raw_score: dict[str, Any] | None = None
    mos: dict[str, Any] | None = None
    rater_count: dict[str, Any] | None = None
    outside_scale: int = 0
    dimensions: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    rejection_examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Where the images were found (:class:`~hae_data.sources.base.FolderChoice` as a dict).
    image_folder: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Rater agreement, for sources with per-rater 12-dimension rows (hae_data.reliability).
    reliability: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    def to_text(self) -> str:
        """A readable multi-line summary."""
        lo, hi = self.scale
        lines = [
            f"{self.title} ({self.source}) at {self.root}",
            f"  declared scale {lo:g}-{hi:g}"
            + ("" if self.layout_confirmed else "  [layout not confirmed: see the module doc]"),
            f"  items: {self.items}  kept: {self.kept}  rejected: {self.rejected}"
            f"  ({self.seconds:.2f} s)",
        ]
        if self.image_folder is not None:
            lines.append(f"  images: {self.image_folder['summary']}")
        lines.extend(f"  WARNING: {w}" for w in self.warnings)
        if self.parts:
            lines.append("  parts: " + ", ".join(f"{k}={v}" for k, v in sorted(self.parts.items())))
        if self.splits:
            lines.append(
                "  official split: " + ", ".join(f"{k}={v}" for k, v in sorted(self.splits.items()))
            )
        lines.append(f"  raw score: {_fmt(self.raw_score)}")
        lines.append(
            f"  MOS (computed from raters): {_fmt(self.mos)}"
            if self.mos
            else "  MOS: - (no per-rater data: the raw score is the published per-image score)"
        )
        if self.rater_count:
            lines.append(f"  raters per image: {_fmt(self.rater_count)}")
        if self.outside_scale:
            lines.append(
                f"  WARNING: {self.outside_scale} kept score(s) outside the declared scale"
            )
        if self.dimensions:
            lines.append("  dimension scores:")
            lines.extend(f"    {name}: {_fmt(r)}" for name, r in self.dimensions.items())
        if self.rejected_by_reason:
            lines.append("  rejected by reason:")
            lines.extend(
                f"    {reason}: {count}"
                for reason, count in sorted(self.rejected_by_reason.items(), key=lambda x: -x[1])
            )
        if self.examples:
            lines.append("  example records:")
            for ex in self.examples:
                extra = f"  raters={ex['rater_count']}" if ex.get("rater_count") is not None else ""
                lines.append(
                    f"    {ex['file_name']}  raw={ex['raw_score']:.4g}{extra}  {ex['metadata']}"[
                        :220
                    ]
                )
        if self.rejection_examples:
            lines.append("  example rejections:")
            for reason, exs in sorted(self.rejection_examples.items()):
                lines.extend(
                    f"    [{reason}] {ex['file_name']}: {ex['detail']}"[:220] for ex in exs
                )
        if self.reliability:
            lines.append(reliability_text(self.reliability))
        return "\n".join(lines)


def inspect_source(
    source: Source,
    *,
    examples: int = 3,
    progress: Callable[[int], None] | None = None,
) -> InspectReport:
    """Stream ``source`` once and summarise it; ``progress`` is called with the item count."""
    info = source.info
    report = InspectReport(
        source=info.name,
        title=info.title,
        root=str(source.root),
        scale=info.scale,
        layout_confirmed=info.layout_confirmed,
    )
    names = load_standard().names
    raw, mos, raters = Range(), Range(), Range()
    dims = [Range() for _ in names]
    parts: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    lo, hi = info.scale
    start = time.perf_counter()
    for item in source.iter_items():
        report.items += 1
        if progress is not None:
            progress(report.items)
        if isinstance(item, Rejection):
            reasons[item.reason] += 1
            bucket = report.rejection_examples.setdefault(item.reason, [])
            if len(bucket) < min(examples, 2):
                bucket.append(
                    {"file_name": item.file_name, "stage": item.stage, "detail": item.detail}
                )
            continue
        assert isinstance(item, Record)
        report.kept += 1
        parts[item.part] += 1
        if item.raw_score is not None:
            raw.add(item.raw_score)
            if item.rater_count is not None:
                mos.add(item.raw_score)
            if item.part == "overall" and not lo <= item.raw_score <= hi:
                report.outside_scale += 1
        if item.rater_count is not None:
            raters.add(item.rater_count)
        if item.dimension_scores is not None:
            for rng, value in zip(dims, item.dimension_scores, strict=False):
                rng.add(value)
        split = item.metadata.get("official_split")
        if split is not None:
            splits[str(split)] += 1
        if len(report.examples) < examples:
            report.examples.append(
                {
                    "source": item.source,
                    "file_name": item.file_name,
                    "part": item.part,
                    "raw_score": item.raw_score,
                    "rater_count": item.rater_count,
                    "score_std": item.score_std,
                    "dimension_scores": item.dimension_scores,
                    "metadata": item.metadata,
                }
            )
    report.seconds = time.perf_counter() - start
    choice = source.image_choice
    if choice is not None:
        report.image_folder = choice.to_dict(source.root)
        if choice.fraction < 0.5:
            report.warnings.append(
                f"only {choice.matched} of {choice.total} label names have a file in "
                f"{report.image_folder['folder']!r}; if the images are elsewhere, pass "
                "-o images_dir=PATH (relative to ROOT or absolute)"
            )
    agreement = getattr(source, "reliability", None)  # set by loaders with per-rater rows
    report.reliability = agreement.to_dict() if agreement is not None else None
    report.rejected = sum(reasons.values())
    report.rejected_by_reason = dict(reasons)
    report.parts = dict(parts)
    report.splits = dict(splits)
    report.raw_score = raw.to_dict()
    report.mos = mos.to_dict()
    report.rater_count = raters.to_dict()
    if any(r.count for r in dims):
        report.dimensions = {name: r.to_dict() for name, r in zip(names, dims, strict=True)}
    return report
