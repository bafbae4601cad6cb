"""The edges of each native format: AVA tag 0, SCUT's 60 raters, 8 raters, missing columns..."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from annotation_schema import load_standard
from hae_data.records import Record
from hae_data.sources import (
    CATALOG,
    SOURCES,
    TRAINING_SOURCES,
    SourceFormatError,
    SourceRootError,
    write_fixture,
)
from hae_data.sources.annotations import AnnotationSource
from hae_data.sources.ava import AvaSource
from hae_data.sources.fixtures import make_jpeg
from hae_data.sources.label_jsonl import RELEASE_SOURCES, ReleaseSource
from hae_data.sources.mebeauty import MebeautySource
from hae_data.sources.scut_fbp5500 import SCUT_RATERS, ScutFbp5500Source

# -- AVA ----------------------------------------------------------------------------------


def test_ava_tag_zero_means_no_tag_and_mos_from_votes(tmp_path: Path) -> None:
    write_fixture("ava", tmp_path)
    records, _ = AvaSource(tmp_path).load()
    by_id = {r.file_name: r for r in records}
    none_tagged = by_id["images/953000.jpg"]
    assert none_tagged.metadata["tags"] == []
    assert none_tagged.metadata["tag_names"] == []
    one_tag = by_id["images/953001.jpg"]
    assert one_tag.metadata["tags"] == [15]
    assert one_tag.metadata["tag_names"] == ["Nature"]
    assert one_tag.metadata["challenge"] == "Free_Study"
    # MOS, vote count and std straight from the histogram.
    votes = np.asarray(none_tagged.metadata["votes"])
    values = np.repeat(np.arange(1, 11), votes)
    assert none_tagged.raw_score == pytest.approx(values.mean())
    assert none_tagged.score_std == pytest.approx(values.std(ddof=1))
    assert none_tagged.rater_count == votes.sum() == none_tagged.metadata["vote_count"]
    assert none_tagged.metadata["official_split"] == "train"
    assert one_tag.metadata["official_split"] == "test"


def test_ava_layout_with_ava_dataset_folder(tmp_path: Path) -> None:
    write_fixture("ava", tmp_path, broken=False, n=2)
    (tmp_path / "AVA_dataset").mkdir()
    (tmp_path / "AVA.txt").rename(tmp_path / "AVA_dataset" / "AVA.txt")
    (tmp_path / "images").rename(tmp_path / "image")
    records, rejections = AvaSource(tmp_path).load()
    assert len(records) == 2 and not rejections
    assert records[0].file_name.startswith("image/")


def test_ava_missing_image_folder_rejects_every_item(tmp_path: Path) -> None:
    write_fixture("ava", tmp_path, broken=False, n=3)
    records, rejections = AvaSource(tmp_path, images_dir="nowhere").load()
    assert records == []
    assert [r.reason for r in rejections] == ["missing_file"] * 3


# -- SCUT-FBP5500 ------------------------------------------------------------------------


def test_scut_sixty_raters_mos_is_their_mean(tmp_path: Path) -> None:
    write_fixture("scut_fbp5500", tmp_path, n=4, broken=False)
    ratings = pd.read_excel(tmp_path / "All_Ratings.xlsx", sheet_name="ALL")
    records, rejections = ScutFbp5500Source(tmp_path).load()
    assert not rejections and len(records) == 4
    for rec in records:
        mine = ratings[ratings["Filename"] == Path(rec.file_name).name]["Rating"]
        assert len(mine) == SCUT_RATERS == rec.rater_count == 60
        assert rec.raw_score == pytest.approx(mine.mean())
        assert rec.score_std == pytest.approx(mine.std(ddof=1))
        assert rec.raw_score == pytest.approx(rec.metadata["published_score"], abs=1e-5)


def test_scut_reads_only_the_all_sheet(tmp_path: Path) -> None:
    """The fixture puts a subset sheet first: reading it too would duplicate every AF rating."""
    write_fixture("scut_fbp5500", tmp_path, n=4, broken=False)
    assert openpyxl.load_workbook(tmp_path / "All_Ratings.xlsx").sheetnames[0] != "ALL"
    _, rejections = ScutFbp5500Source(tmp_path).load()
    assert rejections == []
    with pytest.raises(SourceFormatError, match="no sheet"):
        ScutFbp5500Source(tmp_path, sheet="Male").load()


def test_scut_min_raters_option(tmp_path: Path) -> None:
    write_fixture("scut_fbp5500", tmp_path, n=4, broken=False)
    records, rejections = ScutFbp5500Source(tmp_path, min_raters=61).load()
    assert records == []
    assert Counter(r.reason for r in rejections) == {"too_few_raters": 4}
    with pytest.raises(ValueError, match="min_raters"):
        ScutFbp5500Source(tmp_path, min_raters=0)


def test_scut_missing_rating_column(tmp_path: Path) -> None:
    (tmp_path / "Images").mkdir()
    wb = openpyxl.Workbook()
    wb.active.title = "ALL"
    wb.active.append(["Rater", "Filename", "original Rating"])
    wb.active.append([1, "AF1.jpg", 3])
    wb.save(tmp_path / "All_Ratings.xlsx")
    with pytest.raises(SourceFormatError, match="Rating"):
        ScutFbp5500Source(tmp_path).load()


# -- the 12-dimension annotations -------------------------------------------------------


def test_annotations_eight_raters_rejected_nine_kept(tmp_path: Path) -> None:
    write_fixture("humanbeauty_50k", tmp_path, n=3, broken=False, raters=9)
    keys = load_standard().keys
    rows = [["few.jpg", f"r{r}", *[0.5] * len(keys)] for r in range(8)]
    with open(tmp_path / "annotations.csv", "a", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (tmp_path / "images" / "few.jpg").write_bytes(make_jpeg(7))
    records, rejections = AnnotationSource(tmp_path).load()
    assert {r.rater_count for r in records} == {9}
    assert [(r.reason, r.file_name) for r in rejections] == [("too_few_raters", "images/few.jpg")]
    assert "8 valid rating" in rejections[0].detail
    # With min_raters=8 the same image is kept.
    records, rejections = AnnotationSource(tmp_path, min_raters=8).load()
    assert len(records) == 4 and not rejections


def test_annotations_dimension_order_and_overall(tmp_path: Path) -> None:
    manifest = write_fixture("humanbeauty_50k", tmp_path, n=3, broken=False)
    df = pd.read_csv(tmp_path / "annotations.csv")
    std = load_standard()
    records, _ = AnnotationSource(tmp_path).load()
    for rec in records:
        mine = df[df["image"] == Path(rec.file_name).name]
        assert rec.dimension_scores == pytest.approx([mine[k].mean() for k in std.keys])
        assert rec.dimension_std == pytest.approx([mine[k].std(ddof=1) for k in std.keys])
        assert rec.raw_score == rec.dimension_scores[std.root - 1]
        assert rec.raw_score == pytest.approx(manifest.scores[rec.file_name])


def test_annotations_parquet_and_folder_of_files(tmp_path: Path) -> None:
    manifest = write_fixture("humanbeauty_50k", tmp_path / "pq", fmt="parquet")
    records, rejections = AnnotationSource(tmp_path / "pq").load()
    assert len(records) == manifest.kept
    assert dict(Counter(r.reason for r in rejections)) == manifest.rejected
    assert "malformed_row" not in manifest.rejected  # a Parquet row cannot be short
    # The same rows split over two files in annotations/.
    df = pd.read_parquet(tmp_path / "pq" / "annotations.parquet")
    folder = tmp_path / "pq" / "annotations"
    folder.mkdir()
    df.iloc[: len(df) // 2].to_parquet(folder / "batch1.parquet", index=False)
    df.iloc[len(df) // 2 :].to_csv(folder / "batch2.csv", index=False)
    (tmp_path / "pq" / "annotations.parquet").unlink()
    records2, rejections2 = AnnotationSource(tmp_path / "pq").load()
    assert sorted(r.file_name for r in records2) == sorted(r.file_name for r in records)
    assert Counter(r.reason for r in rejections2) == Counter(r.reason for r in rejections)


def test_annotations_csv_with_missing_column(tmp_path: Path) -> None:
    write_fixture("humanbeauty_50k", tmp_path, n=3, broken=False)
    df = pd.read_csv(tmp_path / "annotations.csv").drop(columns=["body_shape"])
    df.to_csv(tmp_path / "annotations.csv", index=False)
    source = AnnotationSource(tmp_path)
    with pytest.raises(SourceFormatError, match="body_shape"):
        next(source.iter_items())


def test_annotations_extra_column_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_fixture("humanbeauty_50k", tmp_path, n=3, broken=False)
    df = pd.read_csv(tmp_path / "annotations.csv")
    df["seconds_spent"] = 12
    df.to_csv(tmp_path / "annotations.csv", index=False)
    records, rejections = AnnotationSource(tmp_path).load()
    assert len(records) == 3 and not rejections
    assert "seconds_spent" in caplog.text


# -- missing columns in the other label files -------------------------------------------


@pytest.mark.parametrize(
    ("name", "label_file", "column"),
    [
        ("tad66k", "labels/merge/train.csv", "score"),
        ("baid", "dataset/train_set.csv", "image"),
        ("agiqa_3k", "data.csv", "mos_quality"),
        ("apddv2", "APDDv2-10023.csv", "Total aesthetic score"),
    ],
)
def test_csv_with_missing_column(name: str, label_file: str, column: str, tmp_path: Path) -> None:
    write_fixture(name, tmp_path, broken=False)
    path = tmp_path / label_file
    encoding = "latin-1" if name == "apddv2" else "utf-8"
    df = pd.read_csv(path, encoding=encoding, keep_default_na=False, dtype=str)
    df.drop(columns=[column]).to_csv(path, index=False, encoding=encoding)
    with pytest.raises(SourceFormatError, match=column):
        SOURCES[name](tmp_path).load()


def test_mebeauty_workbook_without_image_column(tmp_path: Path) -> None:
    write_fixture("mebeauty", tmp_path, broken=False, n=2)
    wb = openpyxl.Workbook()
    wb.active.append(["picture", "rater1"])
    wb.active.append(["x.jpg", 5])
    wb.save(tmp_path / "scores" / "generic_scores_all_2022.xlsx")
    with pytest.raises(SourceFormatError, match="'image'"):
        MebeautySource(tmp_path).load()


def test_missing_label_file_is_a_clear_error(tmp_path: Path) -> None:
    for name, cls in SOURCES.items():
        with pytest.raises(SourceFormatError, match=r"no |lacks"):
            cls(tmp_path).load()
        assert name


# -- MEBeauty paths -----------------------------------------------------------------------


def test_mebeauty_paths_in_workbook_and_metadata(tmp_path: Path) -> None:
    """The earlier layout (``images/``, no path column) with paths in the ``image`` column."""
    manifest = write_fixture("mebeauty", tmp_path, broken=False, n=3, layout="images")
    path = tmp_path / "scores" / "generic_scores_all_2022.xlsx"
    wb = openpyxl.load_workbook(path)
    ws = wb.active
    # The authors' absolute paths work as well as bare names.
    for row, rel in zip(ws.iter_rows(min_row=2), manifest.scores, strict=True):
        row[0].value = f"/home/ubuntu/ME-beautydatabase/{rel}"
    wb.save(path)
    records, rejections = MebeautySource(tmp_path).load()
    assert not rejections
    assert {r.file_name for r in records} == set(manifest.scores)
    for rec in records:
        assert rec.metadata["gender"] in ("female", "male")
        assert rec.metadata["official_split"] in ("train", "val", "test")
        assert rec.raw_score == pytest.approx(rec.metadata["published_score"])
    # A path whose folder is misspelt (as in one of the authors' lists) still finds the file.
    first = ws.cell(row=2, column=1)
    gender, ethnicity = first.value.split("/images/")[1].split("/")[:2]
    first.value = first.value.replace(f"/{ethnicity}/", "/midestern/")
    wb.save(path)
    records2, rejections2 = MebeautySource(tmp_path).load()
    assert not rejections2
    assert {r.file_name for r in records2} == set(manifest.scores)
    assert gender in ("female", "male")


# -- label.jsonl ------------------------------------------------------------------------


def test_release_one_part_folder_and_source_map(tmp_path: Path) -> None:
    write_fixture("humanbeauty_release", tmp_path, broken=False, n=6)
    part = tmp_path / "HumanBeauty-58K"
    with open(part / "label.jsonl", "a") as fh:
        fh.write(json.dumps({"image_name": "x.jpg", "source": "SCUT", "score": 0.4}) + "\n")
    (part / "images" / "x.jpg").write_bytes(make_jpeg(3))
    records, rejections = ReleaseSource(part).load()
    assert [r.reason for r in rejections] == ["unknown_source"]
    assert all(r.part == "overall" for r in records)
    records, rejections = ReleaseSource(part, source_map={"SCUT": "scut_fbp5500"}).load()
    assert not rejections
    assert next(r for r in records if r.file_name == "images/x.jpg").source == "scut_fbp5500"
    with pytest.raises(ValueError, match="one of the release's sources"):
        ReleaseSource(part, source_map={"SCUT": "nonsense"})
    with pytest.raises(ValueError, match="one of the release's sources"):
        ReleaseSource(part, source_map={"SCUT": "lapis"})  # catalogued, but not in the release
    # The release's sources are catalogued sources (the names are typed twice, so check them).
    assert set(RELEASE_SOURCES) == {*TRAINING_SOURCES, "humanbeauty_50k"} <= set(CATALOG)


# -- general ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SOURCES))
def test_root_must_exist(name: str, tmp_path: Path) -> None:
    with pytest.raises(SourceRootError, match="does not exist"):
        SOURCES[name](tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SourceRootError, match="not a folder"):
        SOURCES[name](tmp_path / "file")


def test_image_provider_bytes_and_callable(tmp_path: Path) -> None:
    photos = [make_jpeg(1000 + i, size=(80, 60)) for i in range(3)]
    manifest = write_fixture("baid", tmp_path / "a", n=3, images=photos)
    for rel, data in zip(manifest.scores, photos, strict=True):
        assert (tmp_path / "a" / rel).read_bytes() == data
    write_fixture("lapis", tmp_path / "b", n=2, images=lambda i: photos[i])
    assert (tmp_path / "b" / "images" / "lapis_00001.jpg").read_bytes() == photos[1]
    with pytest.raises(ValueError, match="needs n=5"):
        write_fixture("ava", tmp_path / "c", n=5, images=photos)


def test_loaders_do_not_decode_images(tmp_path: Path) -> None:
    """A corrupt image is the decode stage's business: the loader passes it on."""
    manifest = write_fixture("tad66k", tmp_path, broken=False, n=2)
    first = next(iter(manifest.scores))
    (tmp_path / first).write_bytes(b"not a jpeg")
    records, rejections = SOURCES["tad66k"](tmp_path).load()
    assert len(records) == 2 and not rejections


def test_duplicate_keeps_first_occurrence(tmp_path: Path) -> None:
    manifest = write_fixture("baid", tmp_path, n=3)
    records, rejections = SOURCES["baid"](tmp_path).load()
    dup = next(r for r in rejections if r.reason == "duplicate_id")
    kept = next(r for r in records if r.file_name == dup.file_name)
    assert kept.raw_score == manifest.scores[dup.file_name]
    assert "already listed at dataset/train_set.csv" in dup.detail
    assert isinstance(kept, Record)
