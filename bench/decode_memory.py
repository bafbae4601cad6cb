"""Peak memory of the face stage's decode threads on huge images, with and without the budget.

Writes ``--n`` PNGs of ``--size`` x ``--size`` pixels (default 12,000: 144 MP, just under the
150 MP cap, the worst an accepted file can be), then, for each thread count, decodes them all
with ``hae_data.images.read_reduced`` on that many threads in a fresh process and reports the
process's peak RSS: once with the default shared pixel budget and once with an unbounded one
(the behaviour before the budget existed).

    python bench/decode_memory.py                # 4 images of 12,000 x 12,000, 1/2/4 threads
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
from concurrent.futures import ThreadPoolExecutor
from hae_data.images import DEFAULT_DECODE_PIXEL_BUDGET, PixelBudget, read_reduced
paths, threads, bounded = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
budget = PixelBudget(DEFAULT_DECODE_PIXEL_BUDGET if bounded else 10**15)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with ThreadPoolExecutor(threads) as pool:
    done = list(pool.map(lambda p: read_reduced(p, long_side=640, budget=budget).width, paths))
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "base_rss_mb": base / 1024, "seconds": time.perf_counter() - start,
                  "budget_peak_mp": budget.peak / 1e6, "images": len(done)}))
"""


def _write_images(folder: Path, n: int, size: int) -> list[str]:
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, size, dtype=np.float32)
    paths = []
    for i in range(n):
        # Smooth gradients compress well, so the files are small while the pixels are not.
        r = np.broadcast_to(ramp[None, :], (size, size))
        g = np.broadcast_to(ramp[:, None], (size, size))
        b = np.full((size, size), (i * 40) % 256, dtype=np.float32)
        img = Image.fromarray(np.stack([r, g, b], axis=-1).astype(np.uint8))
        path = folder / f"huge-{i}.png"
        img.save(path, compress_level=1)
        paths.append(str(path))
    return paths


def main() -> None:
    """Measure and print a Markdown table (and JSON with --json)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=4, help="images (%(default)s)")
    p.add_argument("--size", type=int, default=12_000, help="side in pixels (%(default)s)")
    p.add_argument("--threads", default="1,2,4", help="thread counts (%(default)s)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_images(Path(tmp), args.n, args.size)
        for threads in (int(t) for t in args.threads.split(",")):
            for bounded in (False, True):
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        _CHILD,
                        json.dumps(paths),
                        str(threads),
                        str(int(bounded)),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(out.stdout)
                row.update(threads=threads, budget="default" if bounded else "none")
                rows.append(row)
    print(
        f"{dt.date.today()} {platform.node()} {platform.processor() or platform.machine()}, "
        f"{args.n} PNGs of {args.size}x{args.size}"
    )
    print("| threads | budget | peak RSS (MB) | seconds | budget peak (MP) |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['threads']} | {r['budget']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} "
            f"| {r['budget_peak_mp']:.0f} |"
        )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
