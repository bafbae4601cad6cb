import math

import numpy as np
import pandas as pd
import pytest

from hae_data.records import Record
from hae_data.scores import (
    ConstantScoresError,
    aggregate_mos,
    apply_levels,
    minmax_normalise,
    normalise_by_source,
)


def test_minmax_maps_to_unit_interval():
    out = minmax_normalise([2.0, 4.0, 3.0, 10.0])
    np.testing.assert_allclose(out, [0.0, 0.25, 0.125, 1.0])


def test_minmax_constant_scores_raise_with_the_source_name():
    with pytest.raises(ConstantScoresError, match=r"'ava'.*at least two distinct"):
        minmax_normalise([5.0, 5.0, 5.0], source="ava")
    with pytest.raises(ConstantScoresError):
        minmax_normalise([7.0])


def test_minmax_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        minmax_normalise([1.0, math.nan])
    assert minmax_normalise([]).size == 0


def _rec(source, raw, part="overall", name=None):
    return Record(
        source=source, file_name=name or f"{source}-{raw}", image_path="x", part=part, raw_score=raw
    )


def test_normalise_by_source_is_per_source_and_rejects_constant_sources():
    recs = [
        _rec("ava", 1.0),
        _rec("ava", 3.0),
        _rec("ava", 2.0),
        _rec("baid", 5.0, name="b1"),
        _rec("baid", 5.0, name="b2"),
        _rec("humanbeauty_50k", 0.7, part="fine_grained"),
    ]
    recs[-1].score = 0.7
    kept, rejected = normalise_by_source(recs)
    scores = {r.file_name: r.score for r in kept}
    assert scores == {"ava-1.0": 0.0, "ava-3.0": 1.0, "ava-2.0": 0.5, "humanbeauty_50k-0.7": 0.7}
    assert sorted(r.file_name for r in rejected) == ["b1", "b2"]
    assert {r.reason for r in rejected} == {"constant_scores"}
    assert all("baid" in r.detail for r in rejected)


def test_normalise_by_source_with_an_empty_input():
    assert normalise_by_source([]) == ([], [])


def test_apply_levels_sets_overall_and_dimension_levels():
    rec = _rec("humanbeauty_50k", 0.5, part="fine_grained")
    rec.score = 0.5
    rec.dimension_scores = [0.0, 0.2, 0.2000001, 0.6, 1.0] + [0.5] * 7
    apply_levels(rec)
    assert rec.level == "fair"
    assert rec.dimension_levels[:5] == ["bad", "bad", "poor", "fair", "excellent"]
    with pytest.raises(ValueError):
        apply_levels(_rec("ava", 1.0))


def _ratings(n_raters, image="img.jpg", cols=("q",), start=0.1):
    rows = []
    for r in range(n_raters):
        rows.append({"image": image, "rater": f"r{r}", **{c: start + 0.05 * r for c in cols}})
    return rows


def test_mos_mean_std_and_count():
    df = pd.DataFrame(_ratings(9) + _ratings(12, image="b.jpg"))
    res = aggregate_mos(df, ["q"], source="s")
    assert res.rejections == []
    vals = [0.1 + 0.05 * r for r in range(9)]
    assert res.table.loc["img.jpg", "q"] == pytest.approx(np.mean(vals))
    assert res.table.loc["img.jpg", "q_std"] == pytest.approx(np.std(vals, ddof=1))
    assert res.table.loc["img.jpg", "rater_count"] == 9
    assert res.table.loc["b.jpg", "rater_count"] == 12


def test_mos_mean_is_stored_without_float_noise():
    ratings = [0.5, 0.7, 0.55, 0.65, 0.6, 0.5, 0.7, 0.6, 0.6]  # mean exactly 0.6 in decimal
    df = pd.DataFrame([{"image": "a.jpg", "rater": f"r{i}", "q": v} for i, v in enumerate(ratings)])
    assert np.mean(ratings) != 0.6
    assert aggregate_mos(df, ["q"], source="s").table.loc["a.jpg", "q"] == 0.6


def test_eight_raters_are_too_few_nine_are_enough():
    df = pd.DataFrame(_ratings(8, "eight.jpg") + _ratings(9, "nine.jpg"))
    res = aggregate_mos(df, ["q"], source="s")
    assert list(res.table.index) == ["nine.jpg"]
    [rej] = res.rejections
    assert (rej.file_name, rej.reason, rej.stage) == ("eight.jpg", "too_few_raters", "mos")
    assert "8 valid" in rej.detail
    assert list(aggregate_mos(df, ["q"], source="s", min_raters=8).table.index) == [
        "eight.jpg",
        "nine.jpg",
    ]


