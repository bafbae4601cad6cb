"""``export_dataset``: records and rejections in, an export folder out (see
:mod:`hae_data.export` for the layout). Shards, statistics and the card are written into a
staging folder, then swapped in by :class:`hae_data.outdir.ExportFolder`."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hae_data.export.card import SPLITS, dataset_card, licence_file
from hae_data.export.parquet_shards import (
    DEFAULT_ROW_GROUP_MAX_BYTES,
    DEFAULT_SHARD_MAX_BYTES,
    ShardSet,
    split_size,
)
from hae_data.export.source_stats import export_stats, format_reasons, summary_markdown
from hae_data.hashing import content_id, unit_hash
from hae_data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, encode_for_export
from hae_data.outdir import BuildLock, ExportFolder
from hae_data.records import PARTS, Record, Rejection
from hae_data.reliability import records_reliability
from hae_data.schema import REJECTION_SCHEMA, record_to_row
from hae_data.sources import CATALOG, SourceInfo

__all__ = ["EmptyExportError", "ExportSummary", "export_dataset", "write_rejections"]

log = logging.getLogger(__name__)

#: Threads that read, hash and (where needed) re-encode images for the export.
_ENCODE_WORKERS = min(8, os.cpu_count() or 1)


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


class EmptyExportError(RuntimeError):
    """An export that would keep no image (or none of a source it was given): refused, so a
    broken mount or layout never replaces a good export with an empty one."""


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
    verify_decode: bool = False,
) -> ExportSummary:
    """Write records and rejections as an export folder (see the module docstring).

    Every record must be complete: ``image_id``, ``score``, ``level``, ``question``, ``answer``
    and ``split`` set (the pipeline's earlier stages do that). An image that can no longer be
    read at export time becomes a rejection (stage ``export``), not a crash. ``extra_files``
    maps names inside the folder (``plots/overall.png``) to files copied in with the export;
    ``finish(staging_folder, stats, rejections)`` may write more (a report that needs the
    stats) before the swap, so it lands atomically with the rest.

    An image is not decoded a second time: its ``image_id`` is the content hash of the bytes
    the face stage decoded, so bytes with the same hash decode (their header alone says whether
    they go in unchanged). Images that need converting (EXIF rotation, CMYK, alpha, 16-bit, other
    formats) are decoded and re-encoded in a thread pool. ``verify_decode`` decodes every image
    again (for records whose ``image_id`` did not come from a decode); the rows are the same.

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
            verify_decode=verify_decode,
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
    verify_decode: bool,
) -> ExportSummary:
    stage = out.new_staging()
    try:
        rejected = list(rejections)
        recs = _check_records(records)
        shard_sets: dict[tuple[str, str], ShardSet] = {}
        exported: list[Record] = []
        for rec, data in _embedded_images(recs, max_pixels, verify_decode):
            if isinstance(data, Exception):
                reason = data.reason if isinstance(data, ImageDecodeError) else "unreadable_file"
                rejected.append(Rejection.from_record(rec, reason, "export", str(data)))
                continue
            key = (rec.part, rec.split or "")
            if key not in shard_sets:
                folder = stage / "data" / rec.part
                folder.mkdir(parents=True, exist_ok=True)
                shard_sets[key] = ShardSet(folder, key[1], shard_max_bytes, row_group_max_bytes)
            shard_sets[key].add(record_to_row(rec, data), len(data) + 2048)
            exported.append(rec)

        shards: dict[str, dict[str, list[str]]] = defaultdict(dict)
        rows: dict[str, dict[str, int]] = defaultdict(dict)
        for (part, split), shard_set in sorted(shard_sets.items()):
            paths = shard_set.close()
            shards[part][split] = [str(p.relative_to(stage)) for p in paths]
            rows[part][split] = shard_set.rows

        stats = export_stats(exported, rejected, infos)
        if (agreement := records_reliability(exported, rejected)) is not None:
            stats["reliability"] = agreement  # rater agreement of the 12-dimension rows
        if not allow_empty:
            _check_not_empty(stats, expected_sources)
        write_rejections(rejected, stage / "rejected.parquet")
        (stage / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        (stage / "stats.md").write_text(summary_markdown(stats), encoding="utf-8")
        sizes = {
            part: {split: split_size(stage, paths) for split, paths in splits.items()}
            for part, splits in shards.items()
        }
        (stage / "README.md").write_text(
            dataset_card(shards, stats, infos, sizes), encoding="utf-8"
        )
        (stage / "LICENSE.md").write_text(licence_file(stats, infos) + "\n", encoding="utf-8")
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


def _embedded_bytes(rec: Record, max_pixels: int, verify_decode: bool) -> bytes | Exception:
    """The image bytes to embed for ``rec``, or why it cannot be exported (returned, not
    raised: a worker thread's failure is one rejected row)."""
    try:
        original = Path(rec.image_path).read_bytes()
        if not original:
            raise ImageDecodeError("empty_file", f"{rec.file_name} has zero bytes")
        if content_id(original) != rec.image_id:
            raise ImageDecodeError(
                "changed_since_detection",
                f"{rec.file_name} no longer has the bytes its faces were detected on",
            )
        return encode_for_export(
            original, name=rec.file_name, max_pixels=max_pixels, decoded_before=not verify_decode
        )
    except (ImageDecodeError, OSError) as exc:
        return exc


def _embedded_images(
    recs: list[Record], max_pixels: int, verify_decode: bool
) -> Iterator[tuple[Record, bytes | Exception]]:
    """``(record, bytes or error)`` in the records' order, read, hashed and (where needed)
    re-encoded by a thread pool a bounded window ahead of the writer (hashing, file reads and
    PIL's codecs release the GIL)."""
    workers = min(_ENCODE_WORKERS, max(1, len(recs)))
    with ThreadPoolExecutor(workers, thread_name_prefix="export-encode") as pool:
        pending: deque[tuple[Record, Future[bytes | Exception]]] = deque()
        for rec in recs:
            pending.append((rec, pool.submit(_embedded_bytes, rec, max_pixels, verify_decode)))
            if len(pending) >= 4 * workers:
                head, fut = pending.popleft()
                yield head, fut.result()
        while pending:
            head, fut = pending.popleft()
            yield head, fut.result()


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
