"""Export (SPEC 2.8): Parquet shards with embedded images, a dataset card, stats and rejections.

Layout of an export folder::

    data/overall/train-00000-of-00002.parquet   rows of ``records.ARROW_SCHEMA``
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
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from annotation_schema import load_standard
from hae_data.hashing import content_id, unit_hash
from hae_data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, encode_for_export
from hae_data.near_duplicates import card_lines, near_duplicate_counts
from hae_data.outdir import BuildLock, ExportFolder
from hae_data.records import (
    ARROW_SCHEMA,
    FEATURES,
    PARTS,
    RATING_STAGE,
    REJECTION_SCHEMA,
    Record,
    Rejection,
    record_to_row,
)
from hae_data.reliability import records_reliability, reliability_markdown
from hae_data.sources import CATALOG, SourceInfo

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

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
#: The Hub's Parquet conversion aims at ~500 MB shards.
DEFAULT_SHARD_MAX_BYTES = 500 * 2**20
#: The dataset viewer wants row groups of at most 100-300 MB; smaller keeps memory bounded too.
DEFAULT_ROW_GROUP_MAX_BYTES = 100 * 2**20


@dataclass
class ExportSummary:
    """What an export wrote: shard paths per part and split, row counts and per-source stats."""

    output_dir: Path
    shards: dict[str, dict[str, list[str]]]
    rows: dict[str, dict[str, int]]
    rejected: int
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        """Rows written over every part and split."""
        return sum(n for splits in self.rows.values() for n in splits.values())


#: Content-defined page boundaries, as ``datasets``' own Parquet writer sets them: a page's
#: bytes depend on its rows, not on what came before, so a re-push of a slightly changed build
#: (Xet deduplicates by content) uploads the changed pages, not whole shards.
CDC_OPTIONS = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}


def _writer_options() -> dict[str, Any]:
    """``pq.ParquetWriter`` options: a page index (readers skip pages), content-defined
    chunking, and the image bytes stored plain and uncompressed (JPEG/PNG bytes do not shrink,
    and compression would hide identical images from deduplication); zstd elsewhere."""
    compression: dict[str, str] = {}
    encoding: dict[str, str] = {}
    dictionary: list[str] = []
    for column in ARROW_SCHEMA:
        for leaf in _leaf_paths(column.name, column.type):
            if column.name == "image":
                compression[leaf], encoding[leaf] = "none", "PLAIN"
            else:
                compression[leaf] = "zstd"
                dictionary.append(leaf)
    return {
        "compression": compression,
        "use_dictionary": dictionary,
        "column_encoding": encoding,
        "write_page_index": True,
        "use_content_defined_chunking": CDC_OPTIONS,
    }


def _leaf_paths(path: str, pa_type: pa.DataType) -> list[str]:
    """Parquet's names for the leaf columns under ``path`` (``faces.list.element.box...``)."""
    if pa.types.is_struct(pa_type):
        return [leaf for f in pa_type for leaf in _leaf_paths(f"{path}.{f.name}", f.type)]
    if (
        pa.types.is_list(pa_type)
        or pa.types.is_large_list(pa_type)
        or (pa.types.is_fixed_size_list(pa_type))
    ):
        return _leaf_paths(f"{path}.list.element", pa_type.value_type)
    return [path]


class EmptyExportError(RuntimeError):
    """An export that would keep no image (or none of a source it was given): refused, so a
    broken mount or layout never replaces a good export with an empty one."""


_WRITER_OPTIONS = _writer_options()


def _check_not_empty(stats: Mapping[str, Any], expected_sources: Iterable[str]) -> None:
    """Raise :class:`EmptyExportError`, with every source's reasons, on an empty result."""
    per = stats["sources"]
    empty = sorted(s for s in expected_sources if per.get(s, {}).get("kept", 0) == 0)
    if stats["totals"]["kept"] and not empty:
        return
    lines = []
    for name in sorted(set(per) | set(empty)):
        s = per.get(name, {"kept": 0, "rejected": {}})
        reasons = format_reasons(s["rejected"]) or "no items at all"
        lines.append(f"  {name}: kept {s['kept']}; rejected: {reasons}")
    what = "no image at all" if not stats["totals"]["kept"] else f"no image of {', '.join(empty)}"
    raise EmptyExportError(
        f"the build kept {what}; the previous export (if any) is left as it was.\n"
        + "\n".join(lines)
        + "\nCheck the source folders (python -m hae_data.sources inspect NAME ROOT), or pass "
        "allow_empty (--allow-empty) to export anyway."
    )