def test_duplicate_rater_is_rejected_not_averaged():
    rows = _ratings(10)
    rows.append({"image": "img.jpg", "rater": "r3", "q": 0.99})
    res = aggregate_mos(pd.DataFrame(rows), ["q"], source="s")
    dups = [r for r in res.rejections if r.reason == "duplicate_rating"]
    assert len(dups) == 2 and all("r3" in r.detail for r in dups)
    assert res.table.loc["img.jpg", "rater_count"] == 9
    expected = np.mean([0.1 + 0.05 * r for r in range(10) if r != 3])
    assert res.table.loc["img.jpg", "q"] == pytest.approx(expected)


def test_non_numeric_out_of_range_and_empty_ids_are_rejected_with_reasons():
    rows = _ratings(9, cols=("q", "w"))
    rows += [
        {"image": "img.jpg", "rater": "x1", "q": "abc", "w": 0.5},
        {"image": "img.jpg", "rater": "x2", "q": 0.5, "w": None},
        {"image": "img.jpg", "rater": "x3", "q": 1.5, "w": 0.5},
        {"image": "img.jpg", "rater": "x4", "q": -0.1, "w": 0.5},
        {"image": "", "rater": "x5", "q": 0.5, "w": 0.5},
        {"image": "img.jpg", "rater": None, "q": 0.5, "w": 0.5},
    ]
    res = aggregate_mos(pd.DataFrame(rows), ["q", "w"], source="s")
    reasons = sorted(r.reason for r in res.rejections)
    assert reasons == [
        "malformed_rating_row",
        "malformed_rating_row",
        "non_numeric_rating",
        "non_numeric_rating",
        "rating_out_of_range",
        "rating_out_of_range",
    ]
    assert any("q='abc'" in r.detail for r in res.rejections)
    assert any("q=1.5" in r.detail for r in res.rejections)
    assert res.table.loc["img.jpg", "rater_count"] == 9
    assert res.table["q"].between(0, 1).all()


def test_image_whose_ratings_are_all_bad_is_rejected_as_too_few():
    rows = [{"image": "bad.jpg", "rater": f"r{i}", "q": 7} for i in range(9)]
    res = aggregate_mos(pd.DataFrame(rows), ["q"], source="s")
    assert res.table.empty
    assert [r.reason for r in res.rejections].count("too_few_raters") == 1
    assert [r.reason for r in res.rejections].count("rating_out_of_range") == 9


def test_mos_custom_scale_and_columns():
    rows = [{"img": "a", "who": i, "score": s} for i, s in enumerate([1, 2, 3, 4, 5])]
    res = aggregate_mos(
        pd.DataFrame(rows),
        ["score"],
        source="scut",
        scale=(1, 5),
        min_raters=5,
        image_col="img",
        rater_col="who",
    )
    assert res.table.loc["a", "score"] == 3.0
    with pytest.raises(KeyError, match="rating table lacks"):
        aggregate_mos(pd.DataFrame(rows), ["score"], source="scut")
    with pytest.raises(ValueError):
        aggregate_mos(
            pd.DataFrame(rows),
            ["score"],
            source="s",
            min_raters=0,
            image_col="img",
            rater_col="who",
        )


def test_mos_on_an_empty_table():
    res = aggregate_mos(pd.DataFrame(columns=["image", "rater", "q"]), ["q"], source="s")
    assert res.table.empty and res.rejections == []


def test_release_scores_pass_through_when_some_images_drop(tmp_path):
    """SPEC 2.4: label.jsonl scores are the authors' normalised values; a dropped image (here
    the files of the source's 0.0 and 1.0 are missing) must not stretch the others."""
    import json

    from hae_data.pipeline import finalise
    from hae_data.sources.fixtures import make_jpeg
    from hae_data.sources.label_jsonl import ReleaseSource

    released = {"a.jpg": 0.0, "b.jpg": 0.30, "c.jpg": 0.55, "d.jpg": 0.81, "e.jpg": 1.0}
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i, (name, score) in enumerate(released.items()):
        lines.append(json.dumps({"image_name": name, "source": "AVA", "score": score}))
        if name not in ("a.jpg", "e.jpg"):
            (images / name).write_bytes(make_jpeg(i))
    (tmp_path / "label.jsonl").write_text("\n".join(lines) + "\n")
    records, rejections = ReleaseSource(tmp_path).load()
    assert sorted(r.reason for r in rejections) == ["missing_file", "missing_file"]
    for rec in records:
        rec.image_id = rec.file_name
    final = finalise(records)
    got = {r.file_name: (r.score, r.level) for r in final.records}
    # Re-normalised (the code before issue 11) they were 0.00 (bad), 0.49 (fair), 1.00.
    assert got == {
        "images/b.jpg": (0.30, "poor"),
        "images/c.jpg": (0.55, "fair"),
        "images/d.jpg": (0.81, "excellent"),
    }
    assert {r.raw_score for r in final.records} == {0.30, 0.55, 0.81}
