"""Serve the ``build-humanbeauty/local`` deployment from this process.

Start a Prefect server (``prefect server start``), point this process at it
(``PREFECT_API_URL=http://127.0.0.1:4200/api``), run ``python -m flows.serve``, then start runs
from anywhere with ``prefect deployment run build-humanbeauty/local -p output_dir=...``. The
runs execute here, in subprocesses of this one, until it is stopped (Ctrl-C).
"""

from __future__ import annotations

import argparse

from flows.build_humanbeauty import build_humanbeauty

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Register the deployment and serve it until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.serve",
        description="Serve the build-humanbeauty flow as a deployment (default name 'local').",
    )
    parser.add_argument("--name", default="local", help="deployment name (%(default)s)")
    parser.add_argument(
        "--limit", type=int, default=1, help="flow runs at once in this process (%(default)s)"
    )
    args = parser.parse_args(argv)
    build_humanbeauty.serve(
        name=args.name,
        limit=args.limit,
        description="Build HumanBeauty from raw sources: face filter, scores, QA, split, export.",
        tags=["humanbeauty"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
