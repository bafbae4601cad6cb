"""Every real layout of each source loads, through the loader API and ``inspect``; hostile rows
(paths out of the root, symlink loops, undecodable names, huge fields) are rejected, never fatal."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import pytest

from annotation_schema import load_standard
from hae_data.records import Record, Rejection
from hae_data.sources import (
    LAYOUTS,
    SOURCES,
    TRAINING_SOURCES,
    SourceFormatError,
    write_fixture,
)
from hae_data.sources.__main__ import main
from hae_data.sources.base import SEARCH_DEPTH, DirectoryIndex
from hae_data.sources.fixtures import HUGE_FIELD, FixtureManifest, write_hostile_files

#: Where each layout keeps its images, relative to the root: what discovery must choose.
IMAGE_FOLDER = {
    ("ava", "images"): "images",
    ("ava", "archive"): "AVA_dataset/images/images",
    ("ava", "images/images"): "images/images",
    ("ava", "image"): "image",
    ("ava", "flat"): ".",
    ("tad66k", "imgs"): "imgs",
    ("tad66k", "drive"): "TAD66K",
    ("tad66k", "repo"): ".",
    ("tad66k", "images"): "images",
    ("scut_fbp5500", "all_sheet"): "Images",
    ("scut_fbp5500", "one_sheet"): "Images",
    ("scut_fbp5500", "largest_sheet"): "Images",
    ("mebeauty", "repo"): "original_images",
    ("mebeauty", "images"): "images",
    ("baid", "images"): "images",
    ("baid", "flat"): ".",
    ("agiqa_3k", "images"): "images",
    ("agiqa_3k", "Images"): "Images",
    ("agiqa_3k", "AGIQA-3K"): "AGIQA-3K",
    ("agiqa_3k", "flat"): ".",
}
#: The image folder of the sources found in one layout only (no ``layout=``).
SINGLE_LAYOUT_FOLDER = {"humanbeauty_50k": "images", "apddv2": "APDDv2images", "lapis": "images"}
#: Sources without an ``images_dir`` option, and why.
NO_IMAGES_DIR = {
    "humanbeauty_release": "one images/ folder per part (HumanBeauty-58K, HumanBeauty-50K): a "
    "single images_dir cannot name both",
}
CASES = [(name, layout) for name, layouts in LAYOUTS.items() for layout in layouts]


def default_image_folder(name: str) -> str:
    """Where the fixture's default layout keeps the images, relative to the root."""
    return IMAGE_FOLDER[name, LAYOUTS[name][0]] if name in LAYOUTS else SINGLE_LAYOUT_FOLDER[name]


def check_load(
    name: str, root: Path, manifest: FixtureManifest, **options: object
) -> tuple[list[Record], list[Rejection]]:
    """Load ``root`` and check kept ids, raw scores, metadata and rejection reasons."""
    records, rejections = SOURCES[name](root, **options).load()
    assert sorted(r.file_name for r in records) == sorted(manifest.scores)
    for rec in records:
        assert rec.raw_score == pytest.approx(manifest.scores[rec.file_name], rel=1e-9)
        assert Path(rec.image_path).is_file()
        if rec.file_name in manifest.rater_counts:
            assert rec.rater_count == manifest.rater_counts[rec.file_name]
        for key, value in manifest.metadata.get(rec.file_name, {}).items():
            assert rec.metadata[key] == value, (rec.file_name, key)
    assert dict(Counter(r.reason for r in rejections)) == manifest.rejected
    return records, rejections


def run_inspect(
    capsys: pytest.CaptureFixture[str], name: str, root: Path, *options: str
) -> dict[str, object]:
    argv = ["inspect", name, str(root), "--json", "-q", "--examples", "1"]
    for opt in options:
        argv += ["-o", opt]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_every_source_has_its_layouts_listed() -> None:
    assert {n for n, _ in CASES} == set(TRAINING_SOURCES)  # the six of HumanBeauty-58K
    assert set(IMAGE_FOLDER) == set(CASES)
    assert {*LAYOUTS, *SINGLE_LAYOUT_FOLDER, *NO_IMAGES_DIR} == set(SOURCES)


