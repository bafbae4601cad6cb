"""The zero-shot protocol (SPEC 3.4, issue 11 point 5): APDDv2 and LAPIS are evaluation-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from hae_data.hashing import content_id
from hae_data.pipeline import read_build_spec
from hae_data.records import Record
from hae_data.sources import ZERO_SHOT_SOURCES, write_fixture
from hae_data.sources.base import SourceFormatError
from hae_data.sources.lapis import LapisSource
from hae_data.split import assign_splits


def _rec(i: int, source: str) -> Record:
    return Record(
        source=source,
        file_name=f"{i}.jpg",
        image_path="x",
        image_id=content_id(f"{source}-{i}".encode()),
    )


@pytest.mark.parametrize("source", ZERO_SHOT_SOURCES)
def test_zero_shot_sets_are_never_split(source: str) -> None:
    # 907: APDDv2 after the paper's face filter. The code before issue 11 put 802 of these in train.
    recs = assign_splits(
        [_rec(i, source) for i in range(907)] + [_rec(i, "ava") for i in range(907)]
    )
    mine = [r for r in recs if r.source == source]
    assert {r.split for r in mine} == {"test"}
    assert sum(r.quick for r in mine) == 138
    ava = [r for r in recs if r.source == "ava"]
    assert 0.11 < sum(r.split == "test" for r in ava) / len(ava) < 0.155


def test_a_training_build_refuses_zero_shot_sources(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\['apddv2'\] are zero-shot evaluation sets"):
        read_build_spec(sources={"apddv2": str(tmp_path), "ava": str(tmp_path)})
    with pytest.raises(ValueError, match="zero-shot"):
        read_build_spec(sources={"lapis": str(tmp_path)}, annotations=str(tmp_path))
    # On their own they build (every row then goes to test).
    spec = read_build_spec(sources={"apddv2": str(tmp_path), "lapis": str(tmp_path)})
    assert set(spec.sources) == {"apddv2", "lapis"}


def test_lapis_reads_its_official_test_split(tmp_path: Path) -> None:
    manifest = write_fixture("lapis", tmp_path, n=4)
    records, rejections = LapisSource(tmp_path).load()
    assert {r.file_name for r in records} == set(manifest.scores)
    assert not any("train" in r.file_name for r in [*records, *rejections])
    for rec in records:
        assert rec.raw_score == pytest.approx(manifest.scores[rec.file_name])
        assert rec.rater_count == manifest.rater_counts[rec.file_name]
    everything, _ = LapisSource(tmp_path, split="all").load()
    assert {r.file_name for r in everything} == set(manifest.scores) | {
        "images/lapis_train_00000.jpg",
        "images/lapis_train_00001.jpg",
    }
    train, _ = LapisSource(tmp_path, split="train").load()
    assert len(train) == 2
    # The list may name images without their extension.
    listed = tmp_path / "imageset" / "TestImageSet.txt"
    listed.write_text("lapis_00000\nlapis_00002\n")
    two, _ = LapisSource(tmp_path).load()
    assert {r.file_name for r in two} == {"images/lapis_00000.jpg", "images/lapis_00002.jpg"}
    listed.unlink()
    with pytest.raises(SourceFormatError, match=r"official test set.*split='all'"):
        LapisSource(tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        LapisSource(tmp_path, split="validation")
