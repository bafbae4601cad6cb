"""Score -> ITU rating level (SPEC 2.5), with the thresholds read from the standard."""

from __future__ import annotations

import math
from bisect import bisect_left

from annotation_schema import load_standard

__all__ = ["SCORE_DECIMALS", "level_index", "score_to_level"]

#: Scores are binned (and the MOS stored) rounded to this many decimals. A mean that is exactly a
#: boundary in decimal, say nine ratings averaging 0.6, comes out of binary floating point as
#: 0.6000000000000001; rounding first gives it the boundary's level. No rating scale in use has
#: anywhere near 9 significant decimals, so the rounding never merges two real scores.
SCORE_DECIMALS = 9


def score_to_level(score: float) -> str:
    """The level word of a score in [0,1]: level z when ``(z-1)/5 < s <= z/5``; 0 is the lowest.

    So 0.2 is ``bad``, 0.2000001 is ``poor`` and 1.0 is ``excellent``. The bin is decided on the
    score rounded to :data:`SCORE_DECIMALS` decimals (SPEC 2.5), so 0.6000000000000001 is
    ``fair`` like 0.6. NaN or a score outside [0,1] raises ``ValueError``.
    """
    std = load_standard()
    s = float(score)
    if not math.isnan(s):
        s = round(s, SCORE_DECIMALS)
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
