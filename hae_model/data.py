"""From exported Parquet shards to model batches (SPEC 2.8 -> SPEC 3).

The export (``hae_data.export``) writes ``DIR/data/{overall,fine_grained}/{train,test}-*.parquet``
with rows of ``hae_data.records.ARROW_SCHEMA``. This module

- lists the shards' row groups from their footers (:func:`list_row_groups`), without reading
  data;
- streams rows one row group at a time (:class:`ShardStream`, an ``IterableDataset``): each
  DataLoader worker of each data-parallel rank reads its own row groups, so the dataset is never
  held in memory and images are decoded in the workers;
- turns a row into model inputs (:class:`SampleEncoder`): InternVL tiles, the prompt built by
  hand (``<img>`` + ``image_seq_length * tiles`` x ``<IMG_CONTEXT>`` + ``</img>``, then the
  question, inside the backbone's chat template when it has one), and labels masked to the
  answer tokens;
- pads samples into batches (:func:`collate_train`, :func:`collate_inference`).

Positions the heads read (SPEC 3.1): ``head_pos`` is the last prompt token, just before the
answer; ``level_pos`` is the token before the level word of an overall answer (the last token
of the answer prefix), where the LM head's next-token logits give the level-word score.
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

from annotation_schema import Standard, load_standard
from hae_data.images import ImageDecodeError, decode_image
from hae_data.records import PARTS, level_words

__all__ = [
    "COLUMNS",
    "INFERENCE_QUESTIONS",
    "SPLITS",
    "TARGETS",
    "LevelTokenError",
    "RowGroupRef",
    "SampleEncoder",
    "ShardStream",
    "TrainingStream",
    "check_level_tokens",
    "collate_inference",
    "collate_train",
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
#: What evaluation compares against, per image, exactly as exported (SPEC 2.5).
TARGETS = ("score", "level", "dimension_scores", "dimension_levels")
#: ``--questions``: which question paraphrases inference asks (SPEC 2.6).
INFERENCE_QUESTIONS = ("canonical", "all")
IGNORE_INDEX = -100

# Special tokens of InternVL checkpoints; a tokenizer may name its own (``start_image_token``...).
_IMG_START, _IMG_END, _IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"


class LevelTokenError(ValueError):
    """A level word is not one token of the backbone's tokenizer after the answer prefix."""


def check_level_tokens(tokenizer: Any, standard: Standard | None = None) -> list[int]:
    """Token ids of the five level words as they follow the overall answer prefix.

    The LM-head score reads the next-token logits after the prefix, so each overall answer must
    tokenize as ``prefix ids + [one level token] + ...``. Raises :class:`LevelTokenError`
    naming every level word that breaks this.
    """
    std = standard or load_standard()
    prefix = _ids(tokenizer, std.overall_prefix)
    n = len(prefix)
    fulls = {word: _ids(tokenizer, std.overall_answer(word)) for word in std.level_words}
    # A single-token word leaves the same tail (the full stop) after it in every answer.
    tails = [tuple(full[n + 1 :]) for full in fulls.values()]
    common_tail = max(set(tails), key=tails.count)
    ids, bad = [], []
    for word, full in fulls.items():
        if full[:n] != prefix or len(full) <= n or tuple(full[n + 1 :]) != common_tail:
            bad.append(f"{word!r} -> {tokenizer.convert_ids_to_tokens(full[n:])}")
            continue
        ids.append(full[n])
    if bad:
        raise LevelTokenError(
            "each level word must be a single token right after the answer prefix "
            f"{std.overall_prefix!r}, but the backbone's tokenizer splits: " + "; ".join(bad)
        )
    if len(set(ids)) != len(ids):
        raise LevelTokenError(f"level words share token ids: {ids}")
    return ids


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


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


# ---------------------------------------------------------------------------------------------
# Rows -> samples


