import os

import pytest

from hae_data.hashing import content_id
from hae_data.pipeline import (
    FaceSettings,
    detect_shard,
    drop_duplicates,
    finalise,
    plan_shards,
    read_plan,
    remove_plans,
    shard_bounds,
    write_plans,
)
from hae_data.records import Record
from tests.data.test_export import make_records


def _recs(tmp_path, n=7, source="ava"):
    out = []
    for i in range(n):
        p = tmp_path / f"{source}-{i}.jpg"
        p.write_bytes(b"x" * (i + 1))
        out.append(Record(source=source, file_name=p.name, image_path=str(p), raw_score=i))
    return out


def test_plan_shards_keeps_sources_apart_in_file_order(tmp_path):
    recs = _recs(tmp_path, 50, "baid") + _recs(tmp_path, 30, "ava")
    shards = plan_shards(list(reversed(recs)), 5)
    assert all(len({r.source for r in s}) == 1 for s in shards)
    smallest, largest = shard_bounds(5)
    assert all(smallest <= len(s) <= largest for s in shards)
    flat = [r.file_name for s in shards for r in s]
    assert flat == sorted(r.file_name for r in recs if r.source == "ava") + sorted(
        r.file_name for r in recs if r.source == "baid"
    )
    assert 6 <= len(shards) <= 40  # about 80 / 5
    assert [len(s) for s in plan_shards(recs[:1], 1)] == [1]
    with pytest.raises(ValueError):
        plan_shards(recs, 0)


def test_adding_a_file_changes_a_shard_or_two_not_the_rest(tmp_path):
    recs = _recs(tmp_path, 200)
    before = [[r.file_name for r in s] for s in plan_shards(recs, 10)]
    assert before == [[r.file_name for r in s] for s in plan_shards(recs[::-1], 10)]
    for extra_name in ("ava-0000.jpg", "ava-5.jpg", "ava-99.jpg"):
        extra = Record(source="ava", file_name=extra_name, image_path="x", raw_score=1.0)
        after = [[r.file_name for r in s] for s in plan_shards([extra, *recs], 10)]
        changed = [s for s in after if s not in before]
        assert 1 <= len(changed) <= 2 and any(extra_name in s for s in changed)
        assert len(after) - len(before) in (0, 1)


@pytest.mark.parametrize("shard_size", [1, 2, 7, 100, 2000])
def test_shards_are_even_within_bounds(tmp_path, shard_size):
    """The old planner cut 20, 12 and 268 images at shard_size=100: poor balance over workers."""
    smallest, largest = shard_bounds(shard_size)
    assert smallest <= shard_size <= largest <= 2 * shard_size
    for n in (1, smallest, largest + 1, 3 * shard_size + 5, 5000):
        recs = [
            Record(source="ava", file_name=f"{i:07d}.jpg", image_path="x", raw_score=1.0)
            for i in range(n)
        ]
        sizes = [len(s) for s in plan_shards(recs, shard_size)]
        assert sum(sizes) == n
        if n >= smallest:
            assert all(smallest <= k <= largest for k in sizes), (n, sizes)
        else:
            assert sizes == [n]


PHOTOS = {"one.jpg": ("keep", 0), "group.jpg": ("multi_face", 0), "none.jpg": ("no_face", 0)}


def _write_photos(folder):
    from hae_data.demo import demo_photos

    photos = demo_photos()
    for name, (kind, i) in PHOTOS.items():
        (folder / name).write_bytes(photos[kind][i].data)


def _photo_records(folder):
    """Fresh records over the photos, as a new run's loader would give (files untouched)."""
    return [
        Record(source="ava", file_name=name, image_path=str(folder / name), raw_score=5.0)
        for name in PHOTOS
    ]


def test_detect_shard_reuses_detections_but_not_labels_or_rule(tmp_path):
    settings = FaceSettings(device="cpu")
    _write_photos(tmp_path)
    first = detect_shard(_photo_records(tmp_path), settings, tmp_path / "work")
    assert not first.reused
    assert [r.file_name for r in first.result.records] == ["one.jpg"]
    reasons = {r.file_name: r.reason for r in first.result.rejections}
    assert reasons == {"group.jpg": "multi_face", "none.jpg": "no_face"}
    group = next(r for r in first.result.rejections if r.file_name == "group.jpg")
    assert len([f for f in group.faces if f.score >= 0.9]) >= 2  # detections kept for later

    fresh = _photo_records(tmp_path)
    for rec in fresh:
        rec.raw_score = 7.5  # a corrected label file
    again = detect_shard(fresh, settings, tmp_path / "work")
    assert again.reused and again.fingerprint == first.fingerprint
    assert again.result.records[0].raw_score == 7.5
    assert again.result.records[0].faces == first.result.records[0].faces

    strict = detect_shard(
        _photo_records(tmp_path), FaceSettings(device="cpu", threshold=0.99999), tmp_path / "work"
    )
    assert strict.reused  # another rule, same stored detections
    assert {r.file_name for r in strict.result.rejections} >= {"group.jpg", "none.jpg"}

    (tmp_path / "work" / "faces" / f"{first.fingerprint}.json").write_text("{not json")
    redone = detect_shard(_photo_records(tmp_path), settings, tmp_path / "work")
    assert not redone.reused  # an unreadable completion file: the shard is detected again
    assert redone.result.records[0].faces == first.result.records[0].faces


