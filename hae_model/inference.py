"""Scoring many images: a DataLoader over shards and the per-image results of the model.

Shared by stage 2 of training (caching the three head scores), ``evaluate`` and ``score``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader

from annotation_schema import load_standard
from hae_data.levels import score_to_level
from hae_model.config import DTYPES, OVERALL_SOURCES, check_max_tiles
from hae_model.data import RowGroupRef, ShardStream, seed_worker
from hae_model.model import HumanAesExpert
from hae_model.processing import INFERENCE_QUESTIONS, SampleEncoder, collate_inference

__all__ = [
    "INFERENCE_BATCH_SIZE",
    "INFERENCE_WORKERS",
    "PRECISIONS",
    "SCALES",
    "ScoredImage",
    "add_inference_args",
    "autocast",
    "autocast_dtype",
    "check_inference_options",
    "inference_loader",
    "max_answer_tokens",
    "parse_fine_grained_answer",
    "parse_overall_answer",
    "prediction_level",
    "resolve_device",
    "score_batches",
]

log = logging.getLogger(__name__)

ScoredImage = dict[str, Any]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is the first CUDA GPU when there is one, else the CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


PRECISIONS = ("auto", "bf16", "fp32")
#: ``unit``: scores in [0, 1] as the model predicts them; ``five``: the paper's 1-5 MOS.
SCALES = ("unit", "five")
#: Images per batch when scoring (``evaluate``, ``score``, :func:`hae_model.load_scorer`).
INFERENCE_BATCH_SIZE = 8
#: Data-loading worker processes of ``evaluate``.
INFERENCE_WORKERS = 2


def _one_of(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def check_inference_options(
    *,
    precision: str = "auto",
    questions: str = "canonical",
    batch_size: int = INFERENCE_BATCH_SIZE,
    num_workers: int = INFERENCE_WORKERS,
    max_tiles: int | None = None,
    scale: str = "unit",
) -> None:
    """Raise ``ValueError`` naming the first bad option of a scoring run: the one check of
    these, made before a model loads (``evaluate``, ``score``, :func:`hae_model.load_scorer`).
    ``max_tiles=None`` keeps the model's own tiling."""
    _one_of("precision", precision, PRECISIONS)
    _one_of("questions", questions, INFERENCE_QUESTIONS)
    _one_of("scale", scale, SCALES)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if max_tiles is not None:
        check_max_tiles(max_tiles)


def add_inference_args(parser: argparse.ArgumentParser) -> None:
    """The options every command that runs a trained model shares (evaluate, score)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="the backbone's weights (heads stay float32); auto: bfloat16 on a GPU that "
        "supports it, else float32",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="auto: bf16 autocast on a GPU"
    )
    parser.add_argument("--no-text", action="store_true", help="skip generating text answers")
    parser.add_argument(
        "--questions",
        choices=INFERENCE_QUESTIONS,
        default="canonical",
        help="canonical: ask the first paraphrase of each question; all: average the scores "
        "over all five paraphrases (5x the language-model work)",
    )
    parser.add_argument("--max-tiles", type=int, default=None, help="default: the model's")
    parser.add_argument("--base", default=None, help="backbone location if it moved")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision``: ``auto`` is bf16 on a GPU that supports it and
    fp32 (no autocast) elsewhere; ``bf16`` forces it (also on the CPU)."""
    _one_of("precision", precision, PRECISIONS)
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def inference_loader(
    groups: Sequence[RowGroupRef],
    encoder: SampleEncoder,
    *,
    batch_size: int,
    num_workers: int = 0,
    quick_only: bool = False,
    rank: int = 0,
    world_size: int = 1,
    questions: str = "canonical",
    row_filter: Callable[[dict[str, Any]], bool] | None = None,
) -> DataLoader:
    """One pass over ``groups`` in shard order (only rows ``row_filter`` accepts, when given),
    each row once over all ranks; bad rows are kept as ``errors`` in the batches so callers
    can report them. ``questions``: see :meth:`SampleEncoder.inference_questions`."""
    encoder.inference_questions(questions)  # a bad value fails here, not in a worker
    stream = ShardStream(
        groups,
        partial(encoder.encode_inference, questions=questions),
        quick_only=quick_only,
        keep_errors=True,
        row_filter=row_filter,
        rank=rank,
        world_size=world_size,
    )
    return DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=partial(collate_inference, pad_id=encoder.pad_id),
        worker_init_fn=seed_worker if num_workers else None,
    )


