"""What a person reads after a build: a per-source table and score histograms (paper Fig. 4).

``summary_rows`` turns the export's ``stats.json`` into one row per source (raw, kept, rejected
by reason, score range); ``summary_markdown`` renders it; ``plot_histograms`` draws the
normalised-score histogram of each source and the level distribution as PNG files.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from annotation_schema import load_standard
from hae_data.records import Record

__all__ = ["plot_histograms", "summary_markdown", "summary_rows"]

log = logging.getLogger(__name__)


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


def summary_markdown(stats: Mapping[str, Any]) -> str:
    """The per-source table as Markdown (what the flow prints and saves as ``stats.md``)."""
    lines = [
        "| source | raw | kept | train | test | rejected | rejected by reason | raw score range |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in summary_rows(stats):
        reasons = ", ".join(f"{k}: {v}" for k, v in row["rejected_by_reason"].items()) or "-"
        rng = row["raw_score_range"]
        rng_text = "-" if rng is None else f"{rng[0]:.4g} - {rng[1]:.4g}"
        lines.append(
            f"| {row['title']} | {row['raw']} | {row['kept']} | {row['train']} | {row['test']} "
            f"| {row['rejected']} | {reasons} | {rng_text} |"
        )
    t = stats["totals"]
    lines.append(
        f"| **total** | {t['kept'] + t['rejected']} | {t['kept']} | {t['train']} | {t['test']} "
        f"| {t['rejected']} | | |"
    )
    return "\n".join(lines) + "\n"


def plot_histograms(
    records: Iterable[Record], output_dir: str | os.PathLike[str], *, bins: int = 50
) -> list[Path]:
    """Write ``scores.png`` (normalised-score histogram per source, 0.02-wide bins as in the
    paper) and ``levels.png`` (level counts per source); returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores: dict[str, list[float]] = defaultdict(list)
    levels: dict[str, list[str]] = defaultdict(list)
    for rec in records:
        if rec.score is not None:
            scores[rec.source].append(float(rec.score))
        if rec.level is not None:
            levels[rec.source].append(rec.level)
    sources = sorted(scores)
    paths: list[Path] = []

    n = max(len(sources), 1)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, source in zip(axes.flat, sources, strict=False):
        ax.hist(scores[source], bins=bins, range=(0.0, 1.0), color="#4C72B0", edgecolor="white")
        ax.set_title(f"{source} (n={len(scores[source])})")
        ax.set_xlabel("normalised score")
        ax.set_ylabel("images")
    for ax in list(axes.flat)[len(sources) :]:
        ax.axis("off")
    fig.tight_layout()
    path = out / "scores.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    words = load_standard().level_words
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(sources) + 3), 3.6))
    width = 0.8 / max(len(words), 1)
    for i, word in enumerate(words):
        counts = [levels[s].count(word) for s in sources]
        ax.bar([j + i * width for j in range(len(sources))], counts, width=width, label=word)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sources))], sources, rotation=20)
    ax.set_ylabel("images")
    ax.set_title("rating levels per source")
    ax.margins(y=0.3)  # room for the legend above the tallest bar
    ax.legend(ncols=len(words), fontsize="small", loc="upper center")
    fig.tight_layout()
    path = out / "levels.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths
