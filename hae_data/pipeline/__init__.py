"""The build's stages as plain functions over records, for the Prefect flow (or any runner).

Data moves one way: load (per source) -> face filter (per shard, resumable) -> finalise
(de-duplicate, normalise per source, levels, QA, split) -> export. Each stage returns a
:class:`StageResult` (what went on, what was dropped and why), so nothing is lost on the way.

Split by job: :mod:`~hae_data.pipeline.spec` (what to build, the options checked, the folders
held, the load stage), :mod:`~hae_data.pipeline.face_stage` (shards, plans, completion files,
detection) and :mod:`~hae_data.pipeline.finalising`.
"""

from hae_data.pipeline.face_stage import (
    FaceSettings,
    ShardOutcome,
    ShardStore,
    detect_shard,
    plan_shards,
    read_plan,
    remove_plans,
    shard_bounds,
    shard_fingerprint,
    write_plans,
)
from hae_data.pipeline.finalising import drop_duplicates, finalise
from hae_data.pipeline.spec import (
    BuildSpec,
    check_build_options,
    load_source,
    open_build,
    read_build_spec,
)
from hae_data.pipeline.stage_result import StageResult

__all__ = [
    "BuildSpec",
    "FaceSettings",
    "ShardOutcome",
    "ShardStore",
    "StageResult",
    "check_build_options",
    "detect_shard",
    "drop_duplicates",
    "finalise",
    "load_source",
    "open_build",
    "plan_shards",
    "read_build_spec",
    "read_plan",
    "remove_plans",
    "shard_bounds",
    "shard_fingerprint",
    "write_plans",
]
