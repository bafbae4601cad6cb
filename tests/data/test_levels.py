import math

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
