"""Benchmark the whole build: images/s per stage, Prefect's overhead, peak memory vs N.

For each N it generates N realistic JPEGs (1024x683: portraits placed on textured backgrounds,
group photos and photos without people, from scikit-image's photos), lays them out as a
TAD66K-style source (``labels/merge/{train,test}.csv`` + ``imgs/``), then runs, each in a fresh
subprocess so peak RSS is its own:

- ``library``: the same stages called directly (load, faces, finalise, export), no Prefect;
- ``flow``: ``build-humanbeauty`` in-process (with its temporary Prefect server);
- ``flow-dask``: the same on a local Dask cluster of 2 worker processes.

Each run records per-stage rates, peak RSS and CPU time of every process it started (sampled:
Dask workers, the temporary server), the disk its export and work files take, and the load
average before and after.

Prefect's overhead share = (flow wall time - library wall time) / flow wall time, shown with and
without the temporary server's start-up (which a served deployment does not pay per run).

    python bench/pipeline.py --n 1000 4000 [--device cpu] [--json out.json]
    python bench/pipeline.py --n 20000 --modes library flow flow-dask --json scale.json
"""

from __future__ import annotations

import argparse
import functools
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


@functools.cache
def _photos() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """scikit-image's astronaut, camera (as RGB) and four scenes at 1024x683, made once per
    process."""
    from PIL import Image
    from skimage import data

    camera = np.stack([data.camera()] * 3, -1)
    scenes = [data.coffee(), data.rocket(), data.chelsea(), data.hubble_deep_field()]
    bases = [np.asarray(Image.fromarray(s).resize((1024, 683)), dtype=np.float32) for s in scenes]
    return data.astronaut(), camera, bases


@functools.cache
def _noise_bank(seed: int) -> np.ndarray:
    """Sensor noise (sd 6) a little larger than an image: each image takes a window of it at a
    random offset, so making it costs nothing per image."""
    rng = np.random.default_rng([seed, 2**31])
    return rng.standard_normal((8, 683 + 64, 1024 + 64, 3), dtype=np.float32) * np.float32(6)


def _make_image(i: int, seed: int) -> tuple[bytes, str, float]:
    """Image ``i``: JPEG bytes at 1024x683, its kind, and its label score (own rng per image,
    so any number of processes make the same images)."""
    from PIL import Image

    rng = np.random.default_rng([seed, i])
    astro, camera, bases = _photos()
    face = astro[0:300, 100:360]
    kind = str(rng.choice(["one", "many", "none"], p=[0.7, 0.15, 0.15]))
    base = bases[i % len(bases)]
    k, dy, dx = rng.integers(0, 8), rng.integers(0, 64), rng.integers(0, 64)
    noise = _noise_bank(seed)[k, dy : dy + 683, dx : dx + 1024]
    canvas = base * np.float32(rng.uniform(0.6, 1.1)) + noise
    canvas = np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)
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
    return buf.getvalue(), kind, float(rng.uniform(1, 9))


def _write_range(args: tuple[str, int, int, int]) -> list[tuple[str, float]]:
    folder, start, stop, seed = args
    rows = []
    for i in range(start, stop):
        data, _, score = _make_image(i, seed)
        name = f"{i:07d}.jpg"
        (Path(folder) / name).write_bytes(data)
        rows.append((name, score))
    return rows


