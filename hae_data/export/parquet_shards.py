"""Parquet shards of bounded size made of bounded row groups, as the Hub wants them.

Each shard is written under a temporary name and renamed to its final ``-of-N`` name only when
the whole (part, split) is written; the export's staging folder and swap
(:class:`hae_data.outdir.ExportFolder`) do the rest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hae_data.schema import ARROW_SCHEMA

__all__ = [
    "CDC_OPTIONS",
    "DEFAULT_ROW_GROUP_MAX_BYTES",
    "DEFAULT_SHARD_MAX_BYTES",
    "ShardSet",
    "split_size",
]

#: The Hub's Parquet conversion aims at ~500 MB shards.
DEFAULT_SHARD_MAX_BYTES = 500 * 2**20
#: The dataset viewer wants row groups of at most 100-300 MB; smaller keeps memory bounded too.
DEFAULT_ROW_GROUP_MAX_BYTES = 100 * 2**20


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


_WRITER_OPTIONS = _writer_options()


class ShardSet:
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
        """Append one row of about ``nbytes`` bytes, starting a row group or a shard as needed."""
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


def split_size(stage: Path, paths: list[str]) -> tuple[int, int, int]:
    """``(num_examples, num_bytes, download_bytes)`` of one split's shards, from their footers:
    rows, uncompressed data bytes, file bytes (what ``dataset_info`` reports)."""
    rows = data = files = 0
    for rel in paths:
        meta = pq.ParquetFile(stage / rel).metadata
        rows += meta.num_rows
        data += sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
        files += (stage / rel).stat().st_size
    return rows, data, files
