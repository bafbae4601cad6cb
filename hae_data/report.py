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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from annotation_schema import load_standard
from hae_data.export import ExportSummary, export_dataset
from hae_data.records import Record, Rejection
from hae_data.sources import CATALOG

__all__ = ["export_with_report", "plot_histograms"]

log = logging.getLogger(__name__)


def plot_histograms(
    records: Iterable[Record],
    output_dir: str | os.PathLike[str],
    *,
    bins: int = 50,
    titles: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write the export's plots; returns the paths written.

    - ``scores.png``: the normalised-score histogram of every source (0.02-wide bins, as in the
      paper) and of all sources together, with the level boundaries marked;
    - ``levels.png``: level counts per source;
    - ``dimensions.png`` (when there are 12-dimension rows): each dimension's distribution.

    Sources are named by their titles (``titles``, default the catalogue's), as in the tables.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    std = load_standard()
    names = dict(titles) if titles is not None else {k: v.title for k, v in CATALOG.items()}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores: dict[str, list[float]] = defaultdict(list)
    levels: dict[str, list[str]] = defaultdict(list)
    dims: list[list[float]] = []
    for rec in records:
        if rec.score is not None:
            scores[rec.source].append(float(rec.score))
        if rec.level is not None:
            levels[rec.source].append(rec.level)
        if rec.dimension_scores is not None:
            dims.append([float(v) for v in rec.dimension_scores])
    sources = sorted(scores, key=lambda s: names.get(s, s))
    bounds = std.level_upper_bounds[:-1]  # 0.2 ... 0.8: where one level ends and the next begins
    paths: list[Path] = []

    def save(fig: Any, name: str) -> Path:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        return out / name

    def histogram(ax: Any, values: list[float], title: str) -> None:
        ax.hist(values, bins=bins, range=(0.0, 1.0), color="#4C72B0", edgecolor="white")
        for b in bounds:
            ax.axvline(b, color="#C44E52", linewidth=0.8, linestyle="--")
        ax.set_title(f"{title} (n={len(values)})", fontsize="medium")
        ax.set_xlabel("normalised score")
        ax.set_ylabel("images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts, never 0.5 of an image

    panels = [*sources, None] if len(sources) > 1 else sources
    cols = min(3, max(len(panels), 1))
    rows = (max(len(panels), 1) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.1 * rows), squeeze=False)
    for ax, source in zip(axes.flat, panels, strict=False):
        if source is None:
            histogram(ax, [v for s in sources for v in scores[s]], "all sources")
        else:
            histogram(ax, scores[source], names.get(source, source))
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("Normalised overall score (dashed: level boundaries)", fontsize="medium")
    paths.append(save(fig, "scores.png"))

    words = std.level_words
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(sources) + 3), 3.8))
    width = 0.8 / max(len(words), 1)
    for i, word in enumerate(words):
        counts = [levels[s].count(word) for s in sources]
        ax.bar([j + i * width for j in range(len(sources))], counts, width=width, label=word)
    labels = [names.get(s, s) for s in sources]
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sources))], labels, rotation=20)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("images")
    ax.set_title("rating levels per source")
    ax.margins(y=0.3)  # room for the legend above the tallest bar
    ax.legend(ncols=len(words), fontsize="small", loc="upper center")
    paths.append(save(fig, "levels.png"))

    if dims:
        cols = 4
        rows = (len(std.dimensions) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.8 * rows), squeeze=False)
        for ax, dim in zip(axes.flat, std.dimensions, strict=False):
            histogram(ax, [row[dim.index - 1] for row in dims], f"{dim.index}. {dim.name}")
        fig.suptitle("12-dimension scores (dashed: level boundaries)", fontsize="medium")
        paths.append(save(fig, "dimensions.png"))
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


def export_with_report(
    records: Iterable[Record],
    rejections: Iterable[Rejection],
    output_dir: str | os.PathLike[str],
    **export_options: Any,
) -> ExportSummary:
    """:func:`hae_data.export.export_dataset` with ``plots/*.png`` and the audit page
    ``report.html`` (:mod:`hae_data.audit`) moved into place together with the rest."""
    from hae_data.audit import write_audit_report

    records = list(records)
    with tempfile.TemporaryDirectory(prefix="hae-report-") as tmp:
        plots = plot_histograms(records, tmp)
        extra = {f"plots/{p.name}": p for p in plots}

        def finish(stage: Path, stats: Mapping[str, Any], rejected: list[Rejection]) -> None:
            write_audit_report(records, rejected, stats, stage / "report.html", plots=plots)

        return export_dataset(
            records, rejections, output_dir, extra_files=extra, finish=finish, **export_options
        )
