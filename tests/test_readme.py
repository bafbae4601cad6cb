"""The README's two commands are the ones CI runs and the ones a newcomer copies."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line for line in text.splitlines() if line.startswith("python3 -m venv .venv")]


def test_ci_runs_the_readme_test_command():
    setup, tests = _commands()[:2]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
    assert tests.endswith("python -m pytest -q")
    assert setup.endswith(".venv/bin/python -m flows.build_humanbeauty")
    # Both set up the same way.
    assert setup.split(" && ")[:3] == tests.split(" && ")[:3]
