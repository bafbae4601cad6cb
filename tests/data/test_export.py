import io
import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset
from PIL import Image

from hae_data.export import export_dataset
from hae_data.images import read_image
from hae_data.qa import make_qa
from hae_data.records import Face, Record, Rejection
from hae_data.scores import apply_levels, normalise_by_source
from hae_data.split import assign_splits


def load(folder, part, split):
    """load_dataset with a cache of its own: datasets keys the cache of a local folder by its
    base name and config only, so two exports into folders of the same name would collide."""
    return load_dataset(str(folder), part, split=split, cache_dir=str(folder.parent / "hf-cache"))


def make_records(folder, n_overall=30, n_fine=20, seed=0, size=(48, 32)):
    """Complete records over generated JPEGs, as the pipeline's stages leave them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n_overall + n_fine):
        part = "overall" if i < n_overall else "fine_grained"
        source = ("ava", "baid")[i % 2] if part == "overall" else "humanbeauty_50k"
        path = folder / f"{source}-{i}.jpg"
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(path, quality=90)
        rec = Record(
            source=source,
            file_name=path.name,
            image_path=str(path),
            part=part,
            raw_score=float(rng.uniform(1, 10)),
            metadata={"i": i},
        )
        dec = read_image(path)
        rec.image_id, rec.width, rec.height = dec.image_id, dec.width, dec.height
        rec.faces = [
            Face(box=[1.0, 2.0, 30.0, 28.0], score=0.99, landmarks=[float(k) for k in range(10)])
        ]
        if part == "fine_grained":
            rec.dimension_scores = [float(v) for v in rng.uniform(0, 1, 12)]
            rec.dimension_std = [0.1] * 12
            rec.rater_count = 9
            rec.raw_score = rec.score = rec.dimension_scores[-1]
        recs.append(rec)
    recs, rejected = normalise_by_source(recs)
    for rec in recs:
        make_qa(apply_levels(rec))
    return assign_splits(recs), rejected


def test_round_trip_through_datasets(tmp_path):
    recs, _ = make_records(tmp_path / "img")
    rejections = [
        Rejection(source="ava", file_name="gone.jpg", reason="missing_file", stage="load")
    ]
    summary = export_dataset(recs, rejections, tmp_path / "out")
    assert summary.total_rows == len(recs) and summary.rejected == 1
    by_id = {r.image_id: r for r in recs}
    for part in ("overall", "fine_grained"):
        for split in ("train", "test"):
            ds = load(tmp_path / "out", part, split)
            expected = [r for r in recs if r.part == part and r.split == split]
            assert len(ds) == len(expected) > 0
            for row in ds:
                rec = by_id[row["image_id"]]
                assert (row["source"], row["part"], row["split"]) == (rec.source, part, split)
                assert row["score"] == pytest.approx(rec.score, abs=1e-6)
                assert row["raw_score"] == pytest.approx(rec.raw_score)
                level = ds.features["level"].int2str(row["level"])  # a ClassLabel
                assert (level, row["question"], row["answer"]) == (
                    rec.level,
                    rec.question,
                    rec.answer,
                )
                assert json.loads(row["metadata"]) == rec.metadata
                assert row["faces"][0]["score"] == pytest.approx(0.99)
                assert row["face_count"] == 1
                original = np.asarray(Image.open(rec.image_path).convert("RGB"))
                assert np.array_equal(np.asarray(row["image"].convert("RGB")), original)
                if part == "fine_grained":
                    assert row["dimension_scores"] == pytest.approx(rec.dimension_scores, abs=1e-6)
                    words = ds.features["dimension_levels"].feature.int2str(row["dimension_levels"])
                    assert words == rec.dimension_levels
                else:
                    assert row["dimension_scores"] is None


def test_card_rejections_and_stats(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=12, n_fine=10)
    rejections = [
        Rejection(source="ava", file_name="two.jpg", reason="multi_face", stage="faces"),
        Rejection(source="ava", file_name="none.jpg", reason="no_face", stage="faces"),
        Rejection(
            source="tad66k",
            file_name="x.jpg",
            reason="malformed_row",
            stage="load",
            detail="3 columns, expected 2",
        ),
    ]
    export_dataset(recs, rejections, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    names = [c["config_name"] for c in front["configs"]]
    assert names == ["overall", "fine_grained"]
    for cfg in front["configs"]:
        assert [f["split"] for f in cfg["data_files"]] == ["train", "test"]
    for phrase in (
        "non-commercial research use only",
        "AVA",
        "BAID",
        "TAD66K",
        "multi_face",
        "Overall Aesthetic",
        "HumanBeauty-50K",
    ):
        assert phrase in text
    rej = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    assert sorted(r["reason"] for r in rej) == ["malformed_row", "multi_face", "no_face"]
    assert all("image" not in r for r in rej)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["sources"]["ava"]["rejected"] == {"multi_face": 1, "no_face": 1}
    assert stats["sources"]["tad66k"]["kept"] == 0
    assert stats["totals"]["kept"] == len(recs)
    assert sum(stats["sources"]["ava"]["levels"].values()) == stats["sources"]["ava"]["kept"]


def test_shards_and_row_groups_are_bounded(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=60, n_fine=0, size=(64, 64))
    summary = export_dataset(
        recs, [], tmp_path / "out", shard_max_bytes=60_000, row_group_max_bytes=20_000
    )
    train = summary.shards["overall"]["train"]
    assert len(train) >= 3
    n = len(train)
    assert [p.rsplit("/", 1)[1] for p in train] == [
        f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)
    ]
    for rel in train:
        meta = pq.ParquetFile(tmp_path / "out" / rel).metadata
        assert meta.num_row_groups >= 1
        assert all(meta.row_group(g).total_byte_size < 60_000 for g in range(meta.num_row_groups))
    assert (
        sum(pq.ParquetFile(tmp_path / "out" / p).metadata.num_rows for p in train)
        == summary.rows["overall"]["train"]
    )


def test_reexport_leaves_no_stale_shards_and_keeps_foreign_files(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=40, n_fine=6, size=(64, 64))
    out = tmp_path / "out"
    export_dataset(recs, [], out, shard_max_bytes=50_000, row_group_max_bytes=20_000)
    many = sorted(p.name for p in (out / "data" / "overall").iterdir())
    (out / "notes.txt").write_text("mine")
    small = [r for r in recs if r.part == "overall"][:10] + [
        r for r in recs if r.part == "fine_grained"
    ]
    summary = export_dataset(small, [], out)
    few = sorted(p.name for p in (out / "data" / "overall").iterdir())
    assert len(few) < len(many)
    assert all(name.endswith("-of-00001.parquet") for name in few)
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    ds = load(out, "overall", "train")
    assert len(ds) == summary.rows["overall"]["train"]


def test_output_is_independent_of_input_order(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=20, n_fine=6)
    export_dataset(recs, [], tmp_path / "a")
    shuffled = list(recs)
    random.Random(3).shuffle(shuffled)
    export_dataset(shuffled, [], tmp_path / "b")
    for path in sorted((tmp_path / "a").rglob("*.parquet")):
        other = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert pq.read_table(path).equals(pq.read_table(other)), path
    assert (tmp_path / "a" / "README.md").read_text() == (tmp_path / "b" / "README.md").read_text()


def test_unreadable_image_at_export_becomes_a_rejection(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=10, n_fine=4)
    victim = recs[0]
    (tmp_path / "img" / victim.file_name).write_bytes(b"")
    summary = export_dataset(recs, [], tmp_path / "out")
    assert summary.total_rows == len(recs) - 1
    [rej] = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    assert (rej["file_name"], rej["reason"], rej["stage"]) == (
        victim.file_name,
        "empty_file",
        "export",
    )


def test_incomplete_and_duplicate_records_are_refused(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=6, n_fine=0)
    recs[0].level = None
    with pytest.raises(ValueError, match="not ready for export"):
        export_dataset(recs, [], tmp_path / "out")
    recs, _ = make_records(tmp_path / "img2", n_overall=6, n_fine=0)
    recs[1].image_id = recs[0].image_id
    with pytest.raises(ValueError, match="appears twice"):
        export_dataset(recs, [], tmp_path / "out")
    assert not (tmp_path / "out").exists() or not (tmp_path / "out" / "data").exists()
    with pytest.raises(ValueError):
        export_dataset(recs, [], tmp_path / "out", shard_max_bytes=0)


def test_rotated_source_is_exported_upright(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    rec = next(r for r in recs if r.part == "overall")
    img = Image.open(rec.image_path)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(rec.image_path, exif=exif, quality=95)
    dec = read_image(rec.image_path)
    rec.image_id, rec.width, rec.height = dec.image_id, dec.width, dec.height
    assign_splits(recs)
    export_dataset(recs, [], tmp_path / "out")
    ds = load(tmp_path / "out", "overall", rec.split)
    row = next(r for r in ds if r["image_id"] == rec.image_id)
    assert row["image"].size == (rec.width, rec.height) == (img.height, img.width)


def test_extra_files_are_copied(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    plot = tmp_path / "hist.png"
    Image.new("RGB", (4, 4)).save(plot)
    export_dataset(recs, [], tmp_path / "out", extra_files={"plots/hist.png": plot})
    assert Image.open(io.BytesIO((tmp_path / "out" / "plots" / "hist.png").read_bytes())).size == (
        4,
        4,
    )


def test_image_changed_after_detection_is_rejected_not_exported(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=8, n_fine=4)
    victim = next(r for r in recs if r.part == "overall")
    Image.new("RGB", (48, 32), "green").save(victim.image_path)
    summary = export_dataset(recs, [], tmp_path / "out")
    assert summary.total_rows == len(recs) - 1
    [rej] = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    assert (rej["file_name"], rej["reason"]) == (victim.file_name, "changed_since_detection")


def test_rejections_keep_their_detections(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    face = Face(box=[1.0, 2.0, 3.0, 4.0], score=0.97, landmarks=[0.0] * 10)
    rej = Rejection(
        source="ava", file_name="g.jpg", reason="multi_face", stage="faces", faces=[face, face]
    )
    export_dataset(recs, [rej], tmp_path / "out")
    [row] = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    assert [f["score"] for f in row["faces"]] == pytest.approx([0.97, 0.97])


def test_level_boundaries_survive_the_round_trip(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=10, n_fine=6)
    for rec, value in zip(
        [r for r in recs if r.part == "fine_grained"], [0.2, 0.4, 0.6, 0.8], strict=False
    ):
        rec.dimension_scores = [value] * 12
        rec.score = value
        apply_levels(rec)
    summary = export_dataset(recs, [], tmp_path / "out")
    from hae_data.levels import score_to_level

    for split in summary.rows["fine_grained"]:  # a 6-image source may have no test row
        ds = load(tmp_path / "out", "fine_grained", split)
        names = ds.features["level"]
        for row in ds:
            assert score_to_level(row["score"]) == names.int2str(row["level"])
            assert [score_to_level(v) for v in row["dimension_scores"]] == names.int2str(
                row["dimension_levels"]
            )


def test_row_groups_never_outgrow_a_small_shard(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=30, n_fine=0, size=(64, 64))
    summary = export_dataset(recs, [], tmp_path / "out", shard_max_bytes=40_000)
    for rel in summary.shards["overall"]["train"]:
        meta = pq.ParquetFile(tmp_path / "out" / rel).metadata
        assert all(meta.row_group(g).total_byte_size < 40_000 for g in range(meta.num_row_groups))


def test_stale_staging_folder_of_a_killed_export_is_removed(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    export_dataset(recs, [], tmp_path / "out")
    stale = tmp_path / "out" / ".humanbeauty-staging-deadbeef"
    (stale / "data").mkdir(parents=True)
    export_dataset(recs, [], tmp_path / "out")
    assert not stale.exists()
    assert not [p for p in (tmp_path / "out").iterdir() if "staging" in p.name or "old" in p.name]


def test_rejected_parquet_names_items_relative_to_their_source_root(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=6, n_fine=4)
    root = tmp_path / "datasets" / "AVA"
    missing = root / "images" / "123.jpg"
    rej = Rejection(
        source="ava",
        file_name="images/123.jpg",
        reason="missing_file",
        stage="load",
        detail=f"AVA.txt line 4: image file not found at {str(missing)!r}",
        image_path=str(missing),
    )
    victim = next(r for r in recs if r.part == "overall")
    os.unlink(victim.image_path)  # vanishes between detection and export
    export_dataset(recs, [rej], tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "rejected.parquet")
    assert "image_path" not in table.column_names
    rows = {r["file_name"]: r for r in table.to_pylist()}
    assert (
        rows["images/123.jpg"]["detail"]
        == "AVA.txt line 4: image file not found at 'images/123.jpg'"
    )
    assert rows[victim.file_name]["stage"] == "export"
    raw = (tmp_path / "out" / "rejected.parquet").read_bytes()
    assert str(tmp_path).encode() not in raw


def test_shards_have_a_page_index_content_defined_chunks_and_plain_image_bytes(tmp_path):
    """What datasets' own writer does: readers can skip pages, and a re-pushed build that
    changed a little deduplicates against the last push (image bytes left uncompressed)."""
    recs, _ = make_records(tmp_path / "img", n_overall=12, n_fine=4)
    summary = export_dataset(recs, [], tmp_path / "out")
    path = tmp_path / "out" / summary.shards["overall"]["train"][0]
    meta = pq.ParquetFile(path).metadata
    assert b"content_defined_chunking" in meta.metadata
    names = [meta.schema.column(j).path for j in range(meta.num_columns)]
    columns = {names[j]: meta.row_group(0).column(j) for j in range(meta.num_columns)}
    assert columns["image.bytes"].compression == "UNCOMPRESSED"
    assert columns["score"].compression == "ZSTD"
    assert all(c.has_offset_index and c.has_column_index for c in columns.values())


def test_card_carries_dataset_info_licence_link_sources_and_the_paper(tmp_path):
    from huggingface_hub import DatasetCard

    recs, _ = make_records(tmp_path / "img", n_overall=12, n_fine=6)
    summary = export_dataset(recs, [], tmp_path / "out")
    card = DatasetCard.load(tmp_path / "out" / "README.md")
    data = card.data.to_dict()
    info = {c["config_name"]: c for c in data["dataset_info"]}
    assert set(info) == {"overall", "fine_grained"}
    for part, splits in summary.rows.items():
        got = {s["name"]: s["num_examples"] for s in info[part]["splits"]}
        assert got == splits
        assert info[part]["download_size"] == sum(
            (tmp_path / "out" / p).stat().st_size
            for ps in summary.shards[part].values()
            for p in ps
        )
    names = [f["name"] for f in info["overall"]["features"]]
    assert names[:3] == ["image", "image_id", "source"]
    assert data["license"] == "other" and data["license_link"] == "LICENSE.md"
    assert "AVA" in (tmp_path / "out" / "LICENSE.md").read_text()
    assert "arxiv:2503.23907" in data["tags"]
    assert "extended|AVA" in data["source_datasets"]
    assert "https://arxiv.org/abs/2503.23907" in card.text


def test_levels_are_class_labels_a_split_can_stratify_on(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=40, n_fine=0)
    export_dataset(recs, [], tmp_path / "out")
    ds = load(tmp_path / "out", "overall", "train")
    assert ds.features["level"].names == ["bad", "poor", "fair", "good", "excellent"]
    halves = ds.train_test_split(test_size=0.5, stratify_by_column="level", seed=0)
    assert len(halves["train"]) + len(halves["test"]) == len(ds)


def _variant(path, kind, rng):
    """Rewrite ``path`` as an image of ``kind``; returns the new path (the suffix may change)."""
    rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    if kind == "rotated":
        exif = Image.Exif()
        exif[0x0112] = 6
        img.save(path, exif=exif, quality=90)
    elif kind == "gray":
        img.convert("L").save(path, quality=90)
    elif kind == "cmyk":
        img.convert("CMYK").save(path, quality=90)
    else:
        path = path.with_suffix({"png": ".png", "rgba": ".png", "webp": ".webp"}[kind])
        out = img.convert("RGBA") if kind == "rgba" else img
        out.save(path, **({"lossless": True} if kind == "webp" else {}))
    return path


def test_export_without_a_second_decode_writes_the_same_bytes(tmp_path):
    """The fast path (header only, decode/encode in threads where needed) against decoding
    every image again: the same rows, the same embedded bytes, for every kind of file."""
    recs, _ = make_records(tmp_path / "img", n_overall=14, n_fine=6)
    rng = np.random.default_rng(1)
    kinds = ["rotated", "gray", "cmyk", "png", "rgba", "webp"]
    kind_of = {}
    for rec, kind in zip(recs, kinds * 2, strict=False):
        path = _variant(tmp_path / "img" / rec.file_name, kind, rng)
        dec = read_image(path)
        rec.image_path, rec.image_id = str(path), dec.image_id
        rec.width, rec.height = dec.width, dec.height
        kind_of[rec.image_id] = kind
    fast = export_dataset(recs, [], tmp_path / "fast")
    slow = export_dataset(recs, [], tmp_path / "slow", verify_decode=True)
    assert fast.total_rows == slow.total_rows == len(recs)
    files = sorted(p.relative_to(tmp_path / "fast") for p in (tmp_path / "fast").rglob("*.parquet"))
    assert files == sorted(
        p.relative_to(tmp_path / "slow") for p in (tmp_path / "slow").rglob("*.parquet")
    )
    for rel in files:
        assert pq.read_table(tmp_path / "fast" / rel).equals(pq.read_table(tmp_path / "slow" / rel))
    rows = {
        r["image_id"]: r["image"]["bytes"]
        for p in (tmp_path / "fast" / "data").rglob("*.parquet")
        for r in pq.read_table(p, columns=["image_id", "image"]).to_pylist()
    }
    for rec in recs:  # upright RGB JPEG/PNG/WebP go in as they are; the rest re-encoded
        as_is = kind_of.get(rec.image_id, "jpeg") in ("jpeg", "png", "webp")
        assert (rows[rec.image_id] == Path(rec.image_path).read_bytes()) == as_is
        assert Image.open(io.BytesIO(rows[rec.image_id])).size == (rec.width, rec.height)
