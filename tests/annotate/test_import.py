"""Label Studio JSON / JSON-MIN exports -> annotation rows -> the 12-dimension MOS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annotation_schema import load_standard
from hae_data.annotate.__main__ import main
from hae_data.annotate.ls_import import ExportFormatError, import_export
from hae_data.annotate.synthetic import write_export
from hae_data.records import Record, Rejection
from hae_data.sources.annotations import AnnotationSource
from hae_data.sources.fixtures import make_jpeg

KEYS = load_standard().keys
DATA = Path(__file__).parent / "data"
IMAGES = ["img0.jpg", "sub/img1.jpg", "img2.jpg", "img3.jpg"]


@pytest.fixture
def root(tmp_path):
    base = tmp_path / "HB-new"
    for i, rel in enumerate(IMAGES):
        path = base / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_jpeg(i))
    return base


def _points(image_index: int, rater: int) -> dict[str, int]:
    """A known 0..10 rating per (image, rater, dimension)."""
    return {k: (3 * image_index + rater + j) % 11 for j, k in enumerate(KEYS)}


def _good(images=(0, 1, 2), raters=range(1, 10)):
    return [{"image": IMAGES[i], "rater": r, **_points(i, r)} for i in images for r in raters]


def _bad():
    cancelled = {"image": IMAGES[0], "rater": 10, "cancelled": True}
    missing = {"image": IMAGES[1], "rater": 11, **_points(1, 11)}
    del missing["environment"]
    off_scale = {"image": IMAGES[2], "rater": 12, **_points(2, 12), "looks": "11"}
    twice = [{"image": IMAGES[0], "rater": 13, **_points(0, 13)} for _ in range(2)]
    return [cancelled, missing, off_scale, *twice]


def _export(path, annotations, fmt="JSON", images=IMAGES):
    return write_export(path, annotations, fmt=fmt, images=images)


def _expected_mos(image_index: int, raters=range(1, 10)) -> np.ndarray:
    return np.mean([[v / 10 for v in _points(image_index, r).values()] for r in raters], axis=0)


def test_json_export_becomes_rows_and_every_bad_annotation_a_reason(root, tmp_path):
    export = _export(tmp_path / "export.json", _good() + _bad())
    data = json.loads(export.read_text())
    data.append(
        {"id": 99, "data": {"image": "/x.jpg"}, "annotations": [{"id": 7, "completed_by": 14}]}
    )
    export.write_text(json.dumps(data))
    result = import_export(export, root)
    assert (result.format, result.tasks, result.unannotated_tasks) == ("JSON", 5, 1)
    assert result.annotations == 27 + 5 + 1
    assert len(result.rows) == 27
    assert result.rejected_by_reason == {
        "duplicate_rating": 2,
        "cancelled_annotation": 1,
        "missing_dimension": 1,
        "rating_out_of_range": 1,
        "no_image_reference": 1,
    }
    details = {r.reason: r.detail for r in result.rejections}
    assert "['environment']" in details["missing_dimension"]
    assert "looks: '11' is not one of the integers 0..10" in details["rating_out_of_range"]
    assert "rater 13 rated this image twice" in details["duplicate_rating"]
    assert all(isinstance(r, Rejection) and r.stage == "label_studio" for r in result.rejections)
    assert result.written == root / "annotations" / "label-studio-0001.csv"
    header = result.written.read_text().splitlines()[0]
    assert header == ",".join(["image", "rater", *KEYS])

    # The loader reads what the import wrote: MOS of exactly the nine good raters.
    source = AnnotationSource(root)
    items = list(source.iter_items())
    records = {r.file_name: r for r in items if isinstance(r, Record)}
    assert sorted(records) == ["images/img0.jpg", "images/img2.jpg", "images/sub/img1.jpg"]
    for i in (0, 1, 2):
        rec = records[f"images/{IMAGES[i]}"]
        assert rec.rater_count == 9
        np.testing.assert_allclose(rec.dimension_scores, _expected_mos(i), atol=1e-12)
    assert source.reliability is not None and len(source.reliability.raters) == 9


def test_json_min_gives_the_same_rows(root, tmp_path):
    full = import_export(_export(tmp_path / "a.json", _good() + _bad()), root, dry_run=True)
    minimal = import_export(
        _export(tmp_path / "b.json", _good() + _bad(), fmt="JSON_MIN"), root, dry_run=True
    )
    assert minimal.format == "JSON_MIN" and minimal.written is None and full.written is None
    assert minimal.rows == full.rows
    assert (minimal.tasks, minimal.unannotated_tasks) == (4, 1)
    # Label Studio leaves cancelled annotations out of JSON-MIN: one reason fewer.
    assert minimal.rejected_by_reason == {
        k: v for k, v in full.rejected_by_reason.items() if k != "cancelled_annotation"
    }
    assert not (root / "annotations").exists()


def test_reimport_is_a_no_op_and_a_later_export_adds_only_new_rows(root, tmp_path):
    first = _export(tmp_path / "first.json", _good(images=(0, 1)))
    assert len(import_export(first, root).rows) == 18
    again = import_export(first, root)
    assert (len(again.rows), again.already_imported, again.written) == (0, 18, None)
    assert sorted(p.name for p in (root / "annotations").iterdir()) == ["label-studio-0001.csv"]

    later = _export(tmp_path / "later.json", _good(images=(0, 1, 2)), fmt="JSON_MIN")
    result = import_export(later, root)
    assert (len(result.rows), result.already_imported) == (9, 18)
    assert {r["image"] for r in result.rows} == {IMAGES[2]}
    assert result.written.name == "label-studio-0002.csv"
    records = [r for r in AnnotationSource(root).iter_items() if isinstance(r, Record)]
    assert len(records) == 3


def test_a_changed_rating_is_refused_and_the_imported_row_stands(root, tmp_path):
    import_export(_export(tmp_path / "first.json", _good(images=(0,))), root)
    changed = _good(images=(0,))
    changed[0]["outfit"] = (changed[0]["outfit"] + 1) % 11
    result = import_export(_export(tmp_path / "second.json", changed), root)
    assert result.rows == [] and result.already_imported == 8
    [rejection] = result.rejections
    assert rejection.reason == "changed_since_import" and "['outfit']" in rejection.detail


def test_rater_prefix_and_rater_objects(root, tmp_path):
    annotations = _good(images=(0,), raters=[1, 2])
    export = _export(tmp_path / "e.json", annotations)
    data = json.loads(export.read_text())
    data[0]["annotations"][0]["completed_by"] = {"id": 1, "email": "a@lab.org"}
    data[0]["annotations"][1]["completed_by"] = None
    export.write_text(json.dumps(data))
    result = import_export(export, root, rater_prefix="ls:")
    assert [r["rater"] for r in result.rows] == ["ls:1"]
    assert result.rejected_by_reason == {"no_rater": 1}


def test_inputs_that_are_not_an_export_or_a_root_the_loader_would_ignore(root, tmp_path):
    export = tmp_path / "e.json"
    export.write_text('{"not": "a list"}')
    with pytest.raises(ExportFormatError, match="list of objects"):
        import_export(export, root)
    export.write_text("[{]")
    with pytest.raises(ExportFormatError, match="not JSON"):
        import_export(export, root)
    export.write_text('[1, {"id": 3}]')
    result = import_export(export, root)
    assert result.rejected_by_reason == {"malformed_task": 1} and result.rows == []
    (root / "annotations.csv").write_text("image,rater\n")
    with pytest.raises(FileExistsError, match="move it into"):
        import_export(_export(tmp_path / "ok.json", _good()), root)


def test_import_command(root, tmp_path, capsys):
    export = _export(tmp_path / "e.json", _good() + _bad())
    assert main(["-q", "import", str(export), str(root)]) == 0
    out = capsys.readouterr().out
    assert "new rows: 27" in out and "label-studio-0001.csv" in out
    assert "duplicate_rating: 2" in out and "[missing_dimension] sub/img1.jpg" in out
    assert main(["-q", "import", str(export), str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["new_rows"] == 0 and report["already_imported"] == 27
    (export).write_text("{}")
    assert main(["-q", "import", str(export), str(root)]) == 1
    assert "list of objects" in capsys.readouterr().err


def test_reliability_command_and_inspect_show_agreement(root, tmp_path, capsys):
    from hae_data.sources.__main__ import main as sources_main

    import_export(_export(tmp_path / "e.json", _good()), root)
    assert main(["-q", "reliability", str(root), "--bootstrap", "50", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [d["key"] for d in report["dimensions"]] == list(KEYS)
    assert len(report["raters"]) == 9 and report["bootstrap"] == 50
    assert sources_main(["inspect", "humanbeauty_50k", str(root), "-q"]) == 0
    text = capsys.readouterr().out
    assert "rater reliability (Krippendorff's alpha, interval" in text
    assert sources_main(["inspect", "humanbeauty_50k", str(root), "-q", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["reliability"]["raters"]) == 9


@pytest.mark.parametrize("fmt", ["JSON", "JSON_MIN"])
def test_exports_captured_from_label_studio_1_23(fmt, tmp_path):
    """Files exported by a real Label Studio 1.23.2 (``GET /api/projects/1/export``): one
    task rated 7 on every dimension by user 2, one task that user skipped."""
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    result = import_export(DATA / f"label-studio-1.23.2-{fmt}.json", root)
    assert result.format == fmt
    assert result.rows == [{"image": "p0.jpg", "rater": "2", **dict.fromkeys(KEYS, 0.7)}]
    skipped = {"cancelled_annotation": 1} if fmt == "JSON" else {}  # JSON-MIN leaves skips out
    assert result.rejected_by_reason == skipped


@pytest.mark.parametrize("fmt", ["JSON", "JSON_MIN"])
def test_fixture_writer_has_the_shape_of_a_real_export(fmt, tmp_path):
    real = json.loads((DATA / f"label-studio-1.23.2-{fmt}.json").read_text())
    made = json.loads(
        write_export(
            tmp_path / "e.json",
            [
                {"image": "p0.jpg", "rater": 2, **dict.fromkeys(KEYS, 7)},
                {"image": "p1.jpg", "rater": 2, "cancelled": True},
            ],
            fmt=fmt,
        ).read_text()
    )
    assert len(made) == len(real)
    assert list(made[0]) == list(real[0])
    if fmt == "JSON":
        assert list(made[0]["annotations"][0]) == list(real[0]["annotations"][0])
        assert made[0]["annotations"][0]["result"] == real[0]["annotations"][0]["result"]
        assert made[1]["annotations"][0]["was_cancelled"] is True


def test_an_unreadable_annotation_file_does_not_stop_the_import(root, tmp_path, caplog):
    (root / "annotations").mkdir()
    (root / "annotations" / "old.parquet").write_bytes(b"not parquet at all")
    result = import_export(_export(tmp_path / "e.json", _good(images=(0,))), root)
    assert len(result.rows) == 9 and result.written.name == "label-studio-0001.csv"
    assert "old.parquet cannot be read" in caplog.text
