"""``python -m hae_data.sources``: inspect each fixture, list, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hae_data.sources import SOURCES, write_fixture
from hae_data.sources.__main__ import main
from hae_data.sources.fixtures import FixtureManifest

REPO = Path(__file__).resolve().parents[2]


def test_inspect_subprocess_json(written: Callable[[str], FixtureManifest]) -> None:
    manifest = written("ava")
    proc = subprocess.run(
        [sys.executable, "-m", "hae_data.sources", "inspect", "ava", str(manifest.root), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kept"] == manifest.kept
    assert report["rejected_by_reason"] == manifest.rejected
    assert report["raw_score"]["min"] == pytest.approx(min(manifest.scores.values()))
    assert report["raw_score"]["max"] == pytest.approx(max(manifest.scores.values()))
    assert report["mos"]["count"] == manifest.kept  # AVA's MOS comes from the vote histogram
    assert len(report["examples"]) == 3


@pytest.mark.parametrize("name", list(SOURCES))
def test_inspect_each_fixture(
    name: str, written: Callable[[str], FixtureManifest], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = written(name)
    root = str(manifest.root)
    assert main(["inspect", name, root, "--json", "-q", "--examples", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == name
    assert report["kept"] == manifest.kept
    assert report["rejected"] == manifest.total_rejected
    assert report["rejected_by_reason"] == manifest.rejected
    assert report["items"] == manifest.kept + manifest.total_rejected
    assert report["outside_scale"] == 0
    assert report["raw_score"]["min"] == pytest.approx(min(manifest.scores.values()))
    assert len(report["examples"]) == 2
    if manifest.dimension_scores:
        assert len(report["dimensions"]) == 12
    # The text form names every rejection reason.
    assert main(["inspect", name, root, "-q"]) == 0
    text = capsys.readouterr().out
    for reason in manifest.rejected:
        assert reason in text


def test_inspect_loader_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_fixture("scut_fbp5500", tmp_path, n=4, broken=False)
    assert (
        main(["inspect", "scut_fbp5500", str(tmp_path), "-q", "--json", "-o", "min_raters=61"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["kept"] == 0
    assert report["rejected_by_reason"] == {"too_few_raters": 4}


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(SOURCES)
    assert main(["list"]) == 0
    assert "layout partly unconfirmed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "no_such_source", "."],
        ["inspect", "ava", "/definitely/not/here"],
        ["inspect", "ava", ".", "-o", "colour=blue"],
        ["inspect", "scut_fbp5500", ".", "-o", "min_raters=0"],
        ["inspect", "ava", ".", "--examples", "-1"],
        [],
    ],
)
def test_bad_command_line_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_unreadable_dataset_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "ava", str(tmp_path), "-q"]) == 1
    assert "AVA.txt" in capsys.readouterr().err
    write_fixture("tad66k", tmp_path / "t", broken=False)
    (tmp_path / "t" / "labels" / "merge" / "train.csv").write_text("image,mean\nx.jpg,5\n")
    assert main(["inspect", "tad66k", str(tmp_path / "t"), "-q"]) == 1
    assert "score" in capsys.readouterr().err


def test_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["inspect", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "ROOT" in out and "--examples" in out and "min_raters" in out
