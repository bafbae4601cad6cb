"""Test-wide settings: everything offline, caches in a temporary folder, Prefect quiet."""

from __future__ import annotations

import os
import tempfile

# Set before any test module imports datasets / huggingface_hub / prefect, which read them once.
_CACHE = tempfile.mkdtemp(prefix="hae-test-cache-")
os.environ.setdefault("HF_HOME", os.path.join(_CACHE, "hf"))
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The flows package's own defaults (library loggers routed into flow-run logs, a patient
# temporary server): imported here, before any test module imports prefect.
import flows  # noqa: E402, F401

#: The longest test files, longest first (about 65, 60, 45 and 10 s on two quiet cores). With
#: ``-n 2 --dist loadfile`` each process starts with the first files of the list, so the long
#: ones run side by side and the short ones fill in after, instead of two long ones ending up
#: one after the other at the end.
LONGEST_FIRST = (
    "tests/flows/test_build.py",
    "tests/flows/test_deployment.py",
    "tests/model/test_train.py",
    "tests/model/test_hub_model.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    """Put the files of ``LONGEST_FIRST`` first, in that order; the rest keep theirs."""

    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