def test_same_size_edit_with_the_mtime_put_back_is_detected_again(tmp_path):
    """``cp -p`` / ``rsync -t`` / ``exiftool -P``: same size, same mtime, other bytes."""
    settings = FaceSettings(device="cpu")
    _write_photos(tmp_path)
    first = detect_shard(_photo_records(tmp_path), settings, tmp_path / "work")
    one = tmp_path / "one.jpg"
    st = one.stat()
    data = bytearray(one.read_bytes())
    data[-3] ^= 0xFF  # a byte in the JPEG's entropy-coded tail: same size, other content
    one.write_bytes(bytes(data))
    os.utime(one, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert one.stat().st_size == st.st_size and one.stat().st_mtime_ns == st.st_mtime_ns
    again = detect_shard(_photo_records(tmp_path), settings, tmp_path / "work")
    assert not again.reused and again.fingerprint != first.fingerprint
    [kept] = again.result.records
    assert kept.image_id == content_id(bytes(data)) != first.result.records[0].image_id


def test_face_settings_fail_fast(tmp_path):
    with pytest.raises(ValueError, match="device"):
        FaceSettings(device="gpu").validate()
    with pytest.raises(ValueError, match="device"):
        FaceSettings(device="cudax").validate(local=False)
    FaceSettings(device="cuda:1").validate(local=False)  # remote workers may have the GPU
    with pytest.raises(ValueError, match="workers"):
        FaceSettings(workers=0).validate()
    with pytest.raises(ValueError, match="threshold"):
        FaceSettings(threshold=1.5).validate()
    with pytest.raises(ValueError, match="does not exist"):
        FaceSettings(weights=str(tmp_path / "nope.pth")).validate()
    assert FaceSettings(threshold=0.3).min_score == 0.3
    assert FaceSettings().min_score == 0.5


def test_drop_duplicates_keeps_the_first_and_names_it(tmp_path):
    a = Record(source="ava", file_name="1.jpg", image_path="p", image_id="same")
    b = Record(source="tad66k", file_name="9.jpg", image_path="q", image_id="same")
    c = Record(source="tad66k", file_name="8.jpg", image_path="r", image_id="other")
    fg = Record(
        source="humanbeauty_50k",
        file_name="1.jpg",
        image_path="p",
        image_id="same",
        part="fine_grained",
    )
    res = drop_duplicates([b, c, a, fg])
    assert sorted(r.file_name for r in res.records) == ["1.jpg", "1.jpg", "8.jpg"]
    [rej] = res.rejections
    assert (rej.source, rej.reason, rej.detail) == (
        "tad66k",
        "duplicate_image",
        "same bytes as ava/1.jpg",
    )


def test_finalise_runs_every_scoring_stage(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=12, n_fine=6)
    for r in recs:
        r.score = r.level = r.question = r.answer = r.split = None
        if r.part == "fine_grained":
            r.score = r.dimension_scores[-1]
    dup = Record(**{**{k: getattr(recs[0], k) for k in recs[0].__slots__}, "file_name": "zz.jpg"})
    const = [
        Record(
            source="agiqa_3k",
            file_name=f"{i}.jpg",
            image_path="p",
            image_id=f"id{i}",
            raw_score=2.0,
        )
        for i in range(2)
    ]
    res = finalise([*recs, dup, *const])
    assert len(res.records) == len(recs)
    assert sorted(r.reason for r in res.rejections) == [
        "constant_scores",
        "constant_scores",
        "duplicate_image",
    ]
    for r in res.records:
        assert 0.0 <= r.score <= 1.0 and r.level and r.question and r.answer
        assert r.split in ("train", "test")


def test_shard_plans_of_two_builds_never_meet(tmp_path):
    recs = _recs(tmp_path, 5)
    work = tmp_path / "work"
    paths = write_plans([recs[:2], recs[2:4], recs[4:]], work, "build-a")
    other = write_plans([recs], work, "build-b")
    assert [r.file_name for p in paths for r in read_plan(p)] == [r.file_name for r in recs]
    assert [r.file_name for r in read_plan(other[0])] == [r.file_name for r in recs]
    remove_plans(work, "build-b")  # one build's clean-up leaves the other's plans alone
    assert [r.file_name for p in paths for r in read_plan(p)] == [r.file_name for r in recs]
    with pytest.raises(FileNotFoundError):
        read_plan(other[0])
    remove_plans(work)
    assert not any((work / "plans").iterdir())


def test_build_spec_refuses_mixing_the_release_with_raw_sources(tmp_path):
    from hae_data.pipeline import read_build_spec

    with pytest.raises(ValueError, match="cannot be built together"):
        read_build_spec(sources={"humanbeauty_release": str(tmp_path), "ava": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown source"):
        read_build_spec(sources={"nope": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown option"):
        read_build_spec(sources={"ava": {"root": str(tmp_path), "options": {"bogus": 1}}})
    spec = read_build_spec(sources={"scut_fbp5500": str(tmp_path)}, min_raters=5)
    assert spec.sources["scut_fbp5500"] == (str(tmp_path), {"min_raters": 5})
    # A per-source value is checked with the spec, before the build holds its output folder.
    with pytest.raises(ValueError, match="'mebeauty': min_raters must be >= 1"):
        read_build_spec(sources={"mebeauty": {"root": str(tmp_path), "options": {"min_raters": 0}}})
