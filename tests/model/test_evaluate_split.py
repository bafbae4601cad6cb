"""``evaluate --split all`` reports on every row of an export (SPEC 3.4, issue 11 point 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hae_data.export import export_dataset
from hae_data.records import PARTS
from hae_data.split import assign_splits
from hae_model.data import list_row_groups
from hae_model.evaluate import EVAL_SPLITS, row_groups
from tests.model.fixtures import make_records


def _rows(groups) -> int:
    return sum(g.num_rows for g in groups)


def test_split_all_reads_every_row_of_a_training_export(tmp_path: Path) -> None:
    recs = make_records(tmp_path / "images", n_overall=16, n_fine=8)
    export_dataset(recs, [], tmp_path / "export")
    assert "all" in EVAL_SPLITS
    assert _rows(row_groups(tmp_path / "export", "all", PARTS)) == 24
    test = _rows(row_groups(tmp_path / "export", "test", PARTS))
    assert 0 < test < 24


def test_split_all_and_test_read_a_whole_zero_shot_export(tmp_path: Path) -> None:
    recs = make_records(tmp_path / "images", n_overall=12, n_fine=0)
    for rec in recs:
        rec.source = "apddv2"
    export_dataset(assign_splits(recs), [], tmp_path / "export")
    with pytest.raises(FileNotFoundError, match="no rows for split 'train'"):
        list_row_groups(tmp_path / "export", "train", PARTS)
    assert _rows(row_groups(tmp_path / "export", "all", PARTS)) == 12
    assert _rows(row_groups(tmp_path / "export", "test", PARTS)) == 12
    with pytest.raises(FileNotFoundError, match="no rows in any split"):
        row_groups(tmp_path / "nothing", "all", PARTS)
