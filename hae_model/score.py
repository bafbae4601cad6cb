"""Scoring images: ``python -m hae_model.score --model DIR [--json] IMAGE...``.

Per image: ``overall`` (the MetaVoter's score, or one head's when training found the MetaVoter
worse than that head), ``overall_from`` (which of the two: ``metavoter``, ``lm``, ``regression``
or ``expert``), the 12 dimension scores by name (``dimensions``), the level of every score
(``levels``), the three head scores and the MetaVoter's (``heads``) and
the model's own text answers to the overall and the 12-dimension questions. With ``--json`` one
JSON object per line; otherwise a short readable block per image. An image that cannot be read
is reported (an ``error`` object) and the others are still scored; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from annotation_schema import load_standard
from hae_data.images import ImageDecodeError, read_image
from hae_model.config import OVERALL_SOURCES
from hae_model.inference import (
    add_inference_args,
    autocast,
    autocast_dtype,
    levels_of,
    resolve_device,
    score_batches,
)
from hae_model.model import load_for_inference
from hae_model.processing import collate_inference

__all__ = ["main", "score_images"]

log = logging.getLogger(__name__)


def score_images(
    model_dir: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 8,
    device: str = "auto",
    text: bool = True,
    base: str | None = None,
    max_tiles: int | None = None,
    precision: str = "auto",
    questions: str = "canonical",
) -> Iterator[dict[str, Any]]:
    """One result dict per image path, in order (see the module docstring for the keys).

    ``questions``: see :meth:`hae_model.processing.SampleEncoder.inference_questions`."""
    std = load_standard()
    dev = resolve_device(device)
    model, encoder = load_for_inference(model_dir, base=base, device=dev, max_tiles=max_tiles)
    encoder.inference_questions(questions)  # a bad value fails before any image is read
    for start in range(0, len(images), batch_size):
        chunk = [str(p) for p in images[start : start + batch_size]]
        samples = []
        for path in chunk:
            try:
                decoded = read_image(path)
            except ImageDecodeError as exc:
                samples.append({"image_id": path, "error": f"{exc.reason}: {exc.detail}"})
                continue
            row = {"image": decoded.image, "image_id": decoded.image_id, "source": path}
            samples.append(encoder.encode_inference(row, questions))
        errors = {s["image_id"]: s["error"] for s in samples if "error" in s}
        batch = collate_inference(samples, encoder.pad_id)
        batch["errors"] = []  # reported below, in input order
        ctx = autocast(dev, autocast_dtype(precision, dev))
        results = iter(score_batches(model, encoder, [batch], device=dev, autocast=ctx, text=text))
        for path, sample in zip(chunk, samples, strict=True):
            if "error" in sample:
                yield {"image": path, "error": errors[sample["image_id"]]}
                continue
            item = next(results)
            out: dict[str, Any] = {
                "image": path,
                "image_id": item["image_id"],
                "overall": item["overall"],
                "overall_from": model.config.overall_from,
                "dimensions": dict(zip(std.names, item["dimensions"], strict=True)),
                "heads": {k: item[k] for k in OVERALL_SOURCES},
                "levels": {
                    "overall": (lv := levels_of(item))["overall"],
                    **{name: lv[name] for name in std.names},
                },
            }
            if text:
                out["answer"] = item["answer"]
                out["fine_grained_answer"] = item["fine_grained_answer"]
            yield out


def _readable(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{result['image']}: ERROR {result['error']}\n"
    lines = [
        f"{result['image']}",
        f"  overall: {result['overall']:.4f} ({result['levels']['overall']}; from "
        f"{result['overall_from']})",
        "  heads: " + ", ".join(f"{k} {v:.4f}" for k, v in result["heads"].items()),
    ]
    for name, value in result["dimensions"].items():
        lines.append(f"  {name}: {value:.4f} ({result['levels'][name]})")
    if "answer" in result:
        lines.append(f"  answer: {result['answer']!r}")
        lines.append(f"  12-dimension answer: {result['fine_grained_answer']!r}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m hae_model.score",
        description="Score human images with a trained HumanAesExpert: the overall score (the "
        "MetaVoter's, or the head training chose over it), 12 dimension scores, levels and the "
        "model's text answers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="folder written by hae_model.train")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--batch-size", type=int, default=8)
    add_inference_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.max_tiles is not None and args.max_tiles < 1:
        parser.error("--max-tiles must be >= 1")
    if not Path(args.model, "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json; not a trained HumanAesExpert folder")
    try:
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    failed = 0
    with torch.inference_mode():
        for result in score_images(
            args.model,
            args.images,
            batch_size=args.batch_size,
            device=args.device,
            text=not args.no_text,
            base=args.base,
            max_tiles=args.max_tiles,
            precision=args.precision,
            questions=args.questions,
        ):
            failed += "error" in result
            sys.stdout.write(json.dumps(result) + "\n" if args.json else _readable(result))
            sys.stdout.flush()
    if failed:
        log.warning("%d of %d images could not be scored", failed, len(args.images))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
