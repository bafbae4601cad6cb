"""From exported Parquet shards to streams of rows (SPEC 2.8 -> SPEC 3).

The export (``hae_data.export``) writes ``DIR/data/{overall,fine_grained}/{train,test}-*.parquet``
with rows of ``hae_data.schema.ARROW_SCHEMA``. This module

- lists the shards' row groups from their footers (:func:`list_row_groups`), without reading
  data;
- streams rows one row group at a time (:class:`ShardStream` for scoring, :class:`TrainingStream`
  for training, both ``IterableDataset``): each DataLoader worker of each data-parallel rank
  reads its own row groups, so the dataset is never held in memory and images are decoded in
  the workers.

Turning a row into model inputs and padding batches is ``hae_model.processing``'s job; the
streams take its encode function as an argument.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from hae_data.records import PARTS
from hae_data.schema import level_words

__all__ = [
    "COLUMNS",
    "SPLITS",
    "RowGroupRef",
    "ShardStream",
    "TrainingStream",
    "count_rows",
    "deal_parts",
    "kept_rows",
    "list_row_groups",
]

log = logging.getLogger(__name__)

#: What ``--split`` accepts: the export's two splits and the quick subset of ``test``.
SPLITS = ("train", "test", "quick")
#: Columns the model reads from a shard (the rest of the row is never loaded).
COLUMNS = (
    "image",
    "image_id",
    "source",
    "part",
    "score",
    "level",
    "question",
    "answer",
    "dimension_scores",
    "dimension_levels",
    "quick",
)


# ---------------------------------------------------------------------------------------------
# Shards and row groups


@dataclass(frozen=True)
class RowGroupRef:
    """One row group of one shard: the unit a DataLoader worker reads at once."""

    path: str
    index: int
    num_rows: int
    part: str


def list_row_groups(
    data_dir: str | os.PathLike[str], split: str, parts: Sequence[str] = PARTS
) -> list[RowGroupRef]:
    """Row groups of the shards of ``split`` (``quick`` reads ``test`` shards) for ``parts``.

    Reads only the Parquet footers. Raises ``FileNotFoundError`` with what was looked for when
    no shard matches, and ``ValueError`` when a shard lacks a column the model needs.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown parts {unknown}; expected some of {', '.join(PARTS)}")
    file_split = "test" if split == "quick" else split
    root = Path(data_dir) / "data"
    groups: list[RowGroupRef] = []
    for part in parts:
        for path in sorted((root / part).glob(f"{file_split}-*.parquet")):
            meta = pq.ParquetFile(path)
            missing = [c for c in COLUMNS if c not in meta.schema_arrow.names]
            if missing:
                raise ValueError(f"{path}: missing columns {missing}; is this an HAE export?")
            for i in range(meta.num_row_groups):
                n = meta.metadata.row_group(i).num_rows
                if n:
                    groups.append(RowGroupRef(str(path), i, n, part))
    if not groups:
        raise FileNotFoundError(
            f"no rows for split {split!r} under {root}/{{{','.join(parts)}}}/{file_split}-*.parquet"
        )
    return groups


def count_rows(groups: Sequence[RowGroupRef], quick_only: bool = False) -> int:
    """Rows in ``groups``; with ``quick_only`` only those flagged ``quick`` (reads that column)."""
    if not quick_only:
        return sum(g.num_rows for g in groups)
    n = 0
    for g in groups:
        col = pq.ParquetFile(g.path).read_row_group(g.index, columns=["quick"]).column(0)
        n += sum(1 for v in col.to_pylist() if v)
    return n


