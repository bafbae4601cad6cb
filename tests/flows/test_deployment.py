"""The real deployment path: a Prefect server, `python -m flows.serve`, `prefect deployment run`."""

import json
import os
import signal
import subprocess
import urllib.request

from datasets import load_dataset

from tests.flows.conftest import PYTHON, ROOT, free_port, subprocess_env, wait_for


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _deployment_exists(url: str) -> bool:
    req = urllib.request.Request(
        f"{url}/deployments/name/build-humanbeauty/local", headers={"Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return json.load(resp)["name"] == "local"
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


def test_served_deployment_builds_the_demo(demo, tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = subprocess_env(tmp_path / "prefect-home", PREFECT_API_URL=api)
    prefect = [PYTHON, "-m", "prefect"]
    popen = dict(
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = subprocess.Popen(
        [*prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], **popen
    )
    serve = None
    try:
        wait_for(lambda: _healthy(api), 120, "the Prefect server", server)
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
        # Stop the serving process before the server, as a worker should be.
        if serve is not None:
            _stop(serve)
        _stop(server)
    assert server.poll() is not None and (serve is None or serve.poll() is not None)
    train = load_dataset(str(out), "overall", split="train", cache_dir=str(tmp_path / "cache"))
    test = load_dataset(str(out), "fine_grained", split="test", cache_dir=str(tmp_path / "cache"))
    assert len(train) > 0 and len(test) > 0
    assert train[0]["face_count"] == 1
