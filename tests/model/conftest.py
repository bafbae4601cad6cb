"""Shared fixtures: one tiny InternVL checkpoint and one small export per test session."""

from __future__ import annotations

import pytest
import torch

from hae_model.tiny import build_tiny
from tests.model.fixtures import make_export


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    # The test machine has 2 cores shared with other jobs; two intra-op threads then stall on
    # each other (steps become 20x slower). One thread keeps the tiny model fast and steady.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random InternVL checkpoint (56 px tiles, 4 image tokens per tile)."""
    return build_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """An export with 30 overall rows (two sources) and 14 fine-grained rows."""
    return make_export(tmp_path_factory.mktemp("export"), n_overall=30, n_fine=14, seed=3)
