"""Label Studio export -> annotation rows -> the 12-dimension part of a build, with a screen."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import load_dataset

from annotation_schema import load_standard
from hae_data.annotate.ls_import import import_export
from hae_data.annotate.synthetic import synthetic_ratings, to_scale, write_export
from hae_data.sources.__main__ import main as sources_main
from hae_data.sources.fixtures import make_jpeg
from tests.annotate.helpers import build_fine_grained

KEYS = load_standard().keys


@pytest.fixture
def annotated(tmp_path):
    """24 images rated by 9 careful raters (ids 1-9) and one erratic one (id 10)."""
    root = tmp_path / "HB-new"
    noise = {str(r): 0.05 for r in range(1, 10)} | {"10": 0.6}
    df, _ = synthetic_ratings(24, noise, seed=3)
    for i, image in enumerate(sorted(df["image"].unique())):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / image).write_bytes(make_jpeg(i))
    points = to_scale(df[list(KEYS)].to_numpy())
    annotations = [
        {"image": image, "rater": int(rater), **dict(zip(KEYS, row.tolist(), strict=True))}
        for image, rater, row in zip(df["image"], df["rater"], points, strict=True)
    ]
    export = write_export(tmp_path / "export.json", annotations)
    assert len(import_export(export, root).rows) == 240
    return root, points, df


def test_build_from_an_import_with_the_rater_screen(annotated, tmp_path):
    root, points, df = annotated
    summary, source, _, rejections = build_fine_grained(
        root, tmp_path / "out", min_rater_correlation=0.5
    )
    assert [r.rater for r in source.reliability.excluded] == ["10"]
    screened = [r for r in rejections if r.reason == "unreliable_rater"]
    assert len(screened) == 24 and "rater 10 screened out: mean correlation" in screened[0].detail
    assert summary.rows["fine_grained"]["train"] + summary.rows["fine_grained"]["test"] == 24
    # The exported MOS is the mean of the nine kept raters' k/10.
    kept = df["rater"] != "10"
    expected = (
        df[kept]
        .assign(**{k: points[kept.to_numpy(), j] / 10 for j, k in enumerate(KEYS)})
        .groupby("image")[list(KEYS)]
        .mean()
    )
    for split in ("train", "test"):
        for row in load_dataset(
            str(tmp_path / "out"), "fine_grained", split=split, cache_dir=str(tmp_path / "hf")
        ):
            assert row["rater_count"] == 9
            want = expected.loc[row["file_name"].removeprefix("images/")].to_numpy()
            np.testing.assert_allclose(row["dimension_scores"], want, atol=1e-6)
    # Agreement on the card, in stats.json and in the build's table (stats.md).
    card = (tmp_path / "out" / "README.md").read_text()
    assert "### Rater agreement (12-dimension part)" in card
    assert "| Overall Aesthetic |" in card
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    alphas = [d["alpha"] for d in stats["reliability"]["sources"]["humanbeauty_50k"]["dimensions"]]
    assert min(alphas) > 0.8  # nine careful raters left: high agreement
    assert "### Rater agreement" in (tmp_path / "out" / "stats.md").read_text()
    assert stats["reliability"]["sources"]["humanbeauty_50k"]["screened_rating_rows"] == 24
    assert "The rater screen left out 24 rating row(s)" in card


def test_without_the_screen_the_erratic_rater_lowers_agreement(annotated, tmp_path):
    root, _, _ = annotated
    _, source, records, _ = build_fine_grained(root, tmp_path / "out")
    assert not source.reliability.excluded
    assert {r.rater_count for r in records} == {10}
    by = {r.rater: r for r in source.reliability.raters}
    assert by["10"].correlation < 0.5 < min(by[str(r)].correlation for r in range(1, 10))
    screened, *_ = build_fine_grained(root, tmp_path / "out2", min_rater_correlation=0.5)
    unscreened = json.loads((tmp_path / "out" / "stats.json").read_text())["reliability"]
    with_screen = screened.stats["reliability"]
    for a, b in zip(
        unscreened["sources"]["humanbeauty_50k"]["dimensions"],
        with_screen["sources"]["humanbeauty_50k"]["dimensions"],
        strict=True,
    ):
        assert b["alpha"] > a["alpha"]


def test_inspect_screen_option(annotated, capsys):
    root, _, _ = annotated
    argv = ["inspect", "humanbeauty_50k", str(root), "-q", "--json"]
    assert sources_main([*argv, "-o", "min_rater_correlation=0.5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rejected_by_reason"] == {"unreliable_rater": 24}
    assert report["reliability"]["excluded"] == ["10"]
    assert sources_main([*argv[:-1], "-o", "min_rater_correlation=0.5"]) == 0
    assert "EXCLUDED: mean correlation" in capsys.readouterr().out