@pytest.mark.parametrize("name", list(SINGLE_LAYOUT_FOLDER))
def test_single_layout_source_reports_its_image_folder(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_fixture(name, tmp_path)
    check_load(name, tmp_path, manifest)
    source = SOURCES[name](tmp_path)
    source.load()
    choice = source.image_choice
    assert choice is not None and choice.how == "layout"
    assert choice.folder == (tmp_path / SINGLE_LAYOUT_FOLDER[name]).resolve()
    report = run_inspect(capsys, name, tmp_path)
    assert report["kept"] == manifest.kept
    assert report["rejected_by_reason"] == manifest.rejected
    assert report["image_folder"]["folder"] == SINGLE_LAYOUT_FOLDER[name]
    assert report["warnings"] == []


@pytest.mark.parametrize(("name", "layout"), CASES, ids=[f"{n}-{lay}" for n, lay in CASES])
def test_layout_loads_through_api_and_inspect(
    name: str, layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    manifest = write_fixture(name, root, layout=layout)
    check_load(name, root, manifest)

    source = SOURCES[name](root)
    source.load()
    choice = source.image_choice
    assert choice is not None
    assert choice.folder == (root / IMAGE_FOLDER[name, layout]).resolve()
    assert choice.how == "layout"

    report = run_inspect(capsys, name, root)
    assert report["kept"] == manifest.kept
    assert report["rejected_by_reason"] == manifest.rejected
    folder = report["image_folder"]
    assert isinstance(folder, dict)
    assert folder["folder"] == IMAGE_FOLDER[name, layout]
    assert folder["matched"] >= manifest.kept
    assert report["warnings"] == []


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_hostile_rows_are_rejected_and_never_read(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / name
    manifest = write_fixture(name, root, hostile=True)
    assert manifest.rejected["outside_root"] == 3
    assert manifest.rejected["symlink_loop"] == 1
    records, rejections = check_load(name, root, manifest)
    stranger = tmp_path / f"{name}-stranger.jpg"
    assert stranger.is_file()
    for rec in records:
        assert Path(rec.image_path).resolve().is_relative_to(root.resolve())
    for rej in rejections:
        if rej.reason == "outside_root":
            assert rej.image_path is None  # nothing downstream may open it
            assert rej.detail
    report = run_inspect(capsys, name, root)
    assert report["rejected_by_reason"] == manifest.rejected
    assert report["kept"] == manifest.kept


def test_directory_index_locate_reasons(tmp_path: Path) -> None:
    root = tmp_path / "root"
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    (images / "a.jpg").write_bytes(b"x")
    (images / "sub" / "b.jpg").write_bytes(b"x")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    (images / "in.jpg").symlink_to(images / "a.jpg")
    (images / "out.jpg").symlink_to(outside)
    (images / "loop.jpg").symlink_to(images / "loop.jpg")
    (images / "dir").mkdir()
    index = DirectoryIndex(images, root)
    reasons = {
        name: index.locate(name)[1]
        for name in [
            "a.jpg",
            "sub/b.jpg",
            "in.jpg",
            "out.jpg",
            "loop.jpg",
            "../outside.jpg",
            "sub/../../../outside.jpg",
            "..\\outside.jpg",
            str(outside),
            "C:\\photos\\a.jpg",
            "gone.jpg",
            "dir",
            "caf\ufffd.jpg",
            "nul\x00.jpg",
        ]
    }
    assert reasons == {
        "a.jpg": None,
        "sub/b.jpg": None,
        "in.jpg": None,
        "out.jpg": "outside_root",
        "loop.jpg": "symlink_loop",
        "../outside.jpg": "outside_root",
        "sub/../../../outside.jpg": "outside_root",
        "..\\outside.jpg": "outside_root",
        str(outside): "outside_root",
        "C:\\photos\\a.jpg": "outside_root",
        "gone.jpg": "missing_file",
        "dir": "missing_file",
        "caf\ufffd.jpg": "undecodable_name",
        "nul\x00.jpg": "undecodable_name",
    }
    # A folder the user linked in from another disk is theirs: files in it are accepted.
    elsewhere = tmp_path / "disk"
    elsewhere.mkdir()
    (elsewhere / "c.jpg").write_bytes(b"x")
    (root / "linked").symlink_to(elsewhere)
    assert DirectoryIndex(root / "linked", root).locate("c.jpg")[1] is None


# -- discovery ----------------------------------------------------------------------------


def move_images(root: Path, old: str, new: str) -> None:
    (root / new).parent.mkdir(parents=True, exist_ok=True)
    (root / old).rename(root / new)


@pytest.mark.parametrize(
    ("name", "old"),
    [
        ("ava", "images"),
        ("tad66k", "imgs"),
        ("scut_fbp5500", "Images"),
        ("mebeauty", "original_images"),
        ("baid", "images"),
        ("agiqa_3k", "images"),
        ("humanbeauty_50k", "images"),
        ("apddv2", "APDDv2images"),
        ("lapis", "images"),
    ],
)
def test_unknown_image_folder_is_found_by_search(
    name: str, old: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_fixture(name, tmp_path, broken=False, n=4)
    move_images(tmp_path, old, "download/part 1")
    source = SOURCES[name](tmp_path)
    records, rejections = source.load()
    assert rejections == []
    assert len(records) == manifest.kept
    assert source.image_choice is not None
    assert source.image_choice.how == "search"
    assert source.image_choice.folder == tmp_path.resolve() / "download/part 1"
    report = run_inspect(capsys, name, tmp_path)
    assert report["image_folder"]["folder"] == "download/part 1"
    assert report["kept"] == manifest.kept


def test_partial_folder_warns_and_names_images_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_fixture("baid", tmp_path, broken=False, n=6)
    for rel in list(manifest.scores)[:4]:
        (tmp_path / rel).unlink()
    with caplog.at_level(logging.WARNING, logger="hae_data.sources"):
        records, rejections = SOURCES["baid"](tmp_path).load()
    assert len(records) == 2
    assert [r.reason for r in rejections] == ["missing_file"] * 4
    assert "2 of 6 label names" in caplog.text and "images_dir" in caplog.text
    assert main(["inspect", "baid", str(tmp_path), "-q"]) == 0
    text = capsys.readouterr().out
    assert "2 of 6 label names (33%)" in text
    assert "WARNING" in text and "images_dir" in text


def test_search_never_leaves_the_root_nor_goes_too_deep(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_fixture("agiqa_3k", root, broken=False, n=3)
    outside = tmp_path / "elsewhere"
    (root / "images").rename(outside)
    # A symlinked folder inside the root pointing at the images, and a folder loop.
    (root / "shortcut").symlink_to(outside)
    (root / "a").mkdir()
    (root / "a" / "loop").symlink_to(root / "a")
    records, rejections = SOURCES["agiqa_3k"](root).load()
    assert records == []
    assert {r.reason for r in rejections} == {"missing_file"}
    # Too deep to be searched: the images SEARCH_DEPTH + 1 folders down.
    deep = root.joinpath(*["d"] * (SEARCH_DEPTH + 1))
    deep.parent.mkdir(parents=True)
    outside.rename(deep)
    source = SOURCES["agiqa_3k"](root)
    assert source.load()[0] == []
    assert source.image_choice is not None and source.image_choice.how == "none"
    # Named explicitly, any folder is used.
    records, rejections = SOURCES["agiqa_3k"](root, images_dir=str(deep)).load()
    assert len(records) == 3 and not rejections


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.skip(reason=NO_IMAGES_DIR[n]))
        if n in NO_IMAGES_DIR
        else n
        for n in SOURCES
    ],
)
def test_every_loader_takes_images_dir(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    manifest = write_fixture(name, root, broken=False, n=4)
    folder = root / default_image_folder(name)
    pics = tmp_path / "pics"
    folder.rename(pics)
    source = SOURCES[name](root, images_dir=str(pics))
    records, rejections = source.load()
    assert len(records) == manifest.kept and rejections == []
    assert source.image_choice is not None and source.image_choice.how == "images_dir"
    report = run_inspect(capsys, name, root, f"images_dir={pics}")
    assert report["kept"] == manifest.kept
    assert report["image_folder"]["how"] == "images_dir"


@pytest.mark.parametrize("name", list(NO_IMAGES_DIR))
def test_sources_without_one_image_folder_refuse_images_dir(name: str, tmp_path: Path) -> None:
    write_fixture(name, tmp_path, broken=False, n=4)
    with pytest.raises(TypeError, match="images_dir"):
        SOURCES[name](tmp_path, images_dir="images")


# -- encodings and odd bytes --------------------------------------------------------------


def test_bom_is_stripped_from_ava_txt(tmp_path: Path) -> None:
    manifest = write_fixture("ava", tmp_path, broken=False, n=3)
    path = tmp_path / "AVA.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    records, rejections = SOURCES["ava"](tmp_path).load()
    assert not rejections and len(records) == manifest.kept
    assert [r.metadata["ava_index"] for r in records] == ["1", "2", "3"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_label_files_with_a_bom_are_read(encoding: str, tmp_path: Path) -> None:
    manifest = write_fixture("baid", tmp_path / "baid", broken=False, n=4)
    for path in (tmp_path / "baid" / "dataset").glob("*.csv"):
        path.write_text(path.read_text(encoding="utf-8"), encoding=encoding)
    check_load("baid", tmp_path / "baid", manifest)
    ava = write_fixture("ava", tmp_path / "ava", broken=False, n=2)
    path = tmp_path / "ava" / "AVA.txt"
    path.write_text(path.read_text(encoding="utf-8"), encoding=encoding)
    check_load("ava", tmp_path / "ava", ava)


def test_utf16_without_bom_is_refused_naming_file_and_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_fixture("agiqa_3k", tmp_path, broken=False, n=2)
    path = tmp_path / "data.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16-le"))
    with pytest.raises(SourceFormatError, match=r"data\.csv.*UTF-16"):
        SOURCES["agiqa_3k"](tmp_path).load()
    assert main(["inspect", "agiqa_3k", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert "data.csv" in err and "UTF-16" in err


def test_odd_files_in_image_folders_do_not_stop_a_source(tmp_path: Path) -> None:
    """A name that is not UTF-8 on disk, a symlink loop and a folder loop among the images."""
    for name in ("mebeauty", "baid"):
        root = tmp_path / name
        manifest = write_fixture(name, root, broken=False, n=4)
        folder = root / IMAGE_FOLDER[name, LAYOUTS[name][0]]
        with open(os.path.join(os.fsencode(folder), b"caf\xe9.jpg"), "wb") as fh:
            fh.write(b"x")
        (folder / "self.jpg").symlink_to(folder / "self.jpg")
        (folder / "again").symlink_to(folder)
        check_load(name, root, manifest)


# -- MEBeauty as its repository stands -----------------------------------------------------


def test_mebeauty_repo_paths_decide_shared_names_and_quoted_splits(tmp_path: Path) -> None:
    manifest = write_fixture("mebeauty", tmp_path, n=6)
    records, rejections = check_load("mebeauty", tmp_path, manifest)
    by_name = {r.file_name: r for r in records}
    shared = sorted(f for f in by_name if f.endswith("/shared-face.jpg"))
    assert len(shared) == 2  # one bare name, two folders: each row's path chose its file
    spaced = next(r for f, r in by_name.items() if " (1).jpg" in f)
    assert spaced.metadata["official_split"] == "train"
    assert spaced.metadata["published_score"] == pytest.approx(spaced.raw_score)
    ambiguous = next(r for r in rejections if r.reason == "ambiguous_file")
    assert "no path says which" in ambiguous.detail
    # The same files under the earlier folder name still load.
    (tmp_path / "original_images").rename(tmp_path / "images")
    records2, _ = SOURCES["mebeauty"](tmp_path).load()
    assert sorted(r.file_name.split("/", 1)[1] for r in records2) == sorted(
        f.split("/", 1)[1] for f in manifest.scores
    )


def test_annotations_survive_a_huge_field_and_utf16(tmp_path: Path) -> None:
    manifest = write_fixture("humanbeauty_50k", tmp_path, broken=False, n=3)
    path = tmp_path / "annotations.csv"
    text = path.read_text(encoding="utf-8")
    huge = "person_0000.jpg,r77," + ",".join(["0.5"] * 11) + "," + HUGE_FIELD + "\n"
    path.write_text(text + huge, encoding="utf-16")
    records, rejections = SOURCES["humanbeauty_50k"](tmp_path).load()
    assert sorted(r.file_name for r in records) == sorted(manifest.scores)
    assert [r.reason for r in rejections] == ["malformed_row"]
    assert "unreadable row" in rejections[0].detail


def test_annotations_reject_paths_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "hb"
    manifest = write_fixture("humanbeauty_50k", root, broken=False, n=3)
    hostile = write_hostile_files(root, root / "images")
    keys = load_standard().keys
    with open(root / "annotations.csv", "a", newline="") as fh:
        for label in hostile.rows:
            for r in range(10):
                fh.write(",".join([label, f"r{r}", *["0.5"] * len(keys)]) + "\n")
    records, rejections = SOURCES["humanbeauty_50k"](root).load()
    assert sorted(r.file_name for r in records) == sorted(manifest.scores)
    assert Counter(r.reason for r in rejections) == Counter(hostile.rows.values())
