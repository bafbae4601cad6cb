"""Score -> ITU rating level (SPEC 2.5), with the thresholds read from the standard."""

from __future__ import annotations

import math
from bisect import bisect_left

from annotation_schema import load_standard

__all__ = ["level_index", "score_to_level"]


def score_to_level(score: float) -> str:
    """The level word of a score in [0,1]: level z when ``(z-1)/5 < s <= z/5``; 0 is the lowest.

    So 0.2 is ``bad``, 0.2000001 is ``poor`` and 1.0 is ``excellent``. NaN or a score outside
    [0,1] raises ``ValueError``.
    """
    std = load_standard()
    s = float(score)
    if math.isnan(s) or s < 0.0 or s > 1.0:
        raise ValueError(f"score must be a number in [0, 1], got {score!r}")
    # bisect_left finds the first upper bound >= s: right-closed bins, and 0 lands in the first.
    return std.level_words[bisect_left(std.level_upper_bounds, s)]


def level_index(level: str) -> int:
    """1-based index of a level word (``bad`` = 1 ... ``excellent`` = 5)."""
    words = load_standard().level_words
    try:
        return words.index(level) + 1
    except ValueError:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(words)}") from None
