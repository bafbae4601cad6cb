"""Rater reliability against independent computations on ratings with known rater noise."""

from __future__ import annotations

import math
from collections import defaultdict

import krippendorff
import numpy as np
import pandas as pd
import pytest

from annotation_schema import load_standard
from hae_data.annotate.synthetic import synthetic_ratings
from hae_data.records import Record
from hae_data.reliability import (
    alpha_from_unit_stats,
    assess_reliability,
    bootstrap_alpha,
    krippendorff_alpha,
    rater_agreement,
    records_reliability,
    reliability_markdown,
    unit_stats,
    unit_stats_from_summary,
)

KEYS = load_standard().keys
NAN = math.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1-5 with gaps; the paper gives alpha = 0.849 for the interval metric.
KRIPPENDORFF_EXAMPLE = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)


def test_closed_form_matches_the_published_example_and_the_package():
    m, s1, s2 = unit_stats(KRIPPENDORFF_EXAMPLE)
    closed = float(alpha_from_unit_stats(m, s1, s2))
    assert closed == pytest.approx(0.849, abs=5e-4)
    package = krippendorff.alpha(
        reliability_data=KRIPPENDORFF_EXAMPLE, level_of_measurement="interval"
    )
    assert closed == pytest.approx(package, abs=1e-9)
    alpha, method = krippendorff_alpha(KRIPPENDORFF_EXAMPLE)
    assert method.startswith("krippendorff")
    assert alpha == pytest.approx(closed, abs=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_closed_form_equals_the_package_on_random_sparse_ratings(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 11, size=(7, 60)).astype(float) / 10
    x[rng.random(x.shape) < 0.4] = np.nan
    m, s1, s2 = unit_stats(x)
    package = krippendorff.alpha(reliability_data=x[:, m >= 2], level_of_measurement="interval")
    assert float(alpha_from_unit_stats(m, s1, s2)) == pytest.approx(package, abs=1e-9)


def test_summary_statistics_give_the_same_alpha_as_the_ratings():
    """Mean, sample std and count per image are enough: what the card computes from rows."""
    rng = np.random.default_rng(4)
    x = rng.normal(0.5, 0.2, size=(9, 80))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[1:, :5] = np.nan  # five images with a single rater: no spread, not pairable
    counts = (~np.isnan(x)).sum(axis=0)
    means = pd.DataFrame(x).mean().to_numpy()
    stds = pd.DataFrame(x).std(ddof=1).to_numpy()  # NaN for the single-rater images
    assert np.isnan(stds[:5]).all()
    direct = alpha_from_unit_stats(*unit_stats(x))
    summary = alpha_from_unit_stats(*unit_stats_from_summary(means, stds, counts))
    assert float(summary) == pytest.approx(float(direct), abs=1e-12)


def test_alpha_recovers_the_known_signal_to_noise_ratio():
    # truth sd 0.2 and rater noise sd 0.1: alpha = 0.04 / (0.04 + 0.01) = 0.8 in expectation.
    df, _ = synthetic_ratings(600, {f"r{i}": 0.1 for i in range(9)}, seed=5, coverage=0.7)
    report = assess_reliability(df, KEYS, bootstrap=300)
    alphas = [d.alpha for d in report.dimensions]
    assert np.mean(alphas) == pytest.approx(0.8, abs=0.02)
    for d in report.dimensions:
        assert d.ci_low < d.alpha < d.ci_high
        assert d.ci_high - d.ci_low < 0.08
        assert d.images == 600
    # How many of the 12 intervals hold the true value: a 95% interval misses about 1 in 20.
    covered = sum(d.ci_low <= 0.8 <= d.ci_high for d in report.dimensions)
    assert covered >= 9


def test_alpha_falls_with_noise_and_the_package_agrees_on_every_dimension():
    clean, _ = synthetic_ratings(110, {f"r{i}": 0.05 for i in range(5)}, seed=6, dims=2)
    noisy, _ = synthetic_ratings(110, {f"r{i}": 0.3 for i in range(5)}, seed=6, dims=2)
    keys = KEYS[:2]
    a_clean = assess_reliability(clean, keys, bootstrap=50)
    a_noisy = assess_reliability(noisy, keys, bootstrap=50)
    for c, n in zip(a_clean.dimensions, a_noisy.dimensions, strict=True):
        assert c.alpha > 0.9 > 0.5 > n.alpha
    # 550 distinct continuous values: past the package's comfortable domain, so the closed
    # form answers; the package itself, run here directly, is the independent check.
    assert "closed form" in a_noisy.method
    for j, key in enumerate(keys):
        matrix = noisy.pivot(index="rater", columns="image", values=key).to_numpy()
        expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="interval")
        assert a_noisy.dimensions[j].alpha == pytest.approx(expected, abs=1e-9)
    # On a rating scale (11 values) the package computes the point estimate itself.
    on_scale = noisy.assign(**{k: noisy[k].clip(0, 1).round(1) for k in keys})
    method = assess_reliability(on_scale, keys, bootstrap=10).method
    assert "krippendorff" in method and "closed form" not in method


