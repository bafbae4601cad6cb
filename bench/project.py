"""Project the full build (~390k raw images) from a scale run's measured per-stage rates.

Reads ``bench/pipeline.py --json`` output and prints, per stage, the hours on this machine, on
one GPU box and on Dask clusters of GPU nodes. The face stage is the only one spread over Dask
workers (one shard per task); load, finalise and export run in the flow's own process, so they
do not shrink with nodes. Assumptions are command-line options and are printed with the table.

    python bench/project.py bench/results/scale-20000.json --mode flow
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FULL_BUILD = 390_000


def stage_rates(run: dict) -> dict[str, float]:
    """Images per second per stage (export: exported images; the rest: raw images)."""
    t = run["timings"]
    return {
        "load": run["images"] / max(t["load"], 1e-9),
        "faces": run["images"] / t["faces"],
        "finalise": run["kept"] / max(t["finalise"], 1e-9),
        "export": run["kept"] / t["export"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--mode", default="flow", help="which run of the JSON to project from")
    p.add_argument("--images", type=int, default=FULL_BUILD)
    p.add_argument(
        "--gpu-faces-rate",
        type=float,
        default=900.0,
        help="face-stage images/s of one GPU node (default: the 16-core JPEG decode ceiling of "
        "FACTS.md, 916/s; the detector alone does 4,700-8,000/s there)",
    )
    p.add_argument(
        "--box-cpu-factor",
        type=float,
        default=4.0,
        help="speed of the single-process stages (load, finalise, export) on a GPU box's CPU "
        "relative to this machine (default 4: export's read/hash/encode threads on 16 cores "
        "against 2, its single Parquet writer thread not faster)",
    )
    p.add_argument(
        "--faces-from",
        type=Path,
        help="take the face stage's rate from this results file's first run (a run that "
        "detected every shard, when the main one reused them)",
    )
    p.add_argument("--efficiency", type=float, default=0.8, help="Dask scaling efficiency")
    args = p.parse_args(argv)
    runs = json.loads(args.results.read_text())
    run = next(r for r in runs if r["mode"] == args.mode)
    rates = stage_rates(run)
    if args.faces_from:
        rates["faces"] = stage_rates(json.loads(args.faces_from.read_text())[0])["faces"]
    kept_share = run["kept"] / run["images"]
    n = args.images
    work = {  # images each stage handles in the full build
        "load": n,
        "faces": n,
        "finalise": n * kept_share,
        "export": n * kept_share,
    }
    here = {s: work[s] / rates[s] for s in rates}
    box = {s: here[s] / args.box_cpu_factor for s in rates}
    box["faces"] = n / args.gpu_faces_rate
    print(
        f"From {args.results} ({args.mode}, N={run['n']}, {kept_share:.1%} kept); "
        f"{n:,} raw images; GPU node face stage {args.gpu_faces_rate:g} images/s (assumed, "
        f"not measured); single-process stages x{args.box_cpu_factor:g} on a GPU box; Dask "
        f"efficiency {args.efficiency:.0%} over nodes for the face stage only.\n"
    )
    cols = ["this machine (2 cores, CPU)", "1 GPU box", "Dask, 4 GPU nodes", "Dask, 16 GPU nodes"]
    print("| stage | measured images/s here | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    totals = [0.0] * len(cols)
    for s in rates:
        cells = [here[s], box[s]]
        for nodes in (4, 16):
            cells.append(box[s] / (nodes * args.efficiency) if s == "faces" else box[s])
        totals = [a + b for a, b in zip(totals, cells, strict=True)]
        print(f"| {s} | {rates[s]:,.0f} | " + " | ".join(_h(c) for c in cells) + " |")
    print("| **total** | | " + " | ".join(f"**{_h(c)}**" for c in totals) + " |")
    return 0


def _h(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


if __name__ == "__main__":
    raise SystemExit(main())
