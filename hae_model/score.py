"""Scoring images: ``python -m hae_model.score --model DIR_OR_HUB_ID [--json] IMAGE_OR_DIR...``.

A command-line face of :func:`hae_model.load_scorer`. Per image: ``overall`` (the MetaVoter's
score, or one head's when training found the MetaVoter worse than that head), ``overall_from``
(which of the two: ``metavoter``, ``lm``, ``regression`` or ``expert``), the 12 dimension scores
by name (``dimensions``), the level of every score (``levels``), the three head scores and the
MetaVoter's (``heads``), ``scale`` and the model's own text answers to the overall and the
12-dimension questions. Folders contribute their image files (recursively, sorted). Scores are
on 0-1, or with ``--scale five`` on the paper's 1-5 MOS scale.

Output: a short readable block per image, one JSON object per line (``--json``), or a file
(``--output FILE.jsonl`` / ``FILE.csv``, one row per image, written as batches finish). An image
that cannot be read is reported (an ``error``) and the others are still scored; the exit status
is then 1. A bad argument (a missing model, an empty folder, an unknown output kind) stops the
command before the model loads.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from annotation_schema import load_standard
from hae_data.images import IMAGE_SUFFIXES
from hae_model.config import OVERALL_SOURCES
from hae_model.inference import INFERENCE_BATCH_SIZE, SCALES, add_inference_args
from hae_model.scorer import find_images, load_scorer

__all__ = ["OUTPUT_KINDS", "csv_columns", "csv_row", "main"]

log = logging.getLogger(__name__)

#: ``--output`` kinds, by the file's extension.
OUTPUT_KINDS = (".jsonl", ".csv")


def csv_columns(text: bool) -> list[str]:
    """The header of ``--output FILE.csv``: one column per score, level and answer."""
    names = load_standard().names
    cols = ["image", "image_id", "error", "scale", "overall", "overall_level", "overall_from"]
    cols += list(OVERALL_SOURCES)
    for name in names:
        cols += [name, f"{name} level"]
    if text:
        cols += ["answer", "fine_grained_answer"]
    return cols


def csv_row(result: dict[str, Any]) -> dict[str, Any]:
    """One result flattened for :func:`csv_columns` (an error row has only image and error)."""
    if "error" in result:
        return {"image": result["image"], "error": result["error"]}
    row = {k: result[k] for k in ("image", "image_id", "scale", "overall", "overall_from")}
    row["overall_level"] = result["levels"]["overall"]
    row.update(result["heads"])
    for name, value in result["dimensions"].items():
        row[name] = value
        row[f"{name} level"] = result["levels"][name]
    for key in ("answer", "fine_grained_answer"):
        if key in result:
            row[key] = result[key]
    return row


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


@contextmanager
def _sink(output: str | None, as_json: bool, text: bool) -> Iterator[Any]:
    """A function writing one result where the options say, flushing as it goes."""
    if output is None:

        def to_stdout(result: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(result) + "\n" if as_json else _readable(result))
            sys.stdout.flush()

        yield to_stdout
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        yield _csv_writer(f, text) if path.suffix == ".csv" else _jsonl_writer(f)
    log.info("wrote %s", path)


def _jsonl_writer(f: TextIO) -> Any:
    def write(result: dict[str, Any]) -> None:
        f.write(json.dumps(result) + "\n")
        f.flush()

    return write


def _csv_writer(f: TextIO, text: bool) -> Any:
    writer = csv.DictWriter(f, fieldnames=csv_columns(text))
    writer.writeheader()

    def write(result: dict[str, Any]) -> None:
        writer.writerow(csv_row(result))
        f.flush()

    return write


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m hae_model.score",
        description="Score human images with a trained HumanAesExpert: the overall score (the "
        "MetaVoter's, or the head training chose over it), 12 dimension scores, levels and the "
        "model's text answers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="folder written by hae_model.train, or a Hub model id"
    )
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files, or folders (searched recursively)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--output", default=None, help="write the results to FILE.jsonl or FILE.csv instead"
    )
    parser.add_argument(
        "--scale", choices=SCALES, default="unit", help="unit: 0-1; five: the paper's 1-5 MOS"
    )
    parser.add_argument("--batch-size", type=int, default=INFERENCE_BATCH_SIZE)
    add_inference_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.output is not None and Path(args.output).suffix not in OUTPUT_KINDS:
        parser.error(f"--output {args.output}: must end in {' or '.join(OUTPUT_KINDS)}")
    images: list[str] = []
    for given in args.images:
        found = find_images([given])
        if not found:  # only a folder can yield nothing
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            parser.error(f"{given}: a folder without image files ({suffixes})")
        images += found
    try:
        scorer = load_scorer(
            args.model,
            device=args.device,
            dtype=args.dtype,
            precision=args.precision,
            text=not args.no_text,
            questions=args.questions,
            batch_size=args.batch_size,
            scale=args.scale,
            base=args.base,
            max_tiles=args.max_tiles,
        )
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))  # a bad option, or a model that is neither a folder nor on the Hub
    failed = 0
    with _sink(args.output, args.json, not args.no_text) as write:
        for result in scorer.iter_scores(images):
            failed += "error" in result
            write(result)
    if failed:
        log.warning("%d of %d images could not be scored", failed, len(images))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
