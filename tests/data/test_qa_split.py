from collections import Counter

import pytest

from annotation_schema import load_standard
from hae_data.hashing import content_id
from hae_data.qa import make_qa, pick_question
from hae_data.records import Record
from hae_data.split import assign_splits, split_key


def _rec(i, source="ava", part="overall"):
    return Record(
        source=source,
        file_name=f"{i}.jpg",
        image_path="x",
        part=part,
        image_id=content_id(f"{source}-{i}".encode()),
    )


def test_question_is_a_function_of_the_image_id_and_covers_every_paraphrase():
    std = load_standard()
    ids = [content_id(str(i).encode()) for i in range(400)]
    qs = [pick_question(i, "overall") for i in ids]
    assert qs == [pick_question(i, "overall") for i in ids]
    assert set(qs) == set(std.overall_questions)
    assert set(pick_question(i, "fine_grained") for i in ids) == set(std.fine_grained_questions)
    with pytest.raises(ValueError):
        pick_question(ids[0], "other")


def test_make_qa_overall_and_fine_grained():
    std = load_standard()
    rec = _rec(1)
    rec.level = "good"
    make_qa(rec)
    assert rec.question in std.overall_questions
    assert rec.answer == "The aesthetics of the image is good."
    fg = _rec(2, "humanbeauty_50k", "fine_grained")
    fg.level = "fair"
    fg.dimension_levels = list(std.level_words) * 2 + ["bad", "poor"]
    make_qa(fg)
    assert fg.question in std.fine_grained_questions
    lines = fg.answer.splitlines()
    assert len(lines) == 12 and lines[11] == "Overall Aesthetic: poor"
    with pytest.raises(ValueError, match="level"):
        make_qa(_rec(3))
    no_id = _rec(4)
    no_id.image_id = None
    with pytest.raises(ValueError, match="image_id"):
        make_qa(no_id)


def test_split_is_deterministic_order_free_and_stable_when_images_are_added():
    recs = [_rec(i, src) for src in ("ava", "baid") for i in range(3000)]
    first = {r.image_id: r.split for r in assign_splits(recs)}
    again = {
        r.image_id: r.split
        for r in assign_splits(
            list(reversed([_rec(i, src) for src in ("ava", "baid") for i in range(3000)]))
        )
    }
    assert first == again
    more = [_rec(i, src) for src in ("ava", "baid") for i in range(4000)]
    grown = {r.image_id: r.split for r in assign_splits(more)}
    assert all(grown[k] == v for k, v in first.items())


def test_split_is_stratified_by_source_with_the_default_fraction():
    recs = assign_splits([_rec(i, src) for src in ("ava", "baid", "tad66k") for i in range(3000)])
    for src in ("ava", "baid", "tad66k"):
        mine = [r for r in recs if r.source == src]
        frac = sum(r.split == "test" for r in mine) / len(mine)
        assert 0.11 < frac < 0.155, (src, frac)


def test_quick_subset_is_test_only_and_capped_per_source():
    recs = assign_splits([_rec(i, src) for src in ("ava", "baid") for i in range(3000)])
    quick = Counter(r.source for r in recs if r.quick)
    assert quick == {"ava": 138, "baid": 138}
    assert all(r.split == "test" for r in recs if r.quick)
    test_keys = sorted(
        split_key(r.image_id) for r in recs if r.source == "ava" and r.split == "test"
    )
    quick_keys = sorted(split_key(r.image_id) for r in recs if r.source == "ava" and r.quick)
    assert quick_keys == test_keys[:138]


def test_growing_a_small_source_never_moves_an_existing_image():
    """Issue 11, point 9: the old rule forced a small source's lowest-hash image into test and
    sent it back to train as soon as an image with a lower hash joined."""
    moved: set[str] = set()
    for seed in range(40):
        source = f"small{seed}"
        first = {r.image_id: r.split for r in assign_splits([_rec(i, source) for i in range(3)])}
        for n in (5, 10, 30, 100):
            grown = {
                r.image_id: r.split for r in assign_splits([_rec(i, source) for i in range(n)])
            }
            moved |= {k for k, v in first.items() if grown[k] != v}
    assert moved == set()  # the code before issue 11 moved 26 images, in 26 of these sources


def test_a_small_source_may_have_no_test_image_and_says_so(caplog):
    recs = assign_splits([_rec(i, "agiqa_3k") for i in range(3)], test_fraction=0.01)
    assert [r.split for r in recs] == ["train"] * 3
    assert "none of its 3 image(s) falls in the test split" in caplog.text
    single = assign_splits([_rec(0, "one")], test_fraction=0.01)
    assert single[0].split == "train"


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        assign_splits([], test_fraction=1.0)
    with pytest.raises(ValueError):
        assign_splits([], quick_per_source=-1)
    no_id = _rec(0)
    no_id.image_id = None
    with pytest.raises(ValueError, match="image_id"):
        assign_splits([no_id])
