"""A full-size ``AVA.txt`` (255,500 lines) loads completely. Slow: run with ``-m slow``.

It prints the load time (the figure quoted in the report); no timing is asserted, since speed
claims belong in benchmarks, not in unit tests.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from hae_data.records import Record
from hae_data.sources.ava import AvaSource

N_LINES = 255_500


@pytest.mark.slow
def test_full_size_ava_txt_streams_completely(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    votes = rng.integers(0, 40, size=(N_LINES, 10))
    with open(tmp_path / "AVA.txt", "w") as fh:
        for i in range(N_LINES):
            counts = " ".join(map(str, votes[i]))
            fh.write(f"{i + 1} {100000 + i} {counts} {i % 67} 0 {i % 1400}\n")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(N_LINES):  # empty files: the loader checks existence, it does not decode
        os.close(os.open(images / f"{100000 + i}.jpg", os.O_CREAT | os.O_WRONLY))

    start = time.perf_counter()
    kept = 0
    last: Record | None = None
    for item in AvaSource(tmp_path).iter_items():
        assert isinstance(item, Record)
        kept += 1
        last = item
    elapsed = time.perf_counter() - start
    print(f"\nAVA.txt {N_LINES} lines: {elapsed:.2f} s ({N_LINES / elapsed:,.0f} lines/s)")
    assert kept == N_LINES
    assert last is not None
    expected = (votes[-1] * np.arange(1, 11)).sum() / votes[-1].sum()
    assert last.raw_score == pytest.approx(expected)
