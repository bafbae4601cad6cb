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