class _ShardSet:
    """Writes one (part, split) as shards of bounded size made of bounded row groups."""

    def __init__(self, folder: Path, split: str, shard_max: int, group_max: int) -> None:
        self.folder, self.split = folder, split
        self.shard_max, self.group_max = shard_max, group_max
        self.paths: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0
        self._shard_bytes = 0

    def add(self, row: dict[str, Any], nbytes: int) -> None:
        if self._buffer and self._buffer_bytes + nbytes > self.group_max:
            self._flush()
        if self._writer is not None and self._shard_bytes + self._buffer_bytes + nbytes > (
            self.shard_max
        ):
            self._flush()
            self._close_shard()
        self._buffer.append(row)
        self._buffer_bytes += nbytes
        self.rows += 1

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            path = self.folder / f"{self.split}-{len(self.paths):05d}.parquet.tmp"
            self.paths.append(path)
            self._writer = pq.ParquetWriter(path, ARROW_SCHEMA, **_WRITER_OPTIONS)
            self._writer.add_key_value_metadata(
                {"content_defined_chunking": json.dumps(CDC_OPTIONS)}
            )
            self._shard_bytes = 0
        table = pa.Table.from_pylist(self._buffer, schema=ARROW_SCHEMA)
        self._writer.write_table(table, row_group_size=len(self._buffer))
        self._shard_bytes += self._buffer_bytes
        self._buffer, self._buffer_bytes = [], 0

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Finish the last shard and give every shard its final ``-of-N`` name."""
        self._flush()
        self._close_shard()
        final = []
        for i, tmp in enumerate(self.paths):
            dest = self.folder / f"{self.split}-{i:05d}-of-{len(self.paths):05d}.parquet"
            os.replace(tmp, dest)
            final.append(dest)
        return final


def export_dataset(
    records: Iterable[Record],
    rejections: Iterable[Rejection],
    output_dir: str | os.PathLike[str],
    *,
    shard_max_bytes: int = DEFAULT_SHARD_MAX_BYTES,
    row_group_max_bytes: int = DEFAULT_ROW_GROUP_MAX_BYTES,
    sources: Mapping[str, SourceInfo] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    expected_sources: Iterable[str] = (),
    allow_empty: bool = False,
    finish: Callable[[Path, Mapping[str, Any], list[Rejection]], None] | None = None,
) -> ExportSummary:
    """Write records and rejections as an export folder (see the module docstring).

    Every record must be complete: ``image_id``, ``score``, ``level``, ``question``, ``answer``
    and ``split`` set (the pipeline's earlier stages do that). An image that can no longer be
    read at export time becomes a rejection (stage ``export``), not a crash. ``extra_files``
    maps names inside the folder (``plots/overall.png``) to files copied in with the export;
    ``finish(staging_folder, stats, rejections)`` may write more (a report that needs the
    stats) before the swap, so it lands atomically with the rest.

    The folder is handled by :class:`hae_data.outdir.ExportFolder`: a non-empty folder that is
    not a previous export is refused, and only entries an earlier export wrote are replaced.
    An export that keeps no image, or none of one of ``expected_sources``, raises
    :class:`EmptyExportError` and leaves the previous export as it was (``allow_empty`` to
    write it anyway).
    """
    if shard_max_bytes <= 0 or row_group_max_bytes <= 0:
        raise ValueError("shard_max_bytes and row_group_max_bytes must be positive")
    # A row group lives inside one shard, so it can never be the larger of the two.
    row_group_max_bytes = min(row_group_max_bytes, shard_max_bytes)
    out = ExportFolder(output_dir)
    out.check_usable()
    with BuildLock(out.path):
        out.recover()
        summary = _export_locked(
            records,
            rejections,
            out,
            shard_max_bytes=shard_max_bytes,
            row_group_max_bytes=row_group_max_bytes,
            infos=dict(CATALOG if sources is None else sources),
            max_pixels=max_pixels,
            extra_files=extra_files or {},
            expected_sources=expected_sources,
            allow_empty=allow_empty,
            finish=finish,
        )
    log.info(
        "exported %d rows (%s) and %d rejections to %s",
        summary.total_rows,
        ", ".join(f"{p}/{s}={n}" for p, sp in summary.rows.items() for s, n in sp.items()),
        summary.rejected,
        out.path,
    )
    return summary


def _export_locked(
    records: Iterable[Record],
    rejections: Iterable[Rejection],
    out: ExportFolder,
    *,
    shard_max_bytes: int,
    row_group_max_bytes: int,
    infos: Mapping[str, SourceInfo],
    max_pixels: int,
    extra_files: Mapping[str, str | os.PathLike[str]],
    expected_sources: Iterable[str],
    allow_empty: bool,
    finish: Callable[[Path, Mapping[str, Any], list[Rejection]], None] | None,
) -> ExportSummary:
    stage = out.new_staging()
    try:
        rejected = list(rejections)
        recs = _check_records(records)
        shard_sets: dict[tuple[str, str], _ShardSet] = {}
        exported: list[Record] = []
        for rec in recs:
            try:
                original = Path(rec.image_path).read_bytes()
                if not original:
                    raise ImageDecodeError("empty_file", f"{rec.file_name} has zero bytes")
                if content_id(original) != rec.image_id:
                    raise ImageDecodeError(
                        "changed_since_detection",
                        f"{rec.file_name} no longer has the bytes its faces were detected on",
                    )
                data = encode_for_export(original, name=rec.file_name, max_pixels=max_pixels)
            except (ImageDecodeError, OSError) as exc:
                reason = exc.reason if isinstance(exc, ImageDecodeError) else "unreadable_file"
                rejected.append(Rejection.from_record(rec, reason, "export", str(exc)))
                continue
            key = (rec.part, rec.split or "")
            if key not in shard_sets:
                folder = stage / "data" / rec.part
                folder.mkdir(parents=True, exist_ok=True)
                shard_sets[key] = _ShardSet(folder, key[1], shard_max_bytes, row_group_max_bytes)
            shard_sets[key].add(record_to_row(rec, data), len(data) + 2048)
            exported.append(rec)

        shards: dict[str, dict[str, list[str]]] = defaultdict(dict)
        rows: dict[str, dict[str, int]] = defaultdict(dict)
        for (part, split), shard_set in sorted(shard_sets.items()):
            paths = shard_set.close()
            shards[part][split] = [str(p.relative_to(stage)) for p in paths]
            rows[part][split] = shard_set.rows

        stats = _stats(exported, rejected, infos)
        if (agreement := records_reliability(exported, rejected)) is not None:
            stats["reliability"] = agreement  # rater agreement of the 12-dimension rows
        if not allow_empty:
            _check_not_empty(stats, expected_sources)
        write_rejections(rejected, stage / "rejected.parquet")
        (stage / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        (stage / "stats.md").write_text(summary_markdown(stats), encoding="utf-8")
        sizes = {
            part: {split: _split_size(stage, paths) for split, paths in splits.items()}
            for part, splits in shards.items()
        }
        (stage / "README.md").write_text(_card(shards, stats, infos, sizes), encoding="utf-8")
        (stage / "LICENSE.md").write_text(_licence_file(stats, infos) + "\n", encoding="utf-8")
        for name, src in extra_files.items():
            dest = stage / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        if finish is not None:
            finish(stage, stats, rejected)
        out.commit(stage)
    finally:
        out.discard(stage)

    return ExportSummary(
        output_dir=out.path,
        shards={p: dict(s) for p, s in shards.items()},
        rows={p: dict(s) for p, s in rows.items()},
        rejected=len(rejected),
        stats=stats,
    )


def _check_records(records: Iterable[Record]) -> list[Record]:
    """Complete, unique records sorted into their export order; raises on a pipeline bug."""
    recs = list(records)
    seen: dict[tuple[str, str], Record] = {}
    for rec in recs:
        missing = [
            name
            for name in ("image_id", "score", "level", "question", "answer", "split")
            if getattr(rec, name) is None
        ]
        if missing:
            raise ValueError(f"{rec.source}/{rec.file_name}: not ready for export, {missing} unset")
        if rec.part not in PARTS:
            raise ValueError(f"{rec.source}/{rec.file_name}: unknown part {rec.part!r}")
        if rec.split not in SPLITS:
            raise ValueError(f"{rec.source}/{rec.file_name}: unknown split {rec.split!r}")
        key = (rec.part, rec.image_id)  # type: ignore[assignment]
        if key in seen:
            first = seen[key]
            raise ValueError(
                f"image {rec.image_id} appears twice ({first.source}/{first.file_name} and "
                f"{rec.source}/{rec.file_name}); drop duplicates before export"
            )
        seen[key] = rec  # type: ignore[index]
    # A hash order, not (source, id): training reads shards row group by row group, and
    # batches should mix sources and parts. Still independent of the order records arrive in.
    recs.sort(key=lambda r: (unit_hash(r.image_id or "", "export-order"), r.image_id))
    return recs


def write_rejections(rejections: Iterable[Rejection], path: str | os.PathLike[str]) -> int:
    """Write rejections to a Parquet file (written under a temporary name, then renamed)."""
    rows = sorted(
        (r.to_row() for r in rejections),
        key=lambda r: (r["source"], r["stage"], r["reason"], r["file_name"]),
    )
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=REJECTION_SCHEMA), tmp)
    os.replace(tmp, path)
    return len(rows)


def _stats(
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


def _split_size(stage: Path, paths: list[str]) -> tuple[int, int, int]:
    """``(num_examples, num_bytes, download_bytes)`` of one split's shards, from their footers:
    rows, uncompressed data bytes, file bytes (what ``dataset_info`` reports)."""
    rows = data = files = 0
    for rel in paths:
        meta = pq.ParquetFile(stage / rel).metadata
        rows += meta.num_rows
        data += sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
        files += (stage / rel).stat().st_size
    return rows, data, files


PAPER_URL = "https://arxiv.org/abs/2503.23907"


def _front_matter(
    shards: Mapping[str, Mapping[str, list[str]]],
    stats: Mapping[str, Any],
    infos: Mapping[str, SourceInfo],
    sizes: Mapping[str, Mapping[str, tuple[int, int, int]]],
) -> str:
    """The card's YAML metadata, through ``huggingface_hub.DatasetCardData``: configs, the
    ``dataset_info`` the Hub shows (features, splits with their sizes), licence fields, the
    source datasets and the paper (an ``arxiv:`` tag, so the Hub links its paper page)."""
    import datasets
    from huggingface_hub import DatasetCardData

    configs, info = [], []
    for part in PARTS:
        splits = shards.get(part, {})
        if not splits:
            continue
        files = [
            {"split": split, "path": f"data/{part}/{split}-*.parquet"}
            for split in SPLITS
            if splits.get(split)
        ]
        entry: dict[str, Any] = {"config_name": part, "data_files": files}
        if part == "overall":
            entry["default"] = True
        configs.append(entry)
        split_infos = {
            split: datasets.SplitInfo(
                name=split, num_bytes=sizes[part][split][1], num_examples=sizes[part][split][0]
            )
            for split in SPLITS
            if splits.get(split)
        }
        ds_info = datasets.DatasetInfo(
            features=FEATURES,
            config_name=part,
            splits=datasets.SplitDict(split_infos),
            download_size=sum(sizes[part][s][2] for s in split_infos),
            dataset_size=sum(sizes[part][s][1] for s in split_infos),
        )
        info.append({"config_name": part, **ds_info._to_yaml_dict()})
    total = stats["totals"]["kept"]
    size = next(
        (label for limit, label in _SIZE_CATEGORIES if total < limit), "n>1M"
    )  # the Hub's size_categories vocabulary
    titles = [infos[n].title if n in infos else n for n in stats["sources"]]
    card = DatasetCardData(
        pretty_name="HumanBeauty",
        license="other",
        license_name="mixed-research-only",
        license_link="LICENSE.md",
        task_categories=["image-classification", "visual-question-answering"],
        tags=[
            "aesthetics",
            "image-aesthetic-assessment",
            "human",
            "humanbeauty",
            "arxiv:2503.23907",
        ],
        size_categories=[size],
        source_datasets=[f"extended|{t}" for t in titles],
        configs=configs,
        dataset_info=info,
    )
    return card.to_yaml()


def _licence_lines(stats: Mapping[str, Any], infos: Mapping[str, SourceInfo]) -> list[str]:
    """Each built source's terms, homepage and citation (the card's Licences section)."""
    lines = [
        "This dataset is a derivative of the sources below and inherits their terms; **most are "
        "for non-commercial research use only**. The lines below summarise each source's terms "
        "and are not legal advice: read the original terms at each homepage before use.",
        "",
    ]
    for name in stats["sources"]:
        info = infos.get(name)
        if info is None:
            lines.append(f"- **{name}**: no licence information recorded; check its origin.")
            continue
        lines.append(
            f"- **{info.title}**: {info.licence} Homepage: {info.homepage}. Cite: {info.citation}"
        )
    return lines


def _licence_file(stats: Mapping[str, Any], infos: Mapping[str, SourceInfo]) -> str:
    """``LICENSE.md`` (the card's ``license_link``): every source's terms, one place."""
    return "\n".join(["# Licences of HumanBeauty's sources", "", *_licence_lines(stats, infos)])


def _card(
    shards: Mapping[str, Mapping[str, list[str]]],
    stats: Mapping[str, Any],
    infos: Mapping[str, SourceInfo],
    sizes: Mapping[str, Mapping[str, tuple[int, int, int]]],
) -> str:
    """The dataset card: YAML front matter (:func:`_front_matter`) and a readable body."""
    std = load_standard()
    yaml_text = _front_matter(shards, stats, infos, sizes)
    src = stats["sources"]
    lines = [
        "---",
        yaml_text.rstrip(),
        "---",
        "",
        "# HumanBeauty",
        "",
        "Human image aesthetic assessment data built by the HumanBeauty pipeline, the open "
        f"implementation of [HumanAesExpert (arXiv:2503.23907)]({PAPER_URL}). Two "
        "configurations share one schema:",
        "",
        "- `overall`: single-face human images from public IAA datasets, one overall score per "
        "image, min-max normalised per source to [0, 1];",
        "- `fine_grained`: human images with 12 dimension scores in [0, 1], each the mean of at "
        "least the configured number of raters.",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("<this folder or repo>", "overall", split="train")',
        "```",
        "",
        "## Rows",
        "",
        "`image` (embedded bytes, upright), `image_id` (SHA-256 of the source file), `source`, "
        "`file_name`, `raw_score` (the source's own scale, a MOS where it has raters), `score` "
        "(normalised overall score; for `fine_grained` rows the Overall Aesthetic dimension), "
        "`level`, `question`, `answer`, `dimension_scores` / `dimension_levels` / "
        "`dimension_std` (12 values in the order below; null for `overall` rows), "
        "`rater_count`, `score_std`, `width`, `height`, `faces` (every detection: box, "
        "confidence, five landmarks), `face_count`, `split`, `quick` (the per-source quick "
        "evaluation subset), `metadata` (JSON: source-specific fields).",
        "",
        "Dimension order: "
        + ", ".join(f"{d.index}. {d.name}" for d in std.dimensions)
        + ". Levels: "
        + ", ".join(
            f"{w} (<= {b:g})" for w, b in zip(std.level_words, std.level_upper_bounds, strict=True)
        )
        + ".",
        "",
        "## Sources",
        "",
        "| source | part | kept | train | test | quick | raw score range | rejected |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for s in src.values():
        rng = format_range(s["raw_score_min"], s["raw_score_max"])
        lines.append(
            f"| {s['title']} | {s['part'] or '-'} | {s['kept']} | {s['train']} | {s['test']} "
            f"| {s['quick']} | {rng} | {s['rejected_total']} |"
        )
    t = stats["totals"]
    lines += [
        f"| **total** | | {t['kept']} | {t['train']} | {t['test']} | | | {t['rejected']} |",
        "",
        "### Levels per source",
        "",
        "| source | " + " | ".join(std.level_words) + " |",
        "|---|" + "---:|" * len(std.level_words),
    ]
    for s in src.values():
        lines.append(
            f"| {s['title']} | " + " | ".join(str(s["levels"][w]) for w in std.level_words) + " |"
        )
    lines += reliability_markdown(stats.get("reliability"))
    lines += ["", "### Rejections by reason", "", "| source | reason | count |", "|---|---|---:|"]
    for s in src.values():
        for reason, n in s["rejected"].items():
            lines.append(f"| {s['title']} | {reason} | {n} |")
        if s["rejected_rating_rows"]:
            lines.append(
                f"| {s['title']} | single rating rows dropped | {s['rejected_rating_rows']} |"
            )
    lines += card_lines(stats.get("near_duplicates"))
    lines += [
        "",
        "Every rejected item is listed in `rejected.parquet` with its stage and reason.",
        "",
        "## Licences",
        "",
        *_licence_lines(stats, infos),
    ]
    lines += [
        "",
        "## Citation",
        "",
        "```bibtex",
        "@article{liao2025humanaesexpert,",
        "  title   = {HumanAesExpert: Advancing a Multi-Modality Foundation Model for Human Image "
        "Aesthetic Assessment},",
        "  author  = {Liao, Zhichao and Liu, Xiaokun and Qin, Wenyu and Li, Qingyu and Wang, "
        "Qiulin and Wan, Pengfei and Zhang, Di and Zeng, Long and Feng, Pingfa},",
        "  journal = {arXiv preprint arXiv:2503.23907},",
        "  year    = {2025}",
        "}",
        "```",
        "",
    ]
    return "\n".join(lines)


_SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
)
