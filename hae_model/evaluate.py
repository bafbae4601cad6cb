"""Evaluation (SPEC 3.4): ``python -m hae_model.evaluate --model M --data D --output FILE.json``.

For every image of the split: the three head scores and the MetaVoter's (the ablation of paper
Table 5), compared with the ground-truth overall score (for 12-dimension rows, the Overall
Aesthetic dimension) by PLCC, SRCC, KRCC, MSE, MAE, RMSE, and, as levels, by accuracy and macro
precision / recall / F1; the Expert head's MAE per dimension on the 12-dimension rows (paper
Table 3); all per source and in total. With text generation on (the default), the model's own
answers are parsed into levels: an answer that names no level (or several) is counted as
unparseable and left out, never replaced by a guess. Rows that cannot be read are listed under
``skipped``. Writes ``FILE.json`` and the same tables as Markdown in ``FILE.md``; with
``--predictions FILE.jsonl`` (or ``.csv``) also every image's prediction of every head beside
its exported targets. A split without rows (``--split quick`` on an export without a quick
subset, say) is an error, never an empty report. ``--model`` and ``--data`` take folders or Hub
ids (a dataset id downloads only the shards of the split, see :mod:`hae_model.model_hub`).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from annotation_schema import load_standard
from hae_data.outdir import atomic_path, write_text_atomic
from hae_data.records import PARTS
from hae_model.config import OVERALL_SOURCES, resolve_dtype
from hae_model.data import SPLITS, count_rows, list_row_groups
from hae_model.inference import (
    INFERENCE_BATCH_SIZE,
    INFERENCE_WORKERS,
    ScoredImage,
    add_inference_args,
    autocast,
    autocast_dtype,
    check_inference_options,
    inference_loader,
    prediction_level,
    resolve_device,
    score_batches,
)
from hae_model.metrics import level_metrics, mae, regression_metrics
from hae_model.model import load_for_inference
from hae_model.model_hub import EVALUATION_FILE, is_hub_id, resolve_data, resolve_model

__all__ = [
    "EVAL_SPLITS",
    "HEADS",
    "build_report",
    "evaluate",
    "main",
    "markdown_report",
    "prediction_rows",
    "row_groups",
    "write_predictions",
]

log = logging.getLogger(__name__)

#: Scores compared in the ablation, in table order, with their display names.
HEADS = {
    "lm": "LM head",
    "regression": "regression head",
    "expert": "Expert head",
    "metavoter": "MetaVoter",
}


def _group_report(items: Sequence[ScoredImage], text: bool) -> dict[str, Any]:
    std = load_standard()
    target = [it["score"] for it in items]
    # The exported levels, never re-binned here: a float32 copy of a boundary score (0.6 ->
    # 0.6000000238) would land one level up (SPEC 2.5).
    true_levels = [it["level"] for it in items]
    heads = {}
    for head in HEADS:
        pred = [it[head] for it in items]
        metrics = regression_metrics(pred, target)
        levels = level_metrics([prediction_level(p) for p in pred], true_levels)
        heads[head] = {**metrics, **{k: v for k, v in levels.items() if k != "n"}}
    report: dict[str, Any] = {"n": len(items), "heads": heads}

    fine = [it for it in items if it.get("dimension_scores") is not None]
    if fine:
        dims = {
            name: mae(
                [it["dimensions"][i] for it in fine], [it["dimension_scores"][i] for it in fine]
            )
            for i, name in enumerate(std.names)
        }
        report["dimensions"] = {"n": len(fine), "mae": dims}
        report["dimensions"]["mean_mae"] = sum(dims.values()) / len(dims)

    if text:
        parsed = [(it["answer_level"], lv) for it, lv in zip(items, true_levels, strict=True)]
        ok = [(p, t) for p, t in parsed if p is not None]
        entry: dict[str, Any] = {
            "answers": len(items),
            "unparseable": len(items) - len(ok),
            **level_metrics([p for p, _ in ok], [t for _, t in ok]),
        }
        entry["n_parsed"] = entry.pop("n")
        if fine:
            per_dim: dict[str, Any] = {}
            for i, name in enumerate(std.names):
                pairs = [
                    (it["fine_grained_levels"][name], it["dimension_levels"][i])
                    for it in fine
                    if name in it["fine_grained_levels"] and it.get("dimension_levels")
                ]
                per_dim[name] = sum(p == t for p, t in pairs) / len(pairs) if pairs else None
            entry["fine_grained_answers"] = len(fine)
            entry["fine_grained_unparseable"] = sum(
                1 for it in fine if len(it["fine_grained_levels"]) < len(std.names)
            )
            entry["fine_grained_level_accuracy"] = per_dim
        report["text"] = entry
    return report


def build_report(items: Sequence[ScoredImage], *, text: bool) -> dict[str, Any]:
    """Metrics in total and per source for scored images (errors are reported separately).

    Ground truth is the row's exported ``score``, ``level`` and ``dimension_levels``; an item
    without a valid exported level cannot be compared and is listed under ``skipped``.
    """
    words = load_standard().level_words
    items = [
        it
        if "error" in it or it.get("level") in words
        else {
            "image_id": it.get("image_id"),
            "source": it.get("source"),
            "error": f"no exported level (got {it.get('level')!r})",
        }
        for it in items
    ]
    good = [it for it in items if "error" not in it]
    by_source: dict[str, list[ScoredImage]] = defaultdict(list)
    for it in good:
        by_source[it["source"] or "unknown"].append(it)
    return {
        "images": len(good),
        "skipped": [it for it in items if "error" in it],
        "total": _group_report(good, text) if good else {"n": 0},
        "per_source": {s: _group_report(v, text) for s, v in sorted(by_source.items())},
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def markdown_report(report: dict[str, Any], title: str) -> str:
    """The report's tables as Markdown: overall scores per head, dimension MAE, text answers."""
    std = load_standard()
    groups = [("total", report["total"]), *report["per_source"].items()]
    groups = [(name, g) for name, g in groups if g.get("n")]
    lines = [f"# {title}", "", f"Images: {report['images']}; skipped: {len(report['skipped'])}."]
    if "overall_from" in report:
        lines += ["", f"The model's overall score is the {HEADS[report['overall_from']]}'s."]
    lines += [
        "",
        "## Overall score",
        "",
        "| source | score from | n | PLCC | SRCC | KRCC | MSE | MAE | RMSE | level acc | macro P "
        "| macro R | macro F1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = (
        "n",
        "plcc",
        "srcc",
        "krcc",
        "mse",
        "mae",
        "rmse",
        "accuracy",
        "precision",
        "recall",
        "f1",
    )
    for name, g in groups:
        for head, label in HEADS.items():
            m = g["heads"][head]
            lines.append(f"| {name} | {label} | " + " | ".join(_fmt(m[k]) for k in keys) + " |")
    dim_groups = [(name, g["dimensions"]) for name, g in groups if "dimensions" in g]
    if dim_groups:
        lines += [
            "",
            "## Fine-grained MAE (Expert head)",
            "",
            "| source | n | " + " | ".join(std.names) + " | mean |",
            "|---|---:|" + "---:|" * (len(std.names) + 1),
        ]
        for name, dg in dim_groups:
            cells = [_fmt(dg["mae"][d]) for d in std.names]
            lines.append(
                f"| {name} | {dg['n']} | " + " | ".join(cells) + f" | {_fmt(dg['mean_mae'])} |"
            )
    text_groups = [(name, g["text"]) for name, g in groups if "text" in g]
    if text_groups:
        lines += [
            "",
            "## Text answers (levels parsed from the generated answer)",
            "",
            "| source | answers | unparseable | level acc | macro P | macro R | macro F1 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, t in text_groups:
            cells = [
                t["answers"],
                t["unparseable"],
                t["accuracy"],
                t["precision"],
                t["recall"],
                t["f1"],
            ]
            lines.append(f"| {name} | " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


#: What ``--split`` accepts: the export's splits, the quick subset, and ``all`` (every row of
#: the export, for a zero-shot set or any whole-set report, SPEC 3.4).
EVAL_SPLITS = (*SPLITS, "all")


def row_groups(data_dir: str | os.PathLike[str], split: str, parts: Sequence[str]) -> list[Any]:
    """The row groups to score: one split's, or with ``all`` those of every split present.

    Raises ``FileNotFoundError`` when the split has no rows (for ``quick``: no row of the test
    shards is flagged quick)."""
    if split == "quick":
        groups = list_row_groups(data_dir, split, parts)
        if count_rows(groups, quick_only=True) == 0:
            raise FileNotFoundError(
                f"no rows for split 'quick' under {Path(data_dir) / 'data'}: no test row is "
                "flagged quick (exported without a quick subset?); use --split test"
            )
        return groups
    if split != "all":
        return list_row_groups(data_dir, split, parts)
    groups: list[Any] = []
    for name in ("train", "test"):
        try:
            groups += list_row_groups(data_dir, name, parts)
        except FileNotFoundError:
            continue  # a zero-shot export has no train split
    if not groups:
        raise FileNotFoundError(f"no rows in any split under {Path(data_dir) / 'data'}")
    return groups


def prediction_rows(items: Sequence[ScoredImage]) -> list[dict[str, Any]]:
    """Per-image rows of ``--predictions``: the exported targets, every head's score, the
    model's ``overall``, the 12 dimension scores by name and, with text, the parsed answers;
    a row that could not be scored keeps its ``error``."""
    names = load_standard().names
    rows = []
    for it in items:
        row: dict[str, Any] = {"image_id": it.get("image_id"), "source": it.get("source")}
        if "error" in it:
            rows.append({**row, "error": it["error"]})
            continue
        row.update({k: it.get(k) for k in ("part", "score", "level")})
        row.update({k: it[k] for k in (*OVERALL_SOURCES, "overall")})
        row["dimensions"] = dict(zip(names, it["dimensions"], strict=True))
        if it.get("dimension_scores") is not None:
            row["dimension_scores"] = dict(zip(names, it["dimension_scores"], strict=True))
        for key in ("answer", "answer_level", "fine_grained_answer", "fine_grained_levels"):
            if key in it:
                row[key] = it[key]
        rows.append(row)
    return rows


def write_predictions(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write :func:`prediction_rows` as JSON lines (``.jsonl``) or a flat CSV (``.csv``: one
    column per dimension, ``target <name>`` for the exported dimension scores)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix != ".csv":
        return write_text_atomic(out, "".join(json.dumps(r) + "\n" for r in rows))
    flat = [_flat(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
    return out


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if not isinstance(v, dict)}
    out.update(row.get("dimensions", {}))
    out.update({f"target {k}": v for k, v in row.get("dimension_scores", {}).items()})
    out.update({f"answer {k}": v for k, v in row.get("fine_grained_levels", {}).items()})
    return out


def _keep_last_evaluation(report: dict[str, Any], folder: Path) -> None:
    """A copy of the report in the model folder: the model card of a push shows it."""
    try:
        write_text_atomic(folder / EVALUATION_FILE, json.dumps(report, indent=2) + "\n")
    except OSError as exc:  # a read-only model folder still gets its evaluation
        log.warning("could not keep the report in %s: %s", folder, exc)


def evaluate(
    model_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    split: str = "test",
    output: str | os.PathLike[str] | None = None,
    parts: Sequence[str] = PARTS,
    batch_size: int = INFERENCE_BATCH_SIZE,
    num_workers: int = INFERENCE_WORKERS,
    device: str = "auto",
    text: bool = True,
    max_tiles: int | None = None,
    base: str | None = None,
    precision: str = "auto",
    questions: str = "canonical",
    dtype: str = "auto",
    predictions: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score ``split`` of the export at ``data_dir`` (``all``: every row) with the model at
    ``model_dir`` (folders or Hub ids); returns the report and, with ``output``, writes it as
    JSON and Markdown (``.md`` beside it); with ``predictions``, the per-image predictions
    (:func:`write_predictions`). ``dtype``: the backbone's (:func:`resolve_dtype`);
    ``questions``: see :meth:`hae_model.processing.SampleEncoder.inference_questions`. Bad
    options raise ``ValueError`` and a split without rows ``FileNotFoundError``, both before the
    model loads."""
    check_inference_options(
        precision=precision,
        questions=questions,
        batch_size=batch_size,
        num_workers=num_workers,
        max_tiles=max_tiles,
    )
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    groups = row_groups(resolve_data(data_dir, [split], parts), split, parts)
    folder = resolve_model(model_dir)
    model, encoder = load_for_inference(
        folder, base=base, device=dev, dtype=torch_dtype, max_tiles=max_tiles
    )
    loader = inference_loader(
        groups,
        encoder,
        batch_size=batch_size,
        num_workers=num_workers,
        quick_only=split == "quick",
        questions=questions,
    )
    ctx = autocast(dev, autocast_dtype(precision, dev))
    items = list(score_batches(model, encoder, loader, device=dev, autocast=ctx, text=text))
    report = {
        "model": str(model_dir),
        "data": str(data_dir),
        "split": split,
        "parts": list(parts),
        "questions": questions,
        "dtype": str(torch_dtype).removeprefix("torch."),
        # Which score the model answers with as ``overall`` (its row in the tables below).
        "overall_from": model.config.overall_from,
        "text": text,
        **build_report(items, text=text),
    }
    if report["skipped"]:
        log.warning("%d rows could not be scored (listed under 'skipped')", len(report["skipped"]))
    if predictions is not None:
        log.info("wrote %s", write_predictions(prediction_rows(items), predictions))
    if not is_hub_id(model_dir):
        _keep_last_evaluation(report, folder)
    if output is not None:
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, json.dumps(report, indent=2) + "\n")
        title = f"HumanAesExpert evaluation: {Path(str(data_dir)).name} / {split}"
        md = markdown_report(report, title)
        out.with_suffix(".md").write_text(md, encoding="utf-8")
        log.info("wrote %s and %s", out, out.with_suffix(".md"))
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m hae_model.evaluate",
        description="Evaluate a trained HumanAesExpert on an export: PLCC/SRCC/KRCC, MSE/MAE/RMSE, "
        "level accuracy and macro P/R/F1 per head and for the MetaVoter, per-dimension MAE, per "
        "source and in total. Writes FILE.json and FILE.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="folder written by hae_model.train, or a Hub model id"
    )
    parser.add_argument(
        "--data",
        required=True,
        help="export folder, or a Hub dataset id (only the split's shards are downloaded)",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=EVAL_SPLITS,
        help="quick: the ablation subset; all: every row (a zero-shot export, or the whole set)",
    )
    parser.add_argument("--output", required=True, help="report file (.json); .md written beside")
    parser.add_argument(
        "--predictions",
        default=None,
        help="also write every image's predictions of every head (FILE.jsonl or FILE.csv)",
    )
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--batch-size", type=int, default=INFERENCE_BATCH_SIZE)
    parser.add_argument("--num-workers", type=int, default=INFERENCE_WORKERS)
    add_inference_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.output.endswith(".json"):
        parser.error("--output must end in .json")
    if args.predictions is not None and Path(args.predictions).suffix not in (".jsonl", ".csv"):
        parser.error("--predictions must end in .jsonl or .csv")
    try:  # every bad argument is a usage error (exit 2) before anything loads
        check_inference_options(
            precision=args.precision,
            questions=args.questions,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            max_tiles=args.max_tiles,
        )
        resolve_dtype(args.dtype, resolve_device(args.device))
        resolve_model(args.model)  # a Hub model is fetched (or found in the cache) here
        row_groups(resolve_data(args.data, [args.split], args.parts), args.split, args.parts)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    report = evaluate(
        args.model,
        args.data,
        split=args.split,
        output=args.output,
        parts=args.parts,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        text=not args.no_text,
        max_tiles=args.max_tiles,
        base=args.base,
        precision=args.precision,
        questions=args.questions,
        dtype=args.dtype,
        predictions=args.predictions,
    )
    total = report["total"]
    if not total.get("n"):
        log.error(
            "no image of split %r could be scored (see 'skipped' in %s)", args.split, args.output
        )
        return 1
    if total.get("n"):
        mv = total["heads"][report["overall_from"]]
        log.info(
            "total: %d images, overall (%s) PLCC %s SRCC %s MAE %s",
            total["n"],
            HEADS[report["overall_from"]],
            _fmt(mv["plcc"]),
            _fmt(mv["srcc"]),
            _fmt(mv["mae"]),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
