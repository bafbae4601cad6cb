"""An export's statistics: per-source counts, score ranges, levels and rejections by reason
(``stats.json``), and the same as the table a person reads (``stats.md``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from annotation_schema import load_standard
from hae_data.near_duplicates import near_duplicate_counts
from hae_data.records import RATING_STAGE, Record, Rejection
from hae_data.reliability import reliability_markdown
from hae_data.sources import SourceInfo

__all__ = [
    "export_stats",
    "format_range",
    "format_reasons",
    "summary_markdown",
    "summary_rows",
]


def export_stats(
    records: list[Record], rejected: list[Rejection], infos: Mapping[str, SourceInfo]
) -> dict[str, Any]:
    """Per-source statistics: kept rows per split, score ranges, levels, rejections by reason."""
    levels = load_standard().level_words
    per: dict[str, dict[str, Any]] = {}

    def entry(source: str) -> dict[str, Any]:
        if source not in per:
            info = infos.get(source)
            per[source] = {
                "title": info.title if info else source,
                "part": info.part if info else None,
                "kept": 0,
                "splits": Counter(),
                "quick": 0,
                "levels": Counter(),
                "raw_min": None,
                "raw_max": None,
                "score_sum": 0.0,
                "rejected": Counter(),
                "rating_rows": 0,
            }
        return per[source]

    for rec in records:
        e = entry(rec.source)
        e["kept"] += 1
        e["splits"][rec.split] += 1
        e["quick"] += int(rec.quick)
        e["levels"][rec.level] += 1
        e["score_sum"] += float(rec.score)  # type: ignore[arg-type]
        if rec.raw_score is not None:
            raw = float(rec.raw_score)
            e["raw_min"] = raw if e["raw_min"] is None else min(e["raw_min"], raw)
            e["raw_max"] = raw if e["raw_max"] is None else max(e["raw_max"], raw)
    for rej in rejected:
        if rej.stage == RATING_STAGE:
            entry(rej.source)["rating_rows"] += 1
        else:
            entry(rej.source)["rejected"][rej.reason] += 1

    sources = {}
    for source in sorted(per):
        e = per[source]
        sources[source] = {
            "title": e["title"],
            "part": e["part"],
            "kept": e["kept"],
            "train": e["splits"].get("train", 0),
            "test": e["splits"].get("test", 0),
            "quick": e["quick"],
            "raw_score_min": e["raw_min"],
            "raw_score_max": e["raw_max"],
            "score_mean": e["score_sum"] / e["kept"] if e["kept"] else None,
            "levels": {w: e["levels"].get(w, 0) for w in levels},
            "rejected": dict(sorted(e["rejected"].items())),
            "rejected_total": sum(e["rejected"].values()),
            # One rater's row dropped (bad value, duplicate): not an image, counted apart.
            "rejected_rating_rows": e["rating_rows"],
        }
    totals = {
        "kept": sum(s["kept"] for s in sources.values()),
        "train": sum(s["train"] for s in sources.values()),
        "test": sum(s["test"] for s in sources.values()),
        "rejected": sum(s["rejected_total"] for s in sources.values()),
    }
    return {
        "sources": sources,
        "totals": totals,
        "near_duplicates": near_duplicate_counts(records, rejected),
    }


def summary_rows(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per source from an export's stats: raw items, kept, rejected by reason, range."""
    rows = []
    for name, s in stats["sources"].items():
        lo, hi = s.get("raw_score_min"), s.get("raw_score_max")
        rows.append(
            {
                "source": name,
                "title": s.get("title", name),
                "raw": s["kept"] + s["rejected_total"],
                "kept": s["kept"],
                "train": s["train"],
                "test": s["test"],
                "rejected": s["rejected_total"],
                "rejected_by_reason": dict(s["rejected"]),
                "raw_score_range": None if lo is None else [lo, hi],
            }
        )
    return rows


def format_range(lo: float | None, hi: float | None) -> str:
    """``lo - hi`` with 4 significant digits, or ``-`` when the source kept no score."""
    return "-" if lo is None or hi is None else f"{lo:.4g} - {hi:.4g}"


def format_reasons(reasons: Mapping[str, int]) -> str:
    """``reason: count`` pairs for a table cell (empty when nothing was rejected)."""
    return ", ".join(f"{k}: {v}" for k, v in reasons.items())


def summary_markdown(stats: Mapping[str, Any]) -> str:
    """The per-source table as Markdown (what the flow prints and saves as ``stats.md``)."""
    lines = [
        "| source | raw | kept | train | test | rejected | rejected by reason | raw score range |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in summary_rows(stats):
        reasons = format_reasons(row["rejected_by_reason"]) or "-"
        rng_text = format_range(*(row["raw_score_range"] or (None, None)))
        lines.append(
            f"| {row['title']} | {row['raw']} | {row['kept']} | {row['train']} | {row['test']} "
            f"| {row['rejected']} | {reasons} | {rng_text} |"
        )
    t = stats["totals"]
    lines.append(
        f"| **total** | {t['kept'] + t['rejected']} | {t['kept']} | {t['train']} | {t['test']} "
        f"| {t['rejected']} | | |"
    )
    lines += reliability_markdown(stats.get("reliability"))
    return "\n".join(lines) + "\n"
