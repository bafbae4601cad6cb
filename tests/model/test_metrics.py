import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
)

from hae_model.metrics import (
    krcc,
    level_metrics,
    mae,
    mse,
    plcc,
    rankdata,
    regression_metrics,
    rmse,
    srcc,
)

LEVELS = ["bad", "poor", "fair", "good", "excellent"]


@pytest.mark.parametrize("seed", range(5))
def test_score_metrics_equal_scipy_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    target = rng.uniform(0, 1, n)
    pred = np.clip(target * rng.uniform(-1, 1) + rng.normal(0, 0.3, n), 0, 1)
    if seed % 2:  # ties on both sides
        pred, target = np.round(pred, 1), np.round(target, 1)
    assert plcc(pred, target) == pytest.approx(stats.pearsonr(pred, target).statistic, abs=1e-12)
    assert srcc(pred, target) == pytest.approx(stats.spearmanr(pred, target).statistic, abs=1e-12)
    assert krcc(pred, target) == pytest.approx(stats.kendalltau(pred, target).statistic, abs=1e-12)
    assert mse(pred, target) == pytest.approx(mean_squared_error(target, pred), abs=1e-15)
    assert mae(pred, target) == pytest.approx(mean_absolute_error(target, pred), abs=1e-15)
    assert rmse(pred, target) == pytest.approx(math.sqrt(mean_squared_error(target, pred)))
    assert np.array_equal(rankdata(pred), stats.rankdata(pred))
    report = regression_metrics(pred, target)
    assert set(report) == {"n", "plcc", "srcc", "krcc", "mse", "mae", "rmse"}
    assert report["n"] == n


def test_correlations_are_signed():
    x = np.linspace(0, 1, 20)
    assert plcc(-x, x) == pytest.approx(-1.0)
    assert srcc(-x, x) == pytest.approx(-1.0)
    assert krcc(-x, x) == pytest.approx(-1.0)


def test_undefined_metrics_are_none_not_invented():
    assert plcc([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]) is None
    assert srcc([0.1], [0.2]) is None
    assert krcc([0.1, 0.2], [0.3, 0.3]) is None
    assert mse([], []) is None and rmse([], []) is None
    assert level_metrics([], []) == {
        "n": 0,
        "accuracy": None,
        "precision": None,
        "recall": None,
        "f1": None,
    }
    with pytest.raises(ValueError, match="finite"):
        plcc([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        mae([0.1], [0.1, 0.2])


@pytest.mark.parametrize("seed", range(5))
def test_level_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 200))
    # Seed 0 leaves some levels out entirely, as small sources do.
    choices = LEVELS[:3] if seed == 0 else LEVELS
    target = list(rng.choice(choices, n))
    pred = [t if rng.uniform() < 0.6 else str(rng.choice(LEVELS)) for t in target]
    got = level_metrics(pred, target)
    p, r, f, _ = precision_recall_fscore_support(target, pred, average="macro", zero_division=0)
    assert got["accuracy"] == pytest.approx(accuracy_score(target, pred))
    assert got["precision"] == pytest.approx(p)
    assert got["recall"] == pytest.approx(r)
    assert got["f1"] == pytest.approx(f)
    assert got["n"] == n