def _naive_loo(df, keys):
    """Leave-one-out correlations by plain loops: the independent computation."""
    by_image = defaultdict(dict)
    for row in df.to_dict("records"):
        by_image[row["image"]][row["rater"]] = row
    out = {}
    for rater in sorted(df["rater"].unique()):
        per = {}
        for key in keys:
            xs, ys = [], []
            for rows in by_image.values():
                if rater not in rows or len(rows) < 2:
                    continue
                xs.append(rows[rater][key])
                ys.append(np.mean([r[key] for who, r in rows.items() if who != rater]))
            per[key] = float(np.corrcoef(xs, ys)[0, 1])
        out[rater] = per
    return out


def test_leave_one_out_correlation_matches_loops_and_theory():
    noise = {"good1": 0.05, "good2": 0.05, "good3": 0.05, "good4": 0.05, "noisy": 0.4}
    df, _ = synthetic_ratings(300, noise, seed=7, coverage=0.8, dims=4)
    keys = KEYS[:4]
    got = {r.rater: r for r in rater_agreement(df, keys)}
    naive = _naive_loo(df, keys)
    for rater, per in naive.items():
        for key in keys:
            assert got[rater].per_dimension[key] == pytest.approx(per[key], abs=1e-12)
        assert got[rater].correlation == pytest.approx(np.mean(list(per.values())), abs=1e-12)
    # Theory, every rater on every image: corr(T + e_r, T + mean of the others' noise).
    var_t = 0.2**2

    def expected(rater):
        others = [s for who, s in noise.items() if who != rater]
        var_mean = sum(s**2 for s in others) / len(others) ** 2
        return var_t / math.sqrt((var_t + noise[rater] ** 2) * (var_t + var_mean))

    assert got["noisy"].correlation == pytest.approx(expected("noisy"), abs=0.06)
    assert got["good1"].correlation == pytest.approx(expected("good1"), abs=0.06)
    assert got["noisy"].correlation < 0.6 < got["good1"].correlation


def test_screen_excludes_noisy_and_constant_raters_with_reasons():
    noise = {f"g{i}": 0.05 for i in range(6)} | {"noisy": 0.5}
    df, _ = synthetic_ratings(120, noise, seed=8, dims=12)
    lazy = df[df["rater"] == "g0"].assign(rater="lazy")
    lazy[list(KEYS)] = 0.5  # the same rating for everything
    few = df[df["rater"] == "g1"].head(4).assign(rater="newcomer")
    report = assess_reliability(
        pd.concat([df, lazy, few]), KEYS, bootstrap=20, min_correlation=0.7, min_images=10
    )
    by = {r.rater: r for r in report.raters}
    assert {r.rater for r in report.excluded} == {"noisy", "lazy"}
    assert "< 0.7" in by["noisy"].reason and "correlation" in by["noisy"].reason
    assert "never vary" in by["lazy"].reason
    assert not by["newcomer"].excluded and "not judged" in by["newcomer"].reason
    assert not by["g2"].excluded and by["g2"].reason is None
    text = report.to_text()
    assert "EXCLUDED" in text and "noisy" in text and "2 excluded" in text
    assert report.to_dict()["excluded"] == sorted(["lazy", "noisy"])