class SampleEncoder:
    """Turns exported rows (or images) into model inputs for one backbone.

    ``tokenizer`` and ``image_processor`` are the backbone's (for InternVL the GotOcr2 image
    processor; its PIL flavour works without torchvision). ``image_seq_length`` is the number of
    image tokens per tile and ``tile_size`` the tile side in pixels; ``max_tiles`` is the
    dynamic-tiling maximum (1: one resized tile, no thumbnail).
    """

    def __init__(
        self,
        tokenizer: Any,
        image_processor: Any,
        *,
        image_seq_length: int,
        tile_size: int,
        max_tiles: int = 12,
        standard: Standard | None = None,
    ) -> None:
        if max_tiles < 1:
            raise ValueError(f"max_tiles must be >= 1, got {max_tiles}")
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_seq_length = image_seq_length
        self.tile_size = tile_size
        self.max_tiles = max_tiles
        self.standard = standard or load_standard()
        self.level_token_ids = check_level_tokens(tokenizer, self.standard)
        self.prefix_ids = _ids(tokenizer, self.standard.overall_prefix)
        self.img_start = getattr(tokenizer, "start_image_token", None) or _IMG_START
        self.img_end = getattr(tokenizer, "end_image_token", None) or _IMG_END
        self.img_context = getattr(tokenizer, "context_image_token", None) or _IMG_CONTEXT
        for tok in (self.img_start, self.img_end, self.img_context):
            if len(_ids(tokenizer, tok)) != 1:
                raise ValueError(f"the tokenizer has no single token for {tok!r}")
        self.image_token_id = _ids(tokenizer, self.img_context)[0]
        self.eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self._prompt_cache: dict[tuple[str, int], list[int]] = {}

    # -- pieces -----------------------------------------------------------------------------

    def tiles(self, image: Any) -> torch.Tensor:
        """``[n_tiles, 3, tile, tile]`` pixel values of a PIL image (InternVL dynamic tiling)."""
        out = self.image_processor(
            images=[image],
            size={"height": self.tile_size, "width": self.tile_size},
            crop_to_patches=self.max_tiles > 1,
            min_patches=1,
            max_patches=self.max_tiles,
            return_tensors="pt",
        )
        return out["pixel_values"]

    def prompt_ids(self, question: str, n_tiles: int) -> list[int]:
        """Token ids of the prompt for ``question`` about an image of ``n_tiles`` tiles.

        With a chat template, the user turn is ``[image, question]`` followed by the generation
        prompt, and the template's single image placeholder becomes the image block; without
        one, the prompt is ``image block \\n question \\n``.
        """
        key = (question, n_tiles)
        cached = self._prompt_cache.get(key)
        if cached is not None:
            return cached
        block = self.img_start + self.img_context * (self.image_seq_length * n_tiles) + self.img_end
        if self.has_chat_template:
            text = self.tokenizer.apply_chat_template(
                [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": question}],
                    }
                ],
                add_generation_prompt=True,
                tokenize=False,
            )
            for placeholder in (self.img_context, "<image>"):
                if placeholder in text:
                    text = text.replace(placeholder, block, 1)
                    break
            else:
                text = block + "\n" + text
        else:
            text = f"{block}\n{question}\n"
        ids = _ids(self.tokenizer, text)
        n_image = sum(1 for i in ids if i == self.image_token_id)
        if n_image != self.image_seq_length * n_tiles:
            raise ValueError(
                f"prompt has {n_image} image tokens, expected {self.image_seq_length * n_tiles}"
            )
        self._prompt_cache[key] = ids
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of an answer followed by the end-of-turn token."""
        ids = _ids(self.tokenizer, answer)
        return [*ids, self.eos_id] if self.eos_id is not None else ids

    def _decode(self, row: dict[str, Any]) -> Any:
        image = row.get("image") or {}
        data = image.get("bytes") if isinstance(image, dict) else None
        if not data:
            raise ImageDecodeError("missing_image", "the row has no image bytes")
        return decode_image(data, name=str(row.get("image_id"))).image

    # -- samples ----------------------------------------------------------------------------

    def encode_train(self, row: dict[str, Any]) -> dict[str, Any]:
        """One training sample from an exported row (or ``{"error": ...}`` for a bad row).

        Keys: ``input_ids``/``labels`` ``[T]`` (labels are -100 outside the answer),
        ``pixel_values [n, 3, S, S]``, ``head_pos``, ``level_pos`` (-1 when the answer has no
        level word after the prefix), ``is_overall``, ``score``, ``dimension_scores [12]``.
        """
        meta = {"image_id": row.get("image_id"), "source": row.get("source")}
        try:
            part = row.get("part")
            if part not in PARTS:
                raise ValueError(f"unknown part {part!r}")
            question, answer = row.get("question"), row.get("answer")
            if not question or not answer:
                raise ValueError("question or answer missing")
            score = _unit(row.get("score"), "score")
            n_dims = len(self.standard.dimensions)
            dims = row.get("dimension_scores")
            if part == "fine_grained":
                if dims is None or len(dims) != n_dims:
                    raise ValueError("a fine_grained row needs 12 dimension scores")
                dims = [_unit(v, "dimension score") for v in dims]
            else:
                dims = [0.0] * n_dims
            pixels = self.tiles(self._decode(row))
        except (ImageDecodeError, ValueError, TypeError) as exc:
            return {**meta, "error": f"{type(exc).__name__}: {exc}"}
        prompt = self.prompt_ids(question, pixels.shape[0])
        ans = self.answer_ids(answer)
        level_pos = -1
        level = row.get("level")
        if part == "overall" and level in self.standard.level_words:
            lvl_id = self.level_token_ids[self.standard.level_words.index(level)]
            n = len(self.prefix_ids)
            if ans[:n] == self.prefix_ids and len(ans) > n and ans[n] == lvl_id:
                level_pos = len(prompt) + n - 1
        return {
            **meta,
            "input_ids": torch.tensor(prompt + ans, dtype=torch.long),
            "labels": torch.tensor([IGNORE_INDEX] * len(prompt) + ans, dtype=torch.long),
            "pixel_values": pixels,
            "head_pos": len(prompt) - 1,
            "level_pos": level_pos,
            "is_overall": part == "overall",
            "score": score,
            "dimension_scores": torch.tensor(dims, dtype=torch.float32),
        }

    def inference_questions(self, questions: str = "canonical") -> tuple[list[str], list[str]]:
        """The overall and the 12-dimension questions asked at inference (SPEC 2.6).

        ``canonical``: the first paraphrase of each, the same for every image, so an image's
        score never depends on its bytes (the training rows pick a paraphrase by a hash of the
        image id, which changes when a photo is re-encoded). ``all``: every paraphrase, whose
        scores :meth:`HumanAesExpert.predict` averages.
        """
        std = self.standard
        if questions == "canonical":
            return [std.overall_questions[0]], [std.fine_grained_questions[0]]
        if questions == "all":
            return list(std.overall_questions), list(std.fine_grained_questions)
        raise ValueError(
            f"questions must be one of {', '.join(INFERENCE_QUESTIONS)}, got {questions!r}"
        )

    def encode_inference(self, row: dict[str, Any], questions: str = "canonical") -> dict[str, Any]:
        """The scoring prompts of one image (SPEC 3.2), with the row's targets if any.

        For each question of :meth:`inference_questions` (index q): ``overall_ids[q]`` = overall
        prompt + answer prefix (its last prompt token feeds the regression head, its last token
        gives the level-word logits) and ``fine_prompts[q]`` = a 12-dimension prompt (its last
        token feeds the Expert head); ``overall_prompt`` / ``fine_prompt`` are the first ones,
        for text generation. ``row`` is an exported row, or ``{"image": PIL image,
        "image_id": ...}`` for a file being scored. The targets (``score``, ``level``,
        ``dimension_scores``, ``dimension_levels``) are the exported values as they are, never
        recomputed or narrowed to float32 (SPEC 2.5); ``None`` when the row has none.
        """
        meta = {
            "image_id": row.get("image_id"),
            "source": row.get("source"),
            "part": row.get("part"),
        }
        try:
            overall_qs, fine_qs = self.inference_questions(questions)
            image = row["image"]
            if isinstance(image, dict):
                image = self._decode(row)
            pixels = self.tiles(image)
            n_dims = len(self.standard.dimensions)
            score = row.get("score")
            score = None if score is None else _unit(score, "score")
            dims = row.get("dimension_scores")
            if dims is not None:
                dims = [_unit(v, "dimension") for v in dims]
                if len(dims) != n_dims:
                    raise ValueError(f"expected {n_dims} dimension scores, got {len(dims)}")
        except (ImageDecodeError, ValueError, TypeError, KeyError) as exc:
            return {**meta, "error": f"{type(exc).__name__}: {exc}"}
        n = pixels.shape[0]
        overall_prompts = [self.prompt_ids(q, n) for q in overall_qs]
        fine_prompts = [self.prompt_ids(q, n) for q in fine_qs]
        return {
            **meta,
            "pixel_values": pixels,
            "overall_prompts": overall_prompts,
            "fine_prompts": fine_prompts,
            "overall_ids": [p + self.prefix_ids for p in overall_prompts],
            "overall_prompt": overall_prompts[0],
            "fine_prompt": fine_prompts[0],
            "score": score,
            "level": row.get("level"),
            "dimension_scores": dims,
            "dimension_levels": row.get("dimension_levels"),
        }


def _unit(value: Any, what: str) -> float:
    """A float in [0, 1] or ``ValueError``."""
    if value is None:
        raise ValueError(f"{what} missing")
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{what} {v!r} outside [0, 1]")
    return v


# ---------------------------------------------------------------------------------------------
# Batches


def _pad(seqs: Sequence[Sequence[int] | torch.Tensor], value: int, length: int, left: bool = False):
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        s = torch.as_tensor(s, dtype=torch.long)
        if left:
            out[i, length - len(s) :], mask[i, length - len(s) :] = s, 1
        else:
            out[i, : len(s)], mask[i, : len(s)] = s, 1
    return out, mask


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple) if multiple > 1 else n


def collate_train(
    samples: Sequence[dict[str, Any]], pad_id: int, pad_to_multiple: int = 8
) -> dict[str, Any]:
    """Right-padded training batch: the tensors ``HumanAesExpert.forward`` takes, plus ``meta``.

    ``pixel_values`` concatenates every sample's tiles in sample order ``[sum n_i, 3, S, S]``;
    lengths are padded to a multiple of ``pad_to_multiple`` so compiled graphs see few shapes.
    """
    samples = [s for s in samples if "error" not in s]
    if not samples:
        raise ValueError("a training batch needs at least one valid sample")
    length = _round_up(max(len(s["input_ids"]) for s in samples), pad_to_multiple)
    input_ids, attention_mask = _pad([s["input_ids"] for s in samples], pad_id, length)
    labels, _ = _pad([s["labels"] for s in samples], IGNORE_INDEX, length)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "pixel_values": torch.cat([s["pixel_values"] for s in samples]),
        "head_pos": torch.tensor([s["head_pos"] for s in samples], dtype=torch.long),
        "level_pos": torch.tensor([s["level_pos"] for s in samples], dtype=torch.long),
        "is_overall": torch.tensor([s["is_overall"] for s in samples], dtype=torch.bool),
        "score": torch.tensor([s["score"] for s in samples], dtype=torch.float32),
        "dimension_scores": torch.stack([s["dimension_scores"] for s in samples]),
        "meta": {
            "image_id": [s["image_id"] for s in samples],
            "source": [s["source"] for s in samples],
        },
    }


def collate_inference(
    samples: Sequence[dict[str, Any]], pad_id: int, pad_to_multiple: int = 8
) -> dict[str, Any]:
    """Scoring batch of B images asked Q questions each (Q = 1 for the canonical question).

    ``input_ids [2QB, T]`` holds Q blocks of the B overall prompts (with the answer prefix),
    one block per question, then Q blocks of the B 12-dimension prompts, right-padded;
    ``head_pos [2QB]`` is the last prompt token of each sequence and ``level_pos [QB]`` the
    last token of each overall sequence. ``targets`` keeps each row's exported values as they
    are (see :meth:`SampleEncoder.encode_inference`).

    Bad samples go to ``errors``; ``size`` is the number of valid images (0 is possible).
    """
    errors = [s for s in samples if "error" in s]
    good = [s for s in samples if "error" not in s]
    batch: dict[str, Any] = {
        "size": len(good),
        "errors": [
            {"image_id": s.get("image_id"), "source": s.get("source"), "error": s["error"]}
            for s in errors
        ],
    }
    if not good:
        return batch
    n_questions = len(good[0]["overall_ids"])
    if any(len(s["overall_ids"]) != n_questions for s in good):
        raise ValueError("every image of a batch must be asked the same questions")
    # Block q holds question q of every image, so image i's sequences sit at q * B + i.
    overall = [s["overall_ids"][q] for q in range(n_questions) for s in good]
    overall_prompt = [s["overall_prompts"][q] for q in range(n_questions) for s in good]
    fine = [s["fine_prompts"][q] for q in range(n_questions) for s in good]
    seqs = overall + fine
    length = _round_up(max(len(s) for s in seqs), pad_to_multiple)
    input_ids, attention_mask = _pad(seqs, pad_id, length)
    batch.update(
        {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": torch.cat([s["pixel_values"] for s in good]),
            "tiles": torch.tensor([s["pixel_values"].shape[0] for s in good], dtype=torch.long),
            "questions": n_questions,
            "head_pos": torch.tensor(
                [len(p) - 1 for p in overall_prompt] + [len(p) - 1 for p in fine],
                dtype=torch.long,
            ),
            "level_pos": torch.tensor([len(s) - 1 for s in overall], dtype=torch.long),
            "overall_prompt": [s["overall_prompt"] for s in good],
            "fine_prompt": [s["fine_prompt"] for s in good],
            "meta": {k: [s.get(k) for s in good] for k in ("image_id", "source", "part")},
            "targets": [{k: s[k] for k in TARGETS} for s in good],
        }
    )
    return batch


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one thread per worker (decode and tiling are per image)."""
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
