import math

import numpy as np
import pytest

from hae_data.levels import level_index, score_to_level


@pytest.mark.parametrize(
    "score, level",
    [
        (0.0, "bad"),
        (0.1, "bad"),
        (0.2, "bad"),
        (0.2000001, "poor"),
        (0.4, "poor"),
        (0.4000001, "fair"),
        (0.6, "fair"),
        (0.8, "good"),
        (0.8000001, "excellent"),
        (1.0, "excellent"),
        (1, "excellent"),
        (0, "bad"),
    ],
)
def test_right_closed_bins(score, level):
    assert score_to_level(score) == level


@pytest.mark.parametrize("bad", [math.nan, -1e-9, 1.0000001, math.inf, -math.inf])
def test_out_of_range_and_nan_raise(bad):
    with pytest.raises(ValueError):
        score_to_level(bad)


def test_level_index_round_trip():
    assert [level_index(w) for w in ("bad", "poor", "fair", "good", "excellent")] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="unknown level"):
        level_index("great")


NINE_RATINGS = [0.5, 0.7, 0.55, 0.65, 0.6, 0.5, 0.7, 0.6, 0.6]  # mean exactly 0.6 in decimal


def test_a_boundary_mean_gets_the_boundary_level_despite_float_noise():
    mean = float(np.mean(NINE_RATINGS))
    assert mean != 0.6  # 0.6000000000000001 in binary floating point (numpy's and pandas' mean)
    assert score_to_level(mean) == "fair"
    assert score_to_level(0.8 + 1e-12) == "good" and score_to_level(0.2 - 1e-12) == "bad"
    assert score_to_level(0.6 + 1e-9) == "good"  # a real difference at 9 decimals still counts
    assert score_to_level(1.0 + 1e-12) == "excellent"


def test_levels_agree_with_exact_decimal_means_on_rating_grids():
    """Means of 9-12 ratings on the usual grids bin as their exact (rational) mean does."""
    import random
    from fractions import Fraction

    rng = random.Random(0)
    grids = [[k / 10 for k in range(11)], [k / 20 for k in range(21)], [k / 4 for k in range(5)]]
    for _ in range(3000):
        grid = rng.choice(grids)
        ratings = [rng.choice(grid) for _ in range(rng.randint(9, 12))]
        exact = sum(Fraction(str(r)) for r in ratings) / len(ratings)
        words = ("bad", "poor", "fair", "good", "excellent")
        expected = words[max(0, -(-exact * 5 // 1) - 1)]  # z with (z-1)/5 < s <= z/5
        assert score_to_level(float(np.mean(ratings))) == expected, ratings