def test_duplicate_pairs_are_left_out_and_noted():
    df, _ = synthetic_ratings(30, {"a": 0.1, "b": 0.1, "c": 0.1}, seed=9, dims=2)
    doubled = pd.concat([df, df.head(2)])
    report = assess_reliability(doubled, KEYS[:2], bootstrap=10)
    assert report.duplicates_dropped == 4
    clean = assess_reliability(df.iloc[2:], KEYS[:2], bootstrap=10)
    assert report.dimensions[0].alpha == pytest.approx(clean.dimensions[0].alpha)
    assert "rated twice" in report.notes[0]


def test_bootstrap_is_deterministic_and_validates_its_options():
    x = np.random.default_rng(10).normal(size=(5, 40))
    stats = unit_stats(x)
    assert np.array_equal(
        bootstrap_alpha(*stats, replicates=50), bootstrap_alpha(*stats, replicates=50)
    )
    with pytest.raises(ValueError, match="replicates"):
        bootstrap_alpha(*stats, replicates=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_alpha(*stats, confidence=1.5)


def test_undefined_alpha_is_none_not_a_number():
    df = pd.DataFrame([{"image": "a", "rater": r, **dict.fromkeys(KEYS, 0.5)} for r in ("x", "y")])
    report = assess_reliability(df, KEYS, bootstrap=10)
    assert all(d.alpha is None and d.ci_low is None for d in report.dimensions)
    assert report.raters[0].correlation is None


def test_records_reliability_for_the_card():
    df, _ = synthetic_ratings(80, {f"r{i}": 0.1 for i in range(9)}, seed=11)
    grouped = df.groupby("image")
    means, stds = grouped[list(KEYS)].mean(), grouped[list(KEYS)].std(ddof=1)
    records = [
        Record(
            source="humanbeauty_50k",
            file_name=image,
            image_path=image,
            part="fine_grained",
            dimension_scores=means.loc[image].tolist(),
            dimension_std=stds.loc[image].tolist(),
            rater_count=9,
        )
        for image in means.index
    ]
    overall = Record(source="ava", file_name="x.jpg", image_path="x.jpg", raw_score=5.0)
    summary = records_reliability([*records, overall], bootstrap=100)
    direct = assess_reliability(df, KEYS, bootstrap=100)
    entry = summary["sources"]["humanbeauty_50k"]
    assert entry["images"] == 80
    for got, want in zip(entry["dimensions"], direct.dimensions, strict=True):
        assert got["alpha"] == pytest.approx(want.alpha, abs=1e-9)
        assert got["ci_low"] < got["alpha"] < got["ci_high"]
    lines = reliability_markdown(summary)
    assert "### Rater agreement (12-dimension part)" in lines
    assert sum(line.startswith("| Facial Brightness |") for line in lines) == 1
    assert records_reliability([overall]) is None and reliability_markdown(None) == []


def test_text_report_lists_the_least_agreeing_raters_first():
    noise = {f"r{i:02d}": 0.02 * (i + 1) for i in range(20)}
    df, _ = synthetic_ratings(60, noise, seed=12, dims=2)
    text = assess_reliability(df, KEYS[:2], bootstrap=10).to_text()
    listed = [line.split(":")[0].strip() for line in text.splitlines() if ": r=" in line]
    assert len(listed) == 15 and listed[0] == "r19"  # the noisiest rater first
    assert "... 5 more, agreeing more (all with --json)" in text
