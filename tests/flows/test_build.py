import json
import os
import signal
import subprocess

import pytest
from datasets import load_dataset

from tests.flows.conftest import PYTHON, ROOT, expected_counts, subprocess_env, wait_for


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


def test_second_identical_build_does_no_detection_work(demo, demo_build):
    from flows.build_humanbeauty import build_humanbeauty

    first, out = demo_build
    readme = (out / "README.md").read_text()
    again = build_humanbeauty(sources_config=str(demo.config), output_dir=str(out))
    assert again["shards_reused"] == again["shards_total"] == first["shards_total"]
    assert again["rows"] == first["rows"]
    assert (out / "README.md").read_text() == readme


def test_killed_build_resumes_from_finished_shards(demo, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [
        PYTHON,
        "-m",
        "flows.build_humanbeauty",
        "--sources-config",
        str(demo.config),
        "--output-dir",
        str(out),
        "--work-dir",
        str(work),
        "--shard-size",
        "2",
        "--json",
    ]
    env = subprocess_env(tmp_path / "prefect-home")
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
        wait_for(lambda: done() >= 3, 180, "three finished shards", proc)
    finally:
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
    kept = sum(k for k, _, _ in expected_counts(demo).values())
    assert summary["totals"]["kept"] == kept


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
def test_bad_arguments_fail_at_start_up(args, message, tmp_path):
    proc = subprocess.run(
        [PYTHON, "-m", "flows.build_humanbeauty", *args],
        cwd=ROOT,
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert message in proc.stderr


def test_detection_subflow_gets_plan_paths_not_records(demo_build):
    """Flow-run parameters live on the Prefect server: records must never travel that way."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["detect-faces"]))
        )
    assert runs
    for run in runs:
        plans = run.parameters["plans"]
        assert plans and all(isinstance(p, str) and p.endswith(".json") for p in plans)
        assert len(json.dumps(run.parameters, default=str)) < 20_000