class ShardStream(IterableDataset):
    """Rows of exported shards in shard order, encoded, one row group at a time: one pass.

    Consumers are (rank, DataLoader worker) pairs. With at least as many row groups as
    consumers, each consumer reads its own row groups; with fewer (small exports), every
    consumer reads every group and keeps every ``n_consumers``-th row. Either way each row goes
    to exactly one consumer. Training uses :class:`TrainingStream` instead.

    ``encode(row)`` returns a sample dict, or a dict with an ``error`` key for a bad row; bad
    rows are logged and dropped unless ``keep_errors`` (evaluation reports them). Only rows
    for which ``row_filter(row)`` is true are read on (all rows without one).
    """

    def __init__(
        self,
        groups: Sequence[RowGroupRef],
        encode: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        rank: int = 0,
        world_size: int = 1,
        quick_only: bool = False,
        keep_errors: bool = False,
        row_filter: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        super().__init__()
        if not groups:
            raise ValueError("ShardStream needs at least one row group")
        self.groups = list(groups)
        self.encode = encode
        self.rank, self.world_size = rank, world_size
        self.quick_only, self.keep_errors = quick_only, keep_errors
        self.row_filter = row_filter

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info else (1, 0)
        consumer = self.rank * n_workers + worker
        n_consumers = self.world_size * n_workers
        for row in self._rows(consumer, n_consumers):
            sample = self.encode(row)
            if "error" in sample:
                _log_bad_row(sample)
                if not self.keep_errors:
                    continue
            yield sample

    def _rows(self, consumer: int, n_consumers: int) -> Iterator[dict[str, Any]]:
        order = list(range(len(self.groups)))
        if len(order) >= n_consumers:
            mine, stride = order[consumer::n_consumers], 1
        else:
            mine, stride = order, n_consumers
        position = 0
        reader = _GroupReader()
        for gi in mine:
            for row in reader.read(self.groups[gi]):
                keep = stride == 1 or position % stride == consumer
                position += 1
                if not keep or (self.quick_only and not row.get("quick")):
                    continue
                if self.row_filter is not None and not self.row_filter(row):
                    continue
                yield row


def _log_bad_row(sample: dict[str, Any]) -> None:
    log.warning(
        "skipping row %s (%s): %s", sample.get("image_id"), sample.get("source"), sample["error"]
    )


class _GroupReader:
    """Reads row groups as lists of row dicts (the model's columns), one open file per shard."""

    def __init__(self) -> None:
        self.files: dict[str, pq.ParquetFile] = {}

    def read(self, group: RowGroupRef, columns: Sequence[str] = COLUMNS) -> list[dict[str, Any]]:
        pf = self.files.get(group.path)
        if pf is None:
            pf = self.files[group.path] = pq.ParquetFile(group.path)
        # level_words: the export stores levels as ClassLabel indices.
        rows = pf.read_row_group(group.index, columns=list(columns)).to_pylist()
        return [level_words(r) for r in rows]


def kept_rows(
    groups: Sequence[RowGroupRef], keep: Callable[[str], bool] | None = None
) -> list[list[int]]:
    """Per row group, the indices of its rows whose image id ``keep`` accepts (all without
    ``keep``). Reads only the ``image_id`` column."""
    if keep is None:
        return [list(range(g.num_rows)) for g in groups]
    reader = _GroupReader()
    return [
        [i for i, row in enumerate(reader.read(g, ["image_id"])) if keep(row["image_id"])]
        for g in groups
    ]


def deal_parts(counts: Sequence[int]) -> list[int]:
    """The part (index into ``counts``) of each of ``sum(counts)`` positions, dealt so that
    every prefix holds each part in proportion, within one row: 3 and 1 -> 0, 0, 1, 0."""
    total = sum(counts)
    taken = [0] * len(counts)
    out = []
    for t in range(1, total + 1):
        # The part furthest behind its share t * n_p / total (ties: the earlier part).
        p = max(range(len(counts)), key=lambda i: (t * counts[i] - total * taken[i], -i))
        taken[p] += 1
        out.append(p)
    return out


class TrainingStream(IterableDataset):
    """Training micro-batches (lists of encoded samples): every training row exactly once per
    epoch over all ranks and DataLoader workers, each micro-batch holding the parts (overall,
    12-dimension) in proportion (SPEC 3.3). Use with ``DataLoader(batch_size=None)``.

    An epoch is ``steps_per_epoch = ceil(N / (batch_size * grad_accum * world_size))``
    optimiser steps, that is ``K = steps_per_epoch * grad_accum * world_size`` micro-batches;
    the N rows (``rows[g]`` lists the rows of group ``g`` that train) are dealt over them as
    evenly as possible, so micro-batches hold ``floor(N/K)`` or ``ceil(N/K) <= batch_size``
    rows and no row is repeated or skipped to fill a step. Micro-batch ``k`` is the ``j``-th
    of rank ``k % world_size`` (``j = k // world_size``), and a DataLoader hands out batches
    from its workers in turn, so worker ``j % num_workers`` makes it: the stream yields whole
    micro-batches for that reason. A micro-batch can be empty (an empty list) only when N is
    below K; the training loop must still take part in that step.

    Rows and I/O: each epoch shuffles the order of each part's row groups (the same on every
    rank, from ``seed`` and the epoch); each (rank, worker) reads a contiguous slice of that
    order, so it reads few row groups, and shuffles its rows through a buffer of
    ``shuffle_buffer`` rows per part. Within one micro-batch, the parts are in the proportion
    of the whole split to within one row (:func:`deal_parts`).

    ``skip_batches`` resumes: the rank's first ``skip_batches`` micro-batches are left out
    without decoding their images, and the next ones come in the same order as in the run
    that was interrupted. Bad rows are logged and left out of their micro-batch.
    """

    def __init__(
        self,
        groups: Sequence[RowGroupRef],
        encode: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        batch_size: int,
        grad_accum: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle_buffer: int = 256,
        skip_batches: int = 0,
        rows: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        if not groups:
            raise ValueError("TrainingStream needs at least one row group")
        if min(batch_size, grad_accum, world_size) < 1 or not 0 <= rank < world_size:
            raise ValueError("batch_size, grad_accum and world_size must be >= 1, rank < world")
        self.groups = list(groups)
        self.rows = [list(r) for r in rows] if rows is not None else kept_rows(self.groups)
        if len(self.rows) != len(self.groups):
            raise ValueError("rows must list the kept rows of every group")
        self.n_rows = sum(len(r) for r in self.rows)
        if self.n_rows == 0:
            raise ValueError("no training rows")
        self.encode = encode
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.skip_batches = skip_batches
        self.parts = sorted({g.part for g in self.groups}, key=PARTS.index)
        global_batch = batch_size * grad_accum * world_size
        self.steps_per_epoch = math.ceil(self.n_rows / global_batch)
        #: micro-batches per epoch over all ranks
        self.micro_batches = self.steps_per_epoch * grad_accum * world_size

    def micro_batch_sizes(self) -> list[int]:
        """Rows of each of the epoch's ``K`` micro-batches, by global index ``k``."""
        n, k_all = self.n_rows, self.micro_batches
        return [(k + 1) * n // k_all - k * n // k_all for k in range(k_all)]

    def plan(
        self, n_workers: int, epoch: int = 0
    ) -> dict[tuple[int, int], list[tuple[int, list[int]]]]:
        """Per consumer ``(rank, worker)``, its micro-batches of ``epoch`` in the order it makes
        them, each as ``(global index k, part index of each row)``.

        A rank's micro-batches are numbered on across epochs and the DataLoader takes them from
        its workers in turn, so the rank's ``g``-th is made by worker ``g % n_workers``; when an
        epoch's count does not divide by the workers, who makes what shifts from one epoch to
        the next. Consumers are laid out one after another (rank-major) over the epoch's row
        order, so each reads contiguous slices of it.
        """
        sizes = self.micro_batch_sizes()
        per_rank = self.micro_batches // self.world_size
        mine: dict[tuple[int, int], list[int]] = {}
        for k in range(self.micro_batches):
            rank, j = k % self.world_size, k // self.world_size
            mine.setdefault((rank, (epoch * per_rank + j) % n_workers), []).append(k)
        counts = [
            sum(len(r) for g, r in zip(self.groups, self.rows, strict=True) if g.part == part)
            for part in self.parts
        ]
        dealt = iter(deal_parts(counts))
        return {
            consumer: [(k, [next(dealt) for _ in range(sizes[k])]) for k in ks]
            for consumer, ks in sorted(mine.items())
        }

    def _slices(
        self, plan: dict[tuple[int, int], list[tuple[int, list[int]]]], consumer: tuple[int, int]
    ) -> tuple[list[int], list[int]]:
        """Start and length of ``consumer``'s slice of each part's row order: it comes after
        the slices of the consumers laid out before it."""
        start, take = [0] * len(self.parts), [0] * len(self.parts)
        for other, batches in plan.items():
            if other <= consumer:
                for _, parts in batches:
                    for p in parts:
                        (start if other < consumer else take)[p] += 1
        return start, take

    def _part_order(self, epoch: int, part: str) -> list[tuple[int, int]]:
        """``(group, row)`` of every training row of ``part``, row groups shuffled per epoch."""
        order = [gi for gi, g in enumerate(self.groups) if g.part == part]
        random.Random(f"{self.seed}:groups:{epoch}:{part}").shuffle(order)
        return [(gi, r) for gi in order for r in self.rows[gi]]

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        info = get_worker_info()
        n_workers, loader_worker = (info.num_workers, info.id) if info else (1, 0)
        # A DataLoader asks worker 0 first, also after a resume: the worker that made batch
        # ``skip_batches`` in the first run is the one to play worker 0's part now.
        worker = (loader_worker + self.skip_batches) % n_workers
        consumer = (self.rank, worker)
        # Micro-batches this worker made before a resume: the rank's g-th is worker g % W's.
        to_skip = max(0, -(-(self.skip_batches - worker) // n_workers))
        epoch = 0
        while True:
            plan = self.plan(n_workers, epoch)
            batches = plan.get(consumer, [])
            if to_skip >= len(batches):
                to_skip -= len(batches)  # all made before the resume (or none): nothing to read
                epoch += 1
                continue
            start, take = self._slices(plan, consumer)
            rng = random.Random(f"{self.seed}:rows:{epoch}:{self.rank}:{worker}")
            streams = [
                self._shuffled(self._part_order(epoch, part)[start[p] : start[p] + take[p]], rng)
                for p, part in enumerate(self.parts)
            ]
            for _, parts in batches:
                rows = [next(streams[p]) for p in parts]
                if to_skip:
                    to_skip -= 1
                    continue
                samples = []
                for row in rows:
                    sample = self.encode(row)
                    if "error" in sample:
                        _log_bad_row(sample)
                        continue
                    samples.append(sample)
                yield samples
            epoch += 1

    def _shuffled(
        self, refs: list[tuple[int, int]], rng: random.Random
    ) -> Iterator[dict[str, Any]]:
        """The rows at ``refs`` (read a row group at a time), through a shuffle buffer."""
        reader = _GroupReader()
        buffer: list[dict[str, Any]] = []
        i = 0
        while i < len(refs):
            gi = refs[i][0]
            j = i
            while j < len(refs) and refs[j][0] == gi:
                j += 1
            table = reader.read(self.groups[gi])
            for _, r in refs[i:j]:
                buffer.append(table[r])
                if len(buffer) >= self.shuffle_buffer:
                    k = rng.randrange(len(buffer))
                    buffer[k], buffer[-1] = buffer[-1], buffer[k]
                    yield buffer.pop()
            i = j
        rng.shuffle(buffer)
        yield from buffer


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one thread per worker (decode and tiling are per image)."""
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
