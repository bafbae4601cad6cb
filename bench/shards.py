"""Shard sizes the planner makes (``hae_data.pipeline.plan_shards``) for a few N and shard
sizes: count, smallest, largest, coefficient of variation. Run it against an older tree to
compare (``PYTHONPATH=<old checkout> python bench/shards.py``).

    python bench/shards.py
"""

from __future__ import annotations

import statistics
import sys

from hae_data.pipeline import plan_shards
from hae_data.records import Record

CASES = [(300, 100), (4000, 100), (4000, 2000), (20000, 2000), (390000, 2000)]


def main() -> int:
    """Print the Markdown table."""
    sys.stdout.write("| N | shard_size | shards | smallest | largest | CV | first six |\n")
    sys.stdout.write("|---:|---:|---:|---:|---:|---:|---|\n")
    for n, size in CASES:
        recs = [Record(source="tad66k", file_name=f"{i:07d}.jpg", image_path="x") for i in range(n)]
        sizes = [len(s) for s in plan_shards(recs, size)]
        cv = statistics.pstdev(sizes) / statistics.mean(sizes)
        sys.stdout.write(
            f"| {n:,} | {size:,} | {len(sizes)} | {min(sizes)} | {max(sizes)} | {cv:.2f} "
            f"| {', '.join(map(str, sizes[:6]))} |\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
