"""Which sources a model may learn from and which only evaluate it (SPEC 3.4, paper Table 4).

APDDv2 and LAPIS are zero-shot sets: HumanAesExpert never sees them in training, and reports
on all of their (face-filtered) images. So they are built on their own, into an export whose
every row is in the ``test`` split, and a build that names them next to a training source is
refused before any work, rather than quietly splitting them 87/13 like a training source.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["check_build_sources", "is_zero_shot"]


def is_zero_shot(source: str) -> bool:
    """Whether ``source`` is an evaluation-only (zero-shot) set."""
    from hae_data.sources import ZERO_SHOT_SOURCES

    return source in ZERO_SHOT_SOURCES


def check_build_sources(names: Iterable[str]) -> None:
    """Raise ``ValueError`` when zero-shot sets are mixed with sources that are trained on."""
    names = sorted(set(names))
    zero = [n for n in names if is_zero_shot(n)]
    training = [n for n in names if not is_zero_shot(n)]
    if zero and training:
        raise ValueError(
            f"{zero} are zero-shot evaluation sets (SPEC 3.4) and cannot be training sources: "
            f"build them without {training}, into an output folder of their own (every row "
            "goes to its test split), and evaluate on that folder"
        )