def make_images(folder: Path, n: int, seed: int = 0) -> list[tuple[str, float]]:
    """N JPEGs at 1024x683 with a known mix: 70% one face, 15% several, 15% none; written by
    every core (the same files whatever the number of processes)."""
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    step = 250
    ranges = [(str(folder), a, min(a + step, n), seed) for a in range(0, n, step)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        return [row for rows in pool.map(_write_range, ranges) for row in rows]


def write_source(root: Path, n: int) -> Path:
    """A TAD66K-layout source of N generated images (kept if ``root`` already holds them)."""
    done = root / "labels" / "merge" / "test.csv"
    if done.is_file() and len(list((root / "imgs").glob("*.jpg"))) == n:
        return root
    rows = make_images(root / "imgs", n)
    _write_labels(root, rows)
    return root


def _write_labels(root: Path, rows: list[tuple[str, float]]) -> None:
    (root / "labels" / "merge").mkdir(parents=True, exist_ok=True)
    cut = int(len(rows) * 0.9)
    for split, part in (("train", rows[:cut]), ("test", rows[cut:])):
        lines = ["image,score"] + [f"{name},{score:.4f}" for name, score in part]
        (root / "labels" / "merge" / f"{split}.csv").write_text("\n".join(lines) + "\n")


class ProcessSampler:
    """Peak RSS and CPU time of this process and every descendant (Dask workers, the temporary
    Prefect server), sampled twice a second in a thread."""

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        import psutil

        self._me = psutil.Process()
        self._interval = interval
        self.procs: dict[int, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    rss, cpu = proc.memory_info().rss, proc.cpu_times()
                    if proc.pid not in self.procs:
                        cmd = " ".join(proc.cmdline()[1:4])[:80]
                        self.procs[proc.pid] = {"cmd": cmd, "peak_rss_mib": 0.0}
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            entry = self.procs[proc.pid]
            entry["peak_rss_mib"] = max(entry["peak_rss_mib"], rss / 2**20)
            entry["cpu_s"] = cpu.user + cpu.system

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> ProcessSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def subset_source(big: Path, root: Path, n: int) -> Path:
    """The first ``n`` images of a generated source ``big`` as a source of their own (hard
    links; the generator makes image ``i`` the same whatever ``n``)."""
    import csv

    scores = {}
    for split in ("train", "test"):
        with open(big / "labels" / "merge" / f"{split}.csv") as f:
            scores.update({row["image"]: float(row["score"]) for row in csv.DictReader(f)})
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = f"{i:07d}.jpg"
        if not (root / "imgs" / name).exists():
            os.link(big / "imgs" / name, root / "imgs" / name)
        rows.append((name, scores[name]))
    _write_labels(root, rows)
    return root


def run_library(root: Path, out: Path, device: str, shard_size: int) -> dict:
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
    shards = pipeline.plan_shards(loaded.records, shard_size)
    for shard in shards:
        faced.extend(pipeline.detect_shard(shard, settings, _work_dir(out, "library")).result)
    timings["faces"] = time.perf_counter() - t
    t = time.perf_counter()
    final = pipeline.finalise(faced.records, near_duplicate_distance=None)
    timings["finalise"] = time.perf_counter() - t
    t = time.perf_counter()
    rejections = loaded.rejections + faced.rejections + final.rejections
    export_with_report(final.records, rejections, out)
    timings["export"] = time.perf_counter() - t
    return {
        "timings": timings,
        "images": len(loaded.records),
        "kept": len(final.records),
        "shard_sizes": [len(sh) for sh in shards],
    }


def run_flow(root: Path, out: Path, device: str, shard_size: int, runner: str) -> dict:
    """The flow in-process, including its temporary server; ``runner``: threads or dask."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.build_humanbeauty import build_humanbeauty

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        t = time.perf_counter()
        result = build_humanbeauty(
            sources={"tad66k": str(root)},
            output_dir=str(out),
            device=device,
            shard_size=shard_size,
            task_runner=runner,
            dask_workers=2,
            # The generated photos are variants of two portraits on purpose (as the demo's):
            # near-duplicate grouping would keep a handful. Its cost is in bench/near_duplicates.py.
            near_duplicate_distance=None,
        )
        wall = time.perf_counter() - t
    return {
        "timings": result["timings"],
        "images": result["images"],
        "kept": result["totals"]["kept"],
        "wall_in_flow": wall,
        "shards": result["shards_total"],
    }


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _work_dir(out: Path, mode: str) -> Path:
    """Completion files: the flow's default (inside the export folder, which the flow claims
    first), beside it for the library (an export refuses a folder it does not own)."""
    return out.parent / f"{out.name}-work" if mode == "library" else out / "_work"


def child(mode: str, root: Path, out: Path, device: str, shard_size: int) -> None:
    """Entry point of one measured subprocess: prints its JSON result."""
    t = time.perf_counter()
    with ProcessSampler() as sampler:
        if mode == "library":
            result = run_library(root, out, device, shard_size)
        else:
            result = run_flow(root, out, device, shard_size, MODES[mode])
    result["wall"] = time.perf_counter() - t
    result["processes"] = sorted(sampler.procs.values(), key=lambda e: -e["peak_rss_mib"])
    work = _work_dir(out, mode)
    export_bytes = _disk_bytes(out) - (_disk_bytes(work) if mode != "library" else 0)
    result["disk_mib"] = {"export": export_bytes / 2**20, "work": _disk_bytes(work) / 2**20}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


#: Measured modes: the library without Prefect, the flow on threads, the flow on Dask.
MODES = {"library": None, "flow": "threads", "flow-dask": "dask"}


def measure(mode: str, root: Path, out: Path, device: str, shard_size: int) -> dict:
    """Run one mode in a subprocess; add its own peak RSS (from wait4)."""
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.setdefault("PREFECT_HOME", str(out.parent / "prefect-home"))
    log_path = out.parent / f"{out.name}.log"
    args = [sys.executable, __file__, "--child", mode, str(root), str(out), device, str(shard_size)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True
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


def report(results: list[dict], device: str, shard_size: int) -> None:
    """Print the per-run table (stages, RSS per process, disk, load) and Prefect's share."""
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"device {device}; shard size {shard_size}; {time.strftime('%Y-%m-%d')}\n"
    )
    print(
        "| N | mode | wall s | images/s (whole run) | faces img/s | finalise img/s "
        "| export img/s | load s | peak RSS MiB (main / largest other) | disk MiB (export + work) "
        "| load avg |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|")
    for r in results:
        t = r["timings"]
        procs = r["processes"]
        other = max((e["peak_rss_mib"] for e in procs[1:]), default=0.0)
        print(
            f"| {r['n']} | {r['mode']} | {r['wall']:.1f} | {r['images'] / r['wall']:.1f} "
            f"| {r['images'] / t['faces']:.1f} | {r['images'] / max(t['finalise'], 1e-9):.0f} "
            f"| {r['kept'] / t['export']:.1f} | {t['load']:.2f} "
            f"| {procs[0]['peak_rss_mib']:.0f} / {other:.0f} "
            f"| {r['disk_mib']['export']:.0f} + {r['disk_mib']['work']:.1f} "
            f"| {r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f} |"
        )
    print()
    for n in sorted({r["n"] for r in results}):
        lib = next((r for r in results if r["n"] == n and r["mode"] == "library"), None)
        for flw in (r for r in results if r["n"] == n and r["mode"] != "library"):
            if lib is None:
                break
            stage_sum = sum(flw["timings"][k] for k in lib["timings"])
            share_total = (flw["wall"] - lib["wall"]) / flw["wall"]
            share_run = (stage_sum - sum(lib["timings"].values())) / stage_sum
            print(
                f"N={n} {flw['mode']}: Prefect overhead {100 * share_total:.1f}% of the whole "
                f"process (temporary server start-up included), {100 * share_run:.1f}% of the "
                "flow's stages (tasks, subflow, state tracking)"
            )
    for r in results:
        if r["mode"] == "library":
            continue
        stage_s = sum(v for k, v in r["timings"].items() if k != "push")
        own = r["processes"][0]["cpu_s"]
        others = ", ".join(
            f"{e['cmd'].split()[-1] if e['cmd'] else '?'} {e['cpu_s']:.0f} CPU-s "
            f"{e['peak_rss_mib']:.0f} MiB"
            for e in r["processes"][1:]
            if "cpu_s" in e
        )
        print(
            f"N={r['n']} {r['mode']}: stages {stage_s:.0f} s; flow process {own:.0f} CPU-s; "
            f"other processes: {others or 'none'}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["library", "flow"])
    parser.add_argument("--shard-size", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--images", type=Path, help="keep (and reuse) the generated sources here")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help="print the tables of an earlier --json")
    args = parser.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()), args.device, args.shard_size)
        return 0
    if args.child:
        mode, root, out, device, shard_size = args.child
        child(mode, Path(root), Path(out), device, int(shard_size))
        return 0

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        for n in args.n:
            t = time.perf_counter()
            base = args.images or Path(tmp)
            bigger = sorted(
                (int(p.name[4:]), p) for p in base.glob("src-*") if (p / "labels").is_dir()
            )
            big = next((p for m, p in bigger if m > n), None)
            if big is not None and not (base / f"src-{n}" / "labels").is_dir():
                src = subset_source(big, base / f"src-{n}", n)
            else:
                src = write_source(base / f"src-{n}", n)
            print(f"N={n}: generated in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            for mode in args.modes:
                load_before = os.getloadavg()
                r = measure(mode, src, Path(tmp) / f"out-{n}-{mode}", args.device, args.shard_size)
                r.update(n=n, mode=mode, load_before=load_before, load_after=os.getloadavg())
                results.append(r)
                print(f"N={n} {mode}: {json.dumps(r)}", file=sys.stderr)
                if args.json:  # after every run: a long run killed half-way keeps what it did
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(results, indent=2))
    report(results, args.device, args.shard_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
