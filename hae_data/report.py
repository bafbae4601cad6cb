"""What a person reads after a build: score histograms (paper Fig. 4) next to the export.

``plot_histograms`` draws the normalised-score histogram of each source and the level
distribution as PNG files; ``export_with_report`` exports with them (the per-source table,
``stats.md``, is written by the export itself from ``hae_data.export.summary_markdown``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from annotation_schema import load_standard
from hae_data.export import ExportSummary, export_dataset
from hae_data.records import Record, Rejection

__all__ = ["export_with_report", "plot_histograms"]

log = logging.getLogger(__name__)


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


def export_with_report(
    records: Iterable[Record],
    rejections: Iterable[Rejection],
    output_dir: str | os.PathLike[str],
    **export_options: Any,
) -> ExportSummary:
    """:func:`hae_data.export.export_dataset` with ``plots/{scores,levels}.png`` moved into
    place together with the rest of the export."""
    records = list(records)
    with tempfile.TemporaryDirectory(prefix="hae-report-") as tmp:
        extra = {f"plots/{p.name}": p for p in plot_histograms(records, tmp)}
        return export_dataset(records, rejections, output_dir, extra_files=extra, **export_options)
