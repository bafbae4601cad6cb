"""The real deployment paths against a real Prefect server: `python -m flows.serve`, and
`prefect deploy` (prefect.yaml) onto a process work pool with `prefect worker start`; both
started with `prefect deployment run`."""

import json
import os
import signal
import subprocess
import urllib.request

import pytest
from datasets import load_dataset

from tests.flows.conftest import PYTHON, ROOT, free_port, subprocess_env, wait_for


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _deployment_exists(url: str, name: str = "local") -> bool:
    req = urllib.request.Request(
        f"{url}/deployments/name/build-humanbeauty/{name}", headers={"Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return json.load(resp)["name"] == name
    except OSError:
        return False


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


PREFECT = [PYTHON, "-m", "prefect"]


def _server(tmp_path, **env_extra: str):
    """A real Prefect server on a free loopback port: (api url, env for clients, Popen kwargs
    for more processes, the server process)."""
    api = f"http://127.0.0.1:{free_port()}/api"
    env = subprocess_env(tmp_path / "prefect-home", PREFECT_API_URL=api, **env_extra)
    popen = dict(
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    port = api.rsplit(":", 1)[1].split("/")[0]
    server = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port], **popen
    )
    return api, env, popen, server


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """One real server for both deployment paths (each start costs 15-30 s here): (api url,
    env for clients, Popen kwargs for more processes). Stopped after the module's tests."""
    api, env, popen, server = _server(
        tmp_path_factory.mktemp("prefect-server"),
        PWD=str(ROOT),
        # The serving process and the worker look for scheduled runs every 10 s by default:
        # each run would wait up to that long before it starts.
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_WORKER_QUERY_SECONDS="1",
    )
    try:
        wait_for(lambda: _healthy(api), 120, "the Prefect server", server)
        yield api, env, popen
    finally:
        _stop(server)
    assert server.poll() is not None


def test_served_deployment_builds_the_demo(demo, real_server, tmp_path):
    api, env, popen = real_server
    prefect = PREFECT
    serve = None
    try:
        serve = subprocess.Popen([PYTHON, "-m", "flows.serve"], **popen)
        wait_for(lambda: _deployment_exists(api), 120, "the served deployment", serve)
        out = tmp_path / "out"
        run = subprocess.run(
            [
                *prefect,
                "deployment",
                "run",
                "build-humanbeauty/local",
                "--watch",
                "-p",
                f"output_dir={out}",
                "-p",
                f"sources_config={demo.config}",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=420,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "Completed" in run.stdout + run.stderr
    finally:
        # Stop the serving process before the server (the fixture's), as a worker should be.
        if serve is not None:
            _stop(serve)
    assert serve is None or serve.poll() is not None
    train = load_dataset(str(out), "overall", split="train", cache_dir=str(tmp_path / "cache"))
    test = load_dataset(str(out), "fine_grained", split="test", cache_dir=str(tmp_path / "cache"))
    assert len(train) > 0 and len(test) > 0
    assert train[0]["face_count"] == 1


def test_prefect_yaml_deploys_onto_a_process_work_pool(demo, real_server, tmp_path):
    """The README's `prefect deploy` path: work pool, deploy from prefect.yaml, worker, run."""
    import shutil

    src = tmp_path / "baid"
    shutil.copytree(demo.sources["baid"], src)  # one source keeps the run short
    out = tmp_path / "out"

    def prefect_cli(*args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [*prefect, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
        return done.stdout + done.stderr

    api, env, popen = real_server
    prefect = PREFECT
    worker = None
    try:
        prefect_cli("work-pool", "create", "humanbeauty", "--type", "process")
        prefect_cli("--no-prompt", "deploy", "--all")
        assert _deployment_exists(api, "pool")
        worker = subprocess.Popen([*prefect, "worker", "start", "--pool", "humanbeauty"], **popen)
        params = json.dumps({"sources": {"baid": str(src)}, "output_dir": str(out)})
        output = prefect_cli(
            "deployment",
            "run",
            "build-humanbeauty/pool",
            "--watch",
            "--params",
            params,
            timeout=420,
        )
        assert "Completed" in output
    finally:
        if worker is not None:
            _stop(worker)  # SIGINT, before the server
    train = load_dataset(str(out), "overall", split="train", cache_dir=str(tmp_path / "cache"))
    assert len(train) > 0 and set(train["source"]) == {"baid"}
