"""Near-duplicates (SPEC 2.7, issue 11 point 8): hashed once at decode, one split per group."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import hae_data.images
from hae_data.export import export_dataset
from hae_data.faces.filter import decide_records, detect_items
from hae_data.images import decode_reduced
from hae_data.near_duplicates import (
    DEFAULT_MAX_DISTANCE,
    distance,
    drop_near_duplicates,
    near_pairs,
)
from hae_data.phash import phashes
from hae_data.pipeline import finalise
from hae_data.records import Face, Record


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _photos() -> dict[str, Image.Image]:
    return {
        name: Image.fromarray(getattr(data, name)()).convert("RGB")
        for name in ("astronaut", "coffee", "chelsea", "camera", "rocket")
    }


def _copies(img: Image.Image) -> dict[str, bytes]:
    w, h = img.size
    return {
        "q40": _jpeg(img, 40),
        "half": _jpeg(img.resize((w // 2, h // 2), Image.LANCZOS), 85),
        "crop5": _jpeg(img.crop((w // 20, h // 20, w - w // 20, h - h // 20)), 85),
    }


def _hashes(encoded: bytes) -> list[str]:
    return phashes(decode_reduced(encoded, long_side=640).pixels)


def test_copies_are_within_the_default_distance_and_other_photos_beyond() -> None:
    photos = _photos()
    originals = {name: _hashes(_jpeg(img, 95)) for name, img in photos.items()}
    for name, img in photos.items():
        for kind, encoded in _copies(img).items():
            assert distance(originals[name], _hashes(encoded)) <= DEFAULT_MAX_DISTANCE, (name, kind)
    names = list(originals)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert distance(originals[a], originals[b]) > 2 * DEFAULT_MAX_DISTANCE, (a, b)


def test_near_pairs_finds_exactly_the_pairs_within_the_distance(monkeypatch) -> None:
    import hae_data.near_duplicates as nd

    monkeypatch.setattr(nd, "_ROWS", 7)  # small tiles, so pairs cross tile borders
    monkeypatch.setattr(nd, "_COLS", 11)
    rng = np.random.default_rng(1)
    n, k = 60, 5
    values = rng.integers(0, 2**63, (n, k), dtype=np.int64).astype(np.uint64)
    for i in range(0, n - 1, 3):  # plant near pairs: j's crop hash close to i's whole hash
        flip = np.uint64(sum(1 << int(b) for b in rng.choice(64, int(rng.integers(0, 12)))))
        values[i + 1, int(rng.integers(0, k))] = values[i, 0] ^ flip
    hexes = [[f"{int(v):016x}" for v in row] for row in values]
    expected = {
        (i, j, distance(hexes[i], hexes[j]))
        for i in range(n)
        for j in range(i + 1, n)
        if distance(hexes[i], hexes[j]) <= 8
    }
    assert len(expected) >= 10
    assert set(nd.near_pairs(values, 8)) == expected
    assert list(near_pairs(values[:1], 8)) == []


class _OneFace:
    """A stand-in detector: one confident face in every image."""

    long_side, min_score, name, batch_size = 640, 0.5, "fake", 4

    def detect_batch(self, images, frames=None):
        return [
            [Face(box=[1.0, 1.0, 20.0, 20.0], score=0.99, landmarks=[0.0] * 10)] for _ in images
        ]


def _faced(records: list[Record]) -> list[Record]:
    results = detect_items(records, lambda r: r.image_path, _OneFace(), workers=2)
    kept, rejected = decide_records(results)
    assert not rejected
    return kept


def test_hashes_come_from_the_face_stage_decode_without_a_second_read(tmp_path, monkeypatch):
    reads: list[str] = []
    real = hae_data.images._read_bytes

    def counting(path):
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(hae_data.images, "_read_bytes", counting)
    recs = []
    for name, img in _photos().items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(_jpeg(img))
        recs.append(Record(source="ava", file_name=path.name, image_path=str(path)))
    kept = _faced(recs)
    assert sorted(reads) == sorted(r.image_path for r in recs)  # one read per file
    for rec in kept:
        encoded = Path(rec.image_path).read_bytes()
        assert rec.phash == _hashes(encoded)
        assert len(rec.phash) == 5


def _build(tmp_path: Path) -> list[Record]:
    """Each photo once in AVA; a resized copy of the astronaut in BAID (same part), re-encoded
    copies of the coffee and the camera in the 12-dimension part (other part)."""
    photos = _photos()
    recs = []

    def add(source: str, name: str, encoded: bytes, part: str = "overall", score: float = 5.0):
        path = tmp_path / source / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encoded)
        rec = Record(source=source, file_name=name, image_path=str(path), part=part)
        rec.raw_score = score
        if part == "fine_grained":
            rec.dimension_scores = [0.5] * 12
        recs.append(rec)

    for i, (name, img) in enumerate(photos.items()):
        add("ava", f"{name}.jpg", _jpeg(img), score=float(i))
        add("baid", f"{name}-other.jpg", _jpeg(img.transpose(Image.ROTATE_90)), score=float(i))
    add("baid", "astronaut-small.jpg", _copies(photos["astronaut"])["half"], score=9.0)
    for name in ("coffee", "camera"):
        add("humanbeauty_50k", f"{name}.jpg", _jpeg(photos[name], 70), part="fine_grained")
        add("humanbeauty_50k", f"{name}_crop.jpg", _copies(photos[name])["crop5"], "fine_grained")
    return _faced(recs)


def test_near_duplicates_share_a_split_and_are_rejected_within_a_part(tmp_path) -> None:
    final = finalise(_build(tmp_path), test_fraction=0.5)
    rejected = {r.file_name: r for r in final.rejections}
    # Within a part: the later copy goes, naming the one kept. The code before issue 11 kept
    # all three (only byte-identical files were dropped).
    assert set(rejected) == {"astronaut-small.jpg", "coffee_crop.jpg", "camera_crop.jpg"}
    small = rejected["astronaut-small.jpg"]
    assert small.reason == "near_duplicate" and small.stage == "dedupe"
    assert "ava/astronaut.jpg" in small.detail and "bit(s) from" in small.detail
    # Across parts: both copies stay, in one group and one split.
    by_name = {(r.source, r.file_name): r for r in final.records}
    for name in ("coffee", "camera"):
        a, b = by_name["ava", f"{name}.jpg"], by_name["humanbeauty_50k", f"{name}.jpg"]
        assert a.duplicate_group is not None and a.duplicate_group == b.duplicate_group
        assert a.split == b.split
    # A 90-degree turned copy is another image to the hash (and to the model): no group.
    assert by_name["baid", "astronaut-other.jpg"].duplicate_group is None
    assert sum(r.duplicate_group is not None for r in final.records) == 4


def test_the_card_counts_near_duplicates(tmp_path) -> None:
    final = finalise(_build(tmp_path), test_fraction=0.5)
    export_dataset(final.records, final.rejections, tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "### Near-duplicates" in card
    assert "rejected as near-duplicates within a part: 3 (baid 1, humanbeauty_50k 2)" in card
    assert "groups kept in both parts: 2 (4 images;" in card
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["near_duplicates"]["cross_part_groups"] == 2
    assert stats["sources"]["baid"]["rejected"] == {"near_duplicate": 1}


def test_the_stage_can_be_turned_off_and_tolerates_unhashed_records(tmp_path) -> None:
    recs = _build(tmp_path)
    assert len(drop_near_duplicates(recs, max_distance=None).records) == len(recs)
    recs[0].phash = None  # detections stored before the hashes existed
    result = drop_near_duplicates(recs)
    assert result.stats["unhashed"] == 1 and len(result.records) == len(recs) - 2  # 3 - 1
    with pytest.raises(ValueError, match="max_distance"):
        drop_near_duplicates(recs, max_distance=-1)


def test_a_sources_config_can_fix_the_distance(tmp_path) -> None:
    from hae_data.pipeline import read_build_spec

    config = tmp_path / "sources.yaml"
    config.write_text(f"sources: {{ava: {tmp_path}}}\nnear_duplicate_distance: null\n")
    assert read_build_spec(config).settings == {"near_duplicate_distance": None}
    config.write_text(f"sources: {{ava: {tmp_path}}}\n")
    assert read_build_spec(config).settings == {}
    # The config's value wins over the flow's option, so it gets the same check: 65 bits or
    # ``true`` (an int to Python) would make every image one photo and empty the build.
    for bad in ("-3", "65", "true", "8.5"):
        config.write_text(f"sources: {{ava: {tmp_path}}}\nnear_duplicate_distance: {bad}\n")
        with pytest.raises(ValueError, match="near_duplicate_distance must be None or 0-64"):
            read_build_spec(config)