def max_answer_tokens(encoder: SampleEncoder) -> tuple[int, int]:
    """Generation budgets ``(overall, fine_grained)``: the longest template answer + 8 tokens."""
    std = encoder.standard
    longest = max(std.level_words, key=lambda w: len(encoder.answer_ids(w)))
    overall = max(len(encoder.answer_ids(std.overall_answer(w))) for w in std.level_words)
    fine = len(encoder.answer_ids(std.fine_grained_answer([longest] * len(std.dimensions))))
    return overall + 8, fine + 8


def parse_overall_answer(text: str) -> str | None:
    """The level word of an overall answer, or ``None`` when it names none or several."""
    words = load_standard().level_words
    found = {w for w in _words(text) if w in words}
    return found.pop() if len(found) == 1 else None


def parse_fine_grained_answer(text: str) -> dict[str, str]:
    """``{dimension name: level}`` for every line ``<Name>: <level>`` of a 12-dimension answer
    (dimensions that are missing or malformed are absent)."""
    std = load_standard()
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or name.strip() not in std.names:
            continue
        levels = [w for w in _words(rest) if w in std.level_words]
        if len(set(levels)) == 1:
            out.setdefault(name.strip(), levels[0])
    return out


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalpha() else " " for c in text).split()


def score_batches(
    model: HumanAesExpert,
    encoder: SampleEncoder,
    batches: Iterable[dict[str, Any]],
    *,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
    text: bool = False,
    log_every_s: float = 30.0,
) -> Iterator[ScoredImage]:
    """Per-image results for every image of ``batches`` (from :func:`inference_loader` or
    ``collate_inference``), in batch order; bad rows come out as ``{"error": ...}``.

    Each result has the targets of the row exactly as exported (``score``, ``level``,
    ``dimension_scores``, ``dimension_levels``: ``None`` when unknown), the head scores
    (``lm``, ``regression``, ``expert``, ``metavoter``), ``overall`` (the one of them the
    model answers with, ``HAEConfig.overall_from``), ``dimensions`` (12 Expert scores) and,
    with ``text``, the generated ``answer`` / ``fine_grained_answer`` and what parsing
    them gave.
    """
    budget = max_answer_tokens(encoder) if text else (0, 0)
    done, start, last = 0, time.perf_counter(), time.perf_counter()
    model.eval()
    for batch in batches:
        for err in batch["errors"]:
            yield {**err}
        if batch["size"] == 0:
            continue
        with autocast or contextlib.nullcontext():
            pred = model.predict(batch)
            answers = fine_answers = None
            if text:
                gen = partial(
                    model.generate_answers,
                    pixel_values=batch["pixel_values"],
                    pad_id=encoder.pad_id,
                    eos_id=encoder.eos_id,
                )
                answers = gen(batch["overall_prompt"], max_new_tokens=budget[0])
                fine_answers = gen(batch["fine_prompt"], max_new_tokens=budget[1])
        meta = batch["meta"]
        for i in range(batch["size"]):
            item: ScoredImage = {
                "image_id": meta["image_id"][i],
                "source": meta["source"][i],
                "part": meta["part"][i],
                **batch["targets"][i],
                "lm": float(pred.lm[i]),
                "regression": float(pred.regression[i]),
                "expert": float(pred.expert[i]),
                "metavoter": float(pred.metavoter[i]),
                "overall": float(pred.overall[i]),
                "dimensions": pred.dimensions[i].tolist(),
            }
            if answers is not None and fine_answers is not None:
                answer = encoder.tokenizer.decode(answers[i], skip_special_tokens=True)
                fine = encoder.tokenizer.decode(fine_answers[i], skip_special_tokens=True)
                item["answer"] = answer
                item["answer_level"] = parse_overall_answer(answer)
                item["fine_grained_answer"] = fine
                item["fine_grained_levels"] = parse_fine_grained_answer(fine)
            yield item
        done += batch["size"]
        now = time.perf_counter()
        if now - last >= log_every_s:
            last = now
            log.info("scored %d images (%.1f images/s)", done, done / (now - start))
    if done:
        elapsed = time.perf_counter() - start
        log.info("scored %d images in %.1f s (%.1f images/s)", done, elapsed, done / elapsed)


def levels_of(item: ScoredImage) -> dict[str, str]:
    """Level words of every score of a result (heads, MetaVoter, ``overall`` and the 12
    dimensions, by name)."""
    std = load_standard()
    out = {head: prediction_level(item[head]) for head in (*OVERALL_SOURCES, "overall")}
    for name, value in zip(std.names, item["dimensions"], strict=True):
        out[name] = prediction_level(value)
    return out


def prediction_level(score: float) -> str:
    """The level word of a predicted score; the score is clipped to [0, 1] first."""
    # Sigmoid and softmax outputs are in [0, 1] up to rounding in float32.
    return score_to_level(min(1.0, max(0.0, float(score))))
