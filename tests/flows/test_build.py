import contextlib
import json
import os
import signal
import subprocess
from collections import Counter

import pytest
from datasets import load_dataset

from tests.flows.conftest import (
    PYTHON,
    ROOT,
    expected_counts,
    lock_held_elsewhere,
    subprocess_env,
    wait_for,
)


def _load(folder, part, split):
    return load_dataset(str(folder), part, split=split, cache_dir=str(folder.parent / "hf-cache"))


def test_demo_build_keeps_and_rejects_what_the_demo_says(demo, demo_build):
    result, out = demo_build
    stats = json.loads((out / "stats.json").read_text())["sources"]
    for name, (kept, reasons, rating_rows) in expected_counts(demo).items():
        assert stats[name]["kept"] == kept, name
        assert stats[name]["rejected"] == dict(reasons), name
        assert stats[name]["rejected_rating_rows"] == rating_rows, name
    assert result["shards_reused"] == 0 and result["shards_total"] == len(stats)
    # One count everywhere: the result's reasons are stats.json's (export stage included), and
    # a dropped rating row is not a rejected image.
    by_reason = Counter()
    for name in stats:
        by_reason.update(stats[name]["rejected"])
    assert result["rejected_by_reason"] == dict(by_reason)
    assert result["rejected_rating_rows"] == sum(r for _, _, r in expected_counts(demo).values())
    assert result["totals"]["rejected"] == sum(by_reason.values())
    overall = _load(out, "overall", "train")
    fine = _load(out, "fine_grained", "test")
    assert len(overall) == result["rows"]["overall"]["train"] > 0
    assert len(fine) == result["rows"]["fine_grained"]["test"] > 0
    row = overall[0]
    assert row["face_count"] == 1 and row["faces"][0]["score"] >= 0.9
    assert row["image"].size == (row["width"], row["height"])
    assert len(fine[0]["dimension_scores"]) == 12
    for name in (
        "README.md",
        "stats.md",
        "rejected.parquet",
        "plots/scores.png",
        "plots/levels.png",
        "plots/dimensions.png",
        "report.html",
    ):
        assert (out / name).is_file(), name
    assert "| AVA |" in result["table"]


def test_exif_rotated_demo_photo_is_exported_upright(demo, demo_build):
    _, out = demo_build
    rows = [r for split in ("train", "test") for r in _load(out, "overall", split)]
    sizes = {(r["width"], r["height"]) for r in rows}
    assert (512, 512) in sizes  # square astronaut variants
    for r in rows:
        assert r["image"].size == (r["width"], r["height"])


def test_artifacts_are_recorded(demo_build):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        table = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["humanbeauty-sources"]))
        )
        report = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["humanbeauty-report"]))
        )
    assert table and report
    assert "AVA" in json.dumps(table[-1].data)
    assert "data:image/png;base64," in report[-1].data
    assert "Stage timings: load " in report[-1].data


def test_second_identical_build_does_no_detection_work(demo, demo_build):
    from flows.build_humanbeauty import build_humanbeauty

    first, out = demo_build
    readme = (out / "README.md").read_text()
    again = build_humanbeauty(sources_config=str(demo.config), output_dir=str(out))
    assert again["shards_reused"] == again["shards_total"] == first["shards_total"]
    assert again["rows"] == first["rows"]
    assert (out / "README.md").read_text() == readme


#: Three of the demo's sources (about 12 shards of 2-3 images): enough to kill a build between
#: shards, a third of the detection work of the whole demo.
KILLED_BUILD_SOURCES = ("ava", "baid", "tad66k")


