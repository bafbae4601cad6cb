"""Prefect flows around ``hae_data``: ``build-humanbeauty`` and its deployment."""

import os

# The in-process temporary server otherwise sends usage analytics at start-up; on machines
# without internet access that fails and logs an error. A value the user set wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
