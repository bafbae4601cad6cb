"""Benchmark the whole build: images/s per stage, Prefect's overhead, peak memory vs N.

For each N it generates N realistic JPEGs (1024x683: portraits placed on textured backgrounds,
group photos and photos without people, from scikit-image's photos), lays them out as a
TAD66K-style source (``labels/merge/{train,test}.csv`` + ``imgs/``), then runs, each in a fresh
subprocess so peak RSS is its own:

- ``library``: the same stages called directly (load, faces, finalise, export), no Prefect;
- ``flow``: ``build-humanbeauty`` in-process (with its temporary Prefect server).

Prefect's overhead share = (flow wall time - library wall time) / flow wall time, shown with and
without the temporary server's start-up (which a served deployment does not pay per run).

    python bench/pipeline.py --n 1000 4000 [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, seed: int = 0) -> list[tuple[str, float]]:
    """N JPEGs at 1024x683 with a known mix: 70% one face, 15% several, 15% none."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    astro, camera = data.astronaut(), np.stack([data.camera()] * 3, -1)
    scenes = [data.coffee(), data.rocket(), data.chelsea(), data.hubble_deep_field()]
    face = astro[0:300, 100:360]
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        kind = rng.choice(["one", "many", "none"], p=[0.7, 0.15, 0.15])
        base = scenes[i % len(scenes)]
        canvas = np.asarray(Image.fromarray(base).resize((1024, 683)), dtype=np.float32)
        canvas = np.clip(canvas * rng.uniform(0.6, 1.1) + rng.normal(0, 6, canvas.shape), 0, 255)
        canvas = canvas.astype(np.uint8)
        if kind == "one":
            portrait = astro if i % 2 else camera
            scale = rng.uniform(0.9, 1.25)
            img = np.asarray(Image.fromarray(portrait).resize((int(512 * scale),) * 2))
            y, x = rng.integers(0, 683 - img.shape[0] + 1), rng.integers(0, 1024 - img.shape[1] + 1)
            canvas[y : y + img.shape[0], x : x + img.shape[1]] = img
        elif kind == "many":
            for k in range(3):
                canvas[80:380, 40 + k * 330 : 300 + k * 330] = face[:, :: (1 if k % 2 else -1)]
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, format="JPEG", quality=90)
        name = f"{i:07d}.jpg"
        (folder / name).write_bytes(buf.getvalue())
        rows.append((name, float(rng.uniform(1, 9))))
    return rows


def write_source(root: Path, n: int) -> Path:
    """A TAD66K-layout source of N generated images."""
    rows = make_images(root / "imgs", n)
    (root / "labels" / "merge").mkdir(parents=True, exist_ok=True)
    cut = int(len(rows) * 0.9)
    for split, part in (("train", rows[:cut]), ("test", rows[cut:])):
        lines = ["image,score"] + [f"{name},{score:.4f}" for name, score in part]
        (root / "labels" / "merge" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def run_library(root: Path, out: Path, device: str) -> dict:
    """The stages without Prefect."""
    from hae_data import pipeline
    from hae_data.report import export_with_report

    timings = {}
    t = time.perf_counter()
    loaded = pipeline.load_source("tad66k", root)
    timings["load"] = time.perf_counter() - t
    t = time.perf_counter()
    faced = pipeline.StageResult()
    settings = pipeline.FaceSettings(device=device)
    for shard in pipeline.plan_shards(loaded.records, 2000):
        faced.extend(pipeline.detect_shard(shard, settings, out / "_work").result)
    timings["faces"] = time.perf_counter() - t
    t = time.perf_counter()
    final = pipeline.finalise(faced.records)
    timings["finalise"] = time.perf_counter() - t
    t = time.perf_counter()
    rejections = loaded.rejections + faced.rejections + final.rejections
    export_with_report(final.records, rejections, out)
    timings["export"] = time.perf_counter() - t
    return {"timings": timings, "images": len(loaded.records), "kept": len(final.records)}


def run_flow(root: Path, out: Path, device: str) -> dict:
    """The flow in-process, including its temporary server."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.build_humanbeauty import build_humanbeauty

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        t = time.perf_counter()
        result = build_humanbeauty(
            sources={"tad66k": str(root)}, output_dir=str(out), device=device
        )
        wall = time.perf_counter() - t
    return {
        "timings": result["timings"],
        "images": result["images"],
        "kept": result["totals"]["kept"],
        "wall_in_flow": wall,
    }


def child(mode: str, root: Path, out: Path, device: str) -> None:
    """Entry point of one measured subprocess: prints its JSON result."""
    t = time.perf_counter()
    run = run_library if mode == "library" else run_flow
    result = run(root, out, device)
    result["wall"] = time.perf_counter() - t
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


def measure(mode: str, root: Path, out: Path, device: str) -> dict:
    """Run one mode in a subprocess; add its own peak RSS (from wait4)."""
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.setdefault("PREFECT_HOME", str(out.parent / "prefect-home"))
    log_path = out.parent / f"{out.name}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", mode, str(root), str(out), device],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        stdout = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{mode} run failed with status {status}:\n{tail}")
    line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument(
        "--child", nargs=4, metavar=("MODE", "ROOT", "OUT", "DEVICE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        mode, root, out, device = args.child
        child(mode, Path(root), Path(out), device)
        return 0

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        for n in args.n:
            src = write_source(Path(tmp) / f"src-{n}", n)
            for mode in ("library", "flow"):
                r = measure(mode, src, Path(tmp) / f"out-{n}-{mode}", args.device)
                r.update(n=n, mode=mode)
                results.append(r)
                print(f"N={n} {mode}: {json.dumps(r)}", file=sys.stderr)
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"device {args.device}; {time.strftime('%Y-%m-%d')}\n"
    )
    print(
        "| N | mode | wall s | images/s (whole run) | faces img/s | export img/s "
        "| load s | finalise s | peak RSS MiB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        t = r["timings"]
        print(
            f"| {r['n']} | {r['mode']} | {r['wall']:.1f} | {r['images'] / r['wall']:.1f} "
            f"| {r['images'] / t['faces']:.1f} | {r['kept'] / t['export']:.1f} "
            f"| {t['load']:.2f} | {t['finalise']:.2f} | {r['peak_rss_mib']:.0f} |"
        )
    print()
    for n in args.n:
        lib = next(r for r in results if r["n"] == n and r["mode"] == "library")
        flw = next(r for r in results if r["n"] == n and r["mode"] == "flow")
        stage_sum = sum(flw["timings"].values())
        share_total = (flw["wall"] - lib["wall"]) / flw["wall"]
        share_run = (stage_sum - sum(lib["timings"].values())) / stage_sum
        print(
            f"N={n}: Prefect overhead {100 * share_total:.1f}% of the whole process "
            f"(temporary server start-up included), {100 * share_run:.1f}% of the flow's "
            f"stages (tasks, subflow, state tracking)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
