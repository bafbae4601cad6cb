"""Each source's default fixture, written once per session: the tests that only read it share it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hae_data.sources import write_fixture
from hae_data.sources.fixtures import FixtureManifest


@pytest.fixture(scope="session")
def written(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], FixtureManifest]:
    """``written(name)``: source ``name``'s default fixture (broken rows included), written on
    first use. Its folder is shared: a test that changes files writes a fixture of its own."""
    cache: dict[str, FixtureManifest] = {}

    def get(name: str) -> FixtureManifest:
        if name not in cache:
            cache[name] = write_fixture(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return get