def test_killed_build_resumes_from_finished_shards(demo, prefect_api_url, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    config = tmp_path / "sources.yaml"
    config.write_text(  # the demo's config, three of its sources
        json.dumps(
            {
                "sources": {name: str(demo.sources[name]) for name in KILLED_BUILD_SOURCES},
                "near_duplicate_distance": None,
            }
        )
    )
    cmd = [
        PYTHON,
        "-m",
        "flows.build_humanbeauty",
        "--sources-config",
        str(config),
        "--output-dir",
        str(out),
        "--work-dir",
        str(work),
        "--shard-size",
        "2",
        "--json",
    ]
    env = subprocess_env(tmp_path / "prefect-home", PREFECT_API_URL=prefect_api_url)
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    done = lambda: len(list((work / "faces").glob("*.json"))) if (work / "faces").is_dir() else 0  # noqa: E731
    try:
        wait_for(lambda: done() >= 3, 600, "three finished shards", proc)
    finally:
        # The build may have ended on its own (wait_for then reports its output): a kill of a
        # process group that is gone must not hide that report behind a ProcessLookupError.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = done()
    assert not (out / "README.md").exists()  # killed before the export
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["shards_total"] > finished
    assert summary["shards_reused"] >= finished
    assert summary["shards_reused"] < summary["shards_total"]
    counts = expected_counts(demo)
    assert summary["totals"]["kept"] == sum(counts[name][0] for name in KILLED_BUILD_SOURCES)


def test_dask_runner_distributes_shards_and_agrees(prefect_server, demo, demo_build, tmp_path):
    from flows.build_humanbeauty import build_humanbeauty

    result = build_humanbeauty(
        sources_config=str(demo.config),
        output_dir=str(tmp_path / "out"),
        task_runner="dask",
        dask_workers=2,
    )
    assert result["shards_reused"] == 0
    first, out = demo_build
    assert result["rows"] == first["rows"]
    assert json.loads((tmp_path / "out" / "stats.json").read_text()) == json.loads(
        (out / "stats.json").read_text()
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "nope=/tmp"], "unknown source 'nope'"),
        (["--source", "ava=/does/not/exist"], "does not exist"),
        (["--source", "ava"], "NAME=ROOT"),
        (["--sources-config", "/does/not/exist.yaml"], "does not exist"),
        (["--task-runner", "ray"], "invalid choice"),
    ],
)
def test_bad_arguments_fail_at_start_up(args, message, capsys):
    from flows.build_humanbeauty import main

    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--test-fraction", "2"], "test_fraction must be in (0, 1)"),
        (["--shard-size", "0"], "shard_size must be >= 1"),
        (["--min-raters", "0"], "min_raters must be >= 1"),  # with or without a rater source
        (["--near-duplicate-distance", "65"], "near_duplicate_distance must be None or 0-64"),
        (["--dask-workers", "0"], "dask_workers must be >= 1"),
        (["--device", "gpu"], "device must be auto, cpu, cuda or cuda:N"),
        (["--threshold", "1.5"], "threshold must be in [0, 1]"),
        (["--hub-repo-id", "no-slash"], "must look like 'namespace/name'"),
        (["--hub-repo-id", "org/name"], "no Hugging Face token"),
        (["--source", "ava={tmp}/src", "--output-dir", "{tmp}"], "contains the source folder"),
        (["--source", "ava={tmp}/src", "--output-dir", "{tmp}/src"], "is the source folder"),
        (["--output-dir", "{tmp}/src"], "is not an export of this project"),
    ],
)
def test_bad_options_are_refused_before_any_work(args, message, tmp_path, monkeypatch, capsys):
    """Exit 2 before Prefect starts or anything is written (these used to surface after
    detection, or after the whole build; ``--dask-workers 0`` hung)."""
    import huggingface_hub

    from flows.build_humanbeauty import main

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no HF_TOKEN, no login
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "AVA.txt").write_text("mine\n")
    with pytest.raises(SystemExit) as exit_:
        main([a.format(tmp=tmp_path) for a in args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # nothing written
    assert [p.name for p in (tmp_path / "src").iterdir()] == ["AVA.txt"]


def test_the_flow_refuses_an_output_folder_holding_the_sources(prefect_server, tmp_path):
    """The deployment path (no CLI in front): the flow itself refuses, before any work."""
    from flows.build_humanbeauty import build_humanbeauty
    from hae_data.demo import write_demo
    from hae_data.outdir import BuildRefusedError

    home = tmp_path / "home"
    demo = write_demo(home / "data")
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    with pytest.raises(BuildRefusedError, match="contains the source folder"):
        build_humanbeauty(sources_config=str(demo.config), output_dir=str(home))
    assert {p: p.read_bytes() for p in home.rglob("*") if p.is_file()} == before


def test_a_second_build_into_the_same_folder_is_refused(prefect_server, demo, tmp_path):
    from flows.build_humanbeauty import build_humanbeauty
    from hae_data.outdir import BuildBusyError

    out = tmp_path / "out"
    with (
        lock_held_elsewhere(out) as holder,
        pytest.raises(BuildBusyError, match=f"pid {holder.pid}"),
    ):
        build_humanbeauty(sources_config=str(demo.config), output_dir=str(out))
    assert sorted(p.name for p in out.iterdir()) == [".humanbeauty.lock"]


def test_a_build_that_keeps_nothing_leaves_the_previous_export(prefect_server, demo, tmp_path):
    """The images folder unmounted: every row is missing_file; the good export stays."""
    import shutil

    from flows.build_humanbeauty import build_humanbeauty
    from hae_data.export import EmptyExportError

    src = tmp_path / "baid"
    shutil.copytree(demo.sources["baid"], src)
    out = tmp_path / "out"
    first = build_humanbeauty(sources={"baid": str(src)}, output_dir=str(out))
    assert first["totals"]["kept"] > 0
    before = {p: p.read_bytes() for p in (out / "data").rglob("*") if p.is_file()}
    (src / "images").rename(tmp_path / "unmounted")
    with pytest.raises(EmptyExportError, match="missing_file"):
        build_humanbeauty(sources={"baid": str(src)}, output_dir=str(out))
    assert {p: p.read_bytes() for p in (out / "data").rglob("*") if p.is_file()} == before


def test_detection_subflow_gets_plan_paths_not_records(demo_build):
    """Flow-run parameters live on the Prefect server: records must never travel that way."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["face-filter"]))
        )
    assert any(run.parameters["plans"] for run in runs)
    for run in runs:  # (a build whose sources all failed to load has no plan at all)
        plans = run.parameters["plans"]
        assert all(isinstance(p, str) and p.endswith(".json") for p in plans)
        assert len(json.dumps(run.parameters, default=str)) < 20_000


@pytest.mark.parametrize(("transient", "calls"), [(False, 1), (True, 5)])
def test_prefect_retries_a_push_only_when_it_can_succeed(
    prefect_server, monkeypatch, transient, calls
):
    """A 401 or a bad id fails at once; a 503 is retried by Prefect (the one retry layer)."""
    from prefect import flow

    import hae_data.hub
    from flows.build_humanbeauty import push_task
    from hae_data.hub import HubPushError

    seen = []

    def push(folder, repo_id, *, private):
        seen.append(repo_id)
        raise HubPushError("nope", status_code=503 if transient else 401, transient=transient)

    monkeypatch.setattr(hae_data.hub, "push_to_hub", push)

    @flow
    def push_once():
        return push_task.with_options(retry_delay_seconds=0)("out", "org/name", True)

    with pytest.raises(HubPushError):
        push_once()
    assert seen == ["org/name"] * calls  # the library itself tries once per call


def test_runs_and_tasks_say_what_they_do_and_library_logs_reach_the_run(demo_build):
    """Run names from the output folder, task names per source and shard, the library's own
    log lines in the flow-run logs, the progress artifact at 100%."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        runs = [
            r
            for r in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["build-humanbeauty"]))
            )
            if r.parameters.get("output_dir") == str(demo_build[1])
        ]
        run = runs[0]  # the demo build (a later test builds into the same folder again)
        tasks = {t.name for t in client.read_task_runs()}

        def read_logs():
            logs, page = [], True
            while page:  # the API answers in pages (200 entries by default)
                page = client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
                    offset=len(logs),
                )
                logs += page
            return logs

        # Run logs reach the server in batches, the last ones shortly after the run ends.
        wait_for(
            lambda: any(e.message.startswith("timings: load ") for e in read_logs()),
            120,
            "the flow run's last log lines on the server",
        )
        logs = read_logs()
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["humanbeauty-faces"]))
        )
        completed = {
            r.id
            for r in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["face-filter"]))
            )
            if r.state is not None and r.state.is_completed()
        }
    assert run.name.startswith("build-humanbeauty-2")
    assert {"load-source[ava]", "load-source[humanbeauty_50k]", "detect-faces[ava 1/1]"} <= tasks
    assert {"finalise", "export"} <= tasks
    library = [entry.message for entry in logs if entry.name.startswith("hae_data")]
    assert any(m.startswith("ava: ") and "records" in m for m in library), library
    assert any(m.startswith("exported ") for m in library), library
    # Every finished face stage is at 100% (a killed build's, on the same server, is not).
    finished = [a for a in progress if a.flow_run_id in completed]
    assert finished and all(a.data == 100.0 for a in finished)
