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


def _layout() -> dict[str, str]:
    """The README's Layout block: top-level folder -> the text that describes it."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    name = ""
    for line in block.splitlines():
        if line and not line[0].isspace():
            name, _, line = line.partition(" ")
            name = name.rstrip("/")
        if name:
            entries[name] = entries.get(name, "") + " " + line
    return entries


def test_the_layout_section_names_every_module_and_nothing_else():
    import re

    entries = _layout()
    for package in ("hae_data", "hae_model", "flows", "annotation_schema", "bench"):
        words = set(re.findall(r"[\w/]+", entries[package].replace(".py", "")))
        folder = ROOT / package
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if path.stem in {"__init__", "__main__"} or "__pycache__" in rel.parts:
                continue
            top = rel.parts[0] if len(rel.parts) > 1 else path.stem
            named = top in words or f"{top}/" in entries[package]
            assert named, f"README layout does not mention {package}/{rel}"
        files = {path.name for path in folder.rglob("*.py")}
        for listed in re.findall(r"(\w+\.py)\b", entries[package]):
            assert listed in files, f"README layout names {listed} under {package}/"
        for listed in re.findall(r"(\w+)/(?=[\s,(]|$)", entries[package]):
            assert (folder / listed).is_dir(), f"README layout names {package}/{listed}/"
