"""Export (SPEC 2.8): Parquet shards with embedded images, a dataset card, stats and rejections.

Layout of an export folder::

    data/overall/train-00000-of-00002.parquet   rows of ``schema.ARROW_SCHEMA``
    data/overall/test-00000-of-00001.parquet
    data/fine_grained/{train,test}-*.parquet
    README.md          dataset card: YAML ``configs`` (overall, fine_grained), stats, licences
    stats.json         per-source counts, score ranges, levels and rejections by reason
    stats.md           the same as a table a person reads
    rejected.parquet   every dropped item with source, stage and reason (no image bytes)

Everything is first written into a staging folder inside the target and then swapped in by
:class:`hae_data.outdir.ExportFolder` (ownership manifest, journalled swap): a crash never leaves
a half-written shard under a final name, a re-export replaces every entry the previous export
wrote (no stale shard of an earlier, larger export survives), and nothing else is touched.
Rows are ordered by a hash of their image id within each shard set (so sources are mixed in
every row group), and the same input gives the same bytes whatever order records arrive in.

The work is split by job: :mod:`~hae_data.export.dataset` (``export_dataset``: staging, checks,
the swap), :mod:`~hae_data.export.parquet_shards` (the shard writer),
:mod:`~hae_data.export.source_stats` (``stats.json``/``stats.md``) and
:mod:`~hae_data.export.card` (``README.md``, ``LICENSE.md``).
"""

from hae_data.export.card import SPLITS
from hae_data.export.dataset import (
    EmptyExportError,
    ExportSummary,
    export_dataset,
    write_rejections,
)
from hae_data.export.parquet_shards import DEFAULT_ROW_GROUP_MAX_BYTES, DEFAULT_SHARD_MAX_BYTES
from hae_data.export.source_stats import (
    format_range,
    format_reasons,
    summary_markdown,
    summary_rows,
)

__all__ = [
    "DEFAULT_ROW_GROUP_MAX_BYTES",
    "DEFAULT_SHARD_MAX_BYTES",
    "SPLITS",
    "EmptyExportError",
    "ExportSummary",
    "export_dataset",
    "format_range",
    "format_reasons",
    "summary_markdown",
    "summary_rows",
    "write_rejections",
]
