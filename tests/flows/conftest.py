"""Flow tests: one temporary Prefect server for the session, and one demo build to inspect."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect server (sqlite in a temp folder) for every in-process flow run."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_server) -> str:
    """The session server's API URL, for child processes: a CLI build pointed at it skips the
    temporary server's start-up (about 15 s per process on two busy cores)."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The embedded demo's sources, written once."""
    from hae_data.demo import write_demo

    return write_demo(tmp_path_factory.mktemp("demo") / "sources")


@pytest.fixture(scope="session")
def demo_build(prefect_server, demo, tmp_path_factory):
    """One in-process build of the demo: (result, output folder)."""
    from flows.build_humanbeauty import build_humanbeauty

    out = tmp_path_factory.mktemp("build") / "humanbeauty"
    result = build_humanbeauty(sources_config=str(demo.config), output_dir=str(out))
    return result, out


#: Reasons given to one rater's row (stage "ratings"), counted apart from rejected images.
RATING_ROW_REASONS = {
    "duplicate_rating",
    "malformed_rating_row",
    "non_numeric_rating",
    "rating_out_of_range",
}


def expected_counts(demo) -> dict[str, tuple[int, Counter, int]]:
    """Per source: images the build must keep, rejected images by reason (loader + faces), and
    rejected rating rows."""
    out = {}
    for name, fixture in demo.fixtures.items():
        decisions = Counter(demo.expected[name].values())
        kept = decisions.pop("keep", 0)
        reasons = Counter(fixture.rejected) + decisions
        rows = sum(n for r, n in reasons.items() if r in RATING_ROW_REASONS)
        images = Counter({r: n for r, n in reasons.items() if r not in RATING_ROW_REASONS})
        out[name] = (kept, images, rows)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(prefect_home: Path, **extra: str) -> dict[str, str]:
    """Environment for a child process: its own PREFECT_HOME, no inherited API URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"{what}: process exited with {proc.returncode}\n{out[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


PYTHON = sys.executable


_HOLD_LOCK = """
import sys
from hae_data.outdir import BuildLock
BuildLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held_elsewhere(folder: Path):
    """Another process holding the build lock of ``folder``; yields it. Killed on the way out
    (a crash: the kernel drops the lock with the process)."""
    holder = subprocess.Popen(
        [PYTHON, "-c", _HOLD_LOCK, str(folder)],
        cwd=ROOT,
        env=subprocess_env(folder.parent / "prefect-lock-holder"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
