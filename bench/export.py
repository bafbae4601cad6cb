"""Export throughput before and after a change, on the same records, in one run.

Generates ``--n`` realistic JPEGs with the pipeline benchmark's generator
(:func:`bench.pipeline.write_source`), prepares complete records the way the face stage leaves
them (image id, size and pixels from the detection decode, one face), finalises them, then
exports the same records, alternating, ``--repeats`` times each, in fresh subprocesses:

- ``baseline``: ``hae_data`` as of ``--baseline`` (a git revision, extracted to a temporary
  folder), i.e. the export as it was;
- ``now``: this tree's export (no second decode where the bytes go in unchanged; decode and
  re-encode in a thread pool where they do not);
- ``now-verify``: this tree with ``verify_decode=True`` (every image decoded again, threaded).

The best run of each counts (other jobs share the CPU). Then every Parquet row (image bytes
included) and ``stats.json`` of each variant are compared with the baseline's.

    python bench/export.py --n 4000 --baseline HEAD~3 --json bench/results/export.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare_records(root: Path, n: int, pickle_path: Path) -> int:
    """Records of ``n`` generated images, complete for export, pickled to ``pickle_path``."""
    sys.path.insert(0, str(ROOT))  # here only: a measured child must import its own tree
    from bench.pipeline import subset_source, write_source
    from hae_data.images import read_reduced
    from hae_data.pipeline import finalise, load_source
    from hae_data.records import Face

    big = root.parent / "src-20000"
    if n < 20000 and (big / "labels").is_dir():
        subset_source(big, root, n)  # the first n images of the scale run's source
    else:
        write_source(root, n)
    records = load_source("tad66k", root).records
    for rec in records:
        reduced = read_reduced(rec.image_path, long_side=640)
        rec.image_id, rec.width, rec.height = reduced.image_id, reduced.width, reduced.height
        rec.faces = [Face(box=[10.0, 10.0, 90.0, 110.0], score=0.99, landmarks=[50.0] * 10)]
    final = finalise(records, near_duplicate_distance=None).records
    pickle_path.write_bytes(pickle.dumps(final))
    return len(final)


def child(records_path: Path, out: Path, verify: bool) -> None:
    """One measured export; prints its JSON result."""
    from hae_data.export import export_dataset

    log = logging.getLogger(__name__)
    log.info("export_dataset from %s", sys.modules["hae_data.export"].__file__)
    records = pickle.loads(records_path.read_bytes())
    kwargs = {"verify_decode": True} if verify else {}
    t = time.perf_counter()
    summary = export_dataset(records, [], out, **kwargs)
    seconds = time.perf_counter() - t
    where = sys.modules["hae_data.export"].__file__
    result = {"seconds": seconds, "rows": summary.total_rows, "code": where}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


def measure(tree: Path, records: Path, out: Path, verify: bool) -> dict:
    """Run one export in a subprocess with ``tree`` first on the path; add its peak RSS."""
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{ROOT}")
    args = [sys.executable, __file__, "--child", str(records), str(out), str(int(verify))]
    proc = subprocess.Popen(args, cwd=tree, env=env, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"export in {tree} failed with status {status}")
    line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def same_export(a: Path, b: Path) -> bool:
    """Whether two exports hold the same Parquet rows (image bytes included) and stats."""
    import pyarrow.parquet as pq

    files_a = sorted(p.relative_to(a) for p in (a / "data").rglob("*.parquet"))
    files_b = sorted(p.relative_to(b) for p in (b / "data").rglob("*.parquet"))
    if files_a != files_b:
        return False
    if (a / "stats.json").read_text() != (b / "stats.json").read_text():
        return False
    return all(pq.read_table(a / f).equals(pq.read_table(b / f)) for f in files_a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--baseline", default="HEAD", help="git revision of the 'before' export")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--images", type=Path, help="keep (and reuse) the generated source here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.child[2] == "1")
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        t = Path(tmp)
        base = t / "baseline"
        base.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.baseline, "hae_data", "annotation_schema"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        src = (args.images or t) / f"src-{args.n}"
        kept = prepare_records(src, args.n, t / "records.pkl")
        variants = {"baseline": (base, False), "now": (ROOT, False), "now-verify": (ROOT, True)}
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for r in range(args.repeats):
            for name, (tree, verify) in variants.items():
                res = measure(tree, t / "records.pkl", t / f"out-{name}-{r}", verify)
                runs[name].append(res)
                print(f"{name} #{r}: {json.dumps(res)}", file=sys.stderr)
        best = {name: min(rs, key=lambda x: x["seconds"]) for name, rs in runs.items()}
        same = {name: same_export(t / "out-baseline-0", t / f"out-{name}-0") for name in variants}
    load = os.getloadavg()
    rows = []
    for name, res in best.items():
        rows.append(
            {
                "variant": name,
                "seconds": res["seconds"],
                "images_per_s": kept / res["seconds"],
                "vs_baseline": best["baseline"]["seconds"] / res["seconds"],
                "same_rows_as_baseline": same[name],
                "peak_rss_mib": res["peak_rss_mib"],
            }
        )
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')} {platform.machine()}, {os.cpu_count()} cores, "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; N={args.n} ({kept} exported), "
        f"baseline {args.baseline}\n"
    )
    print("| variant | s | images/s | vs baseline | same rows and bytes | peak RSS MiB |")
    print("|---|---:|---:|---:|---|---:|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['seconds']:.1f} | {row['images_per_s']:.0f} "
            f"| {row['vs_baseline']:.2f}x | {row['same_rows_as_baseline']} "
            f"| {row['peak_rss_mib']:.0f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"n": args.n, "kept": kept, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
