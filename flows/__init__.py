"""Prefect flows around ``hae_data``: ``build-humanbeauty`` and its deployment."""

import logging
import os

# The in-process temporary server otherwise sends usage analytics at start-up; on machines
# without internet access that fails and logs an error. A value the user set wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The in-process CLI starts a temporary server that must answer within this many seconds. The
# default 20 s is not enough on a loaded machine (measured: 44 s under load 4-7; FACTS.md).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
# The library's own log lines (per-source counts, shard progress, export) reach the flow-run
# logs only through Prefect's extra loggers; every process that runs these flows (the CLI, a
# served deployment's runs, Dask workers) imports this package first.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "hae_data")
# ... and outside a flow run (the library called directly in the same process) they go to the
# console only, without a warning per line that there is no run to send them to.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# At INFO for the library only: the root logger stays at WARNING, so dependencies stay quiet.
if logging.getLogger("hae_data").level == logging.NOTSET:
    logging.getLogger("hae_data").setLevel(logging.INFO)
