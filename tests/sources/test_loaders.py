"""Every loader reads its fixture with the expected counts, scores and rejections."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from hae_data.records import Record, Rejection
from hae_data.sources import (
    CATALOG,
    SOURCES,
    TRAINING_SOURCES,
    WRITERS,
    ZERO_SHOT_SOURCES,
    Source,
    write_fixture,
)
from hae_data.sources.fixtures import FixtureManifest

NAMES = list(SOURCES)


def load(name: str, root: Path, manifest: FixtureManifest) -> tuple[list[Record], list[Rejection]]:
    return SOURCES[name](root, **manifest.options).load()


def test_registries_agree_and_every_module_documents_its_source() -> None:
    assert list(CATALOG) == list(SOURCES) == list(WRITERS)
    assert TRAINING_SOURCES == ("ava", "tad66k", "scut_fbp5500", "mebeauty", "baid", "agiqa_3k")
    assert ZERO_SHOT_SOURCES == ("apddv2", "lapis")
    for name, cls in SOURCES.items():
        assert issubclass(cls, Source)
        assert cls.info.name == name
        doc = sys.modules[cls.__module__].__doc__ or ""
        for word in ("Licence", "Citation", "Homepage"):
            assert word in doc, f"{name}: module docstring lacks {word!r}"
    assert not CATALOG["apddv2"].layout_confirmed
    assert not CATALOG["lapis"].layout_confirmed


@pytest.mark.parametrize("name", NAMES)
def test_fixture_counts_scores_and_reasons(
    name: str, written: Callable[[str], FixtureManifest]
) -> None:
    manifest = written(name)
    records, rejections = load(name, manifest.root, manifest)

    assert len(records) == manifest.kept
    assert dict(Counter(r.reason for r in rejections)) == manifest.rejected
    assert {r.file_name for r in records} == set(manifest.scores)
    for rec in records:
        assert rec.raw_score == pytest.approx(manifest.scores[rec.file_name], rel=1e-9)
        assert Path(rec.image_path).is_file()
        assert Path(rec.image_path) == (manifest.root / rec.file_name).resolve()
        assert rec.image_id is None  # the decode stage computes it
        if rec.file_name in manifest.rater_counts:
            assert rec.rater_count == manifest.rater_counts[rec.file_name]
        if rec.file_name in manifest.score_stds:
            assert rec.score_std == pytest.approx(manifest.score_stds[rec.file_name])
        for key, value in manifest.metadata.get(rec.file_name, {}).items():
            if key == "source":
                assert rec.source == value
            else:
                assert rec.metadata[key] == value, (rec.file_name, key)
        if rec.file_name in manifest.dimension_scores:
            assert rec.part == "fine_grained"
            assert rec.dimension_scores == pytest.approx(manifest.dimension_scores[rec.file_name])
    for rej in rejections:
        assert rej.detail, rej
        assert rej.stage in ("source", "ratings", "mos")


@pytest.mark.parametrize("name", NAMES)
def test_fixture_without_broken_rows_is_clean(name: str, tmp_path: Path) -> None:
    manifest = write_fixture(name, tmp_path, n=4, broken=False)
    records, rejections = load(name, tmp_path, manifest)
    assert rejections == []
    assert manifest.rejected == {}
    assert len(records) == 4


@pytest.mark.parametrize("name", ["ava", "scut_fbp5500", "humanbeauty_50k", "agiqa_3k"])
def test_streams_items_lazily(name: str, tmp_path: Path) -> None:
    """The constructor reads nothing; iteration yields items one at a time."""
    write_fixture(name, tmp_path)
    source = SOURCES[name](tmp_path)
    items = source.iter_items()
    first = next(items)
    assert isinstance(first, Record | Rejection)


def test_records_carry_source_key_and_part(tmp_path: Path) -> None:
    for name in ("baid", "tad66k", "mebeauty"):
        manifest = write_fixture(name, tmp_path / name)
        records, _ = load(name, tmp_path / name, manifest)
        assert {r.source for r in records} == {name}
        assert {r.part for r in records} == {"overall"}


@pytest.mark.parametrize("name", NAMES)
def test_scores_vary(name: str, written: Callable[[str], FixtureManifest]) -> None:
    """Per-source min-max normalisation needs distinct scores; the fixtures provide them."""
    manifest = written(name)
    assert len({round(v, 9) for v in manifest.scores.values()}) > 1
    assert all(math.isfinite(v) for v in manifest.scores.values())
