"""The build spec: which sources to read (a config file and explicit arguments merged and
checked), the build's scalar options checked before any work, the folders a build holds, and
the load stage that reads one source."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hae_data.near_duplicates import check_max_distance
from hae_data.outdir import BuildLock, ExportFolder, check_not_overlapping
from hae_data.pipeline.face_stage import remove_plans
from hae_data.pipeline.stage_result import StageResult
from hae_data.records import Rejection

__all__ = ["BuildSpec", "check_build_options", "load_source", "open_build", "read_build_spec"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildSpec:
    """Which sources to build from: name -> (root folder, loader options); ``settings``: build
    settings the config fixes, which win over the flow's defaults (``near_duplicate_distance``)."""

    sources: dict[str, tuple[str, dict[str, Any]]]
    settings: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Fail fast, before any work, on unknown names, bad options or missing folders."""
        from hae_data.sources import SOURCES

        if not self.sources:
            raise ValueError("no sources given: name at least one source and its root folder")
        from hae_data.protocol import check_build_sources
        from hae_data.scores import check_min_raters
        from hae_data.sources import TRAINING_SOURCES

        check_build_sources(self.sources)
        raw = sorted(set(self.sources) & set(TRAINING_SOURCES))
        if "humanbeauty_release" in self.sources and raw:
            # The release's rows carry their original source's name with scores already in
            # [0,1]: normalised together with the raw loader's 1-10 scores they would be wrong.
            raise ValueError(
                f"humanbeauty_release cannot be built together with the raw sources {raw}: "
                "its rows already carry those sources' normalised scores"
            )
        for name, (root, options) in self.sources.items():
            if name not in SOURCES:
                raise ValueError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
            if not Path(root).is_dir():
                raise ValueError(f"source {name!r}: root folder {root!r} does not exist")
            allowed = _loader_options(SOURCES[name])
            unknown = set(options) - allowed
            if unknown:
                raise ValueError(
                    f"source {name!r}: unknown option(s) {sorted(unknown)}; "
                    f"allowed: {sorted(allowed) or 'none'}"
                )
            if "min_raters" in options:
                # Checked here too, not first in the loader, after the output folder is held.
                try:
                    check_min_raters(options["min_raters"])
                except ValueError as exc:
                    raise ValueError(f"source {name!r}: {exc}") from None


def check_build_options(
    *,
    shard_size: int,
    test_fraction: float,
    quick_per_source: int,
    shard_max_mb: int,
    row_group_max_mb: int,
    task_runner: str,
    dask_workers: int,
    hub_repo_id: str | None = None,
    near_duplicate_distance: int | None = None,
    min_raters: int | None = None,
) -> None:
    """Check a build's scalar options before any work: ``ValueError`` says which and why.

    (The sources, the face settings and the output folder have checks of their own:
    :meth:`BuildSpec.validate`, :meth:`FaceSettings.validate`,
    :class:`hae_data.outdir.ExportFolder`.) With ``hub_repo_id``, the repository id's form and
    that a token is available are checked too, not discovered after the whole build.
    """
    from hae_data.scores import check_min_raters
    from hae_data.split import check_split_options

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    check_split_options(test_fraction, quick_per_source)
    if shard_max_mb < 1 or row_group_max_mb < 1:
        raise ValueError(
            f"shard_max_mb and row_group_max_mb must be >= 1, got {shard_max_mb}, "
            f"{row_group_max_mb}"
        )
    if task_runner not in ("threads", "dask"):
        raise ValueError(f"task_runner must be 'threads' or 'dask', got {task_runner!r}")
    if dask_workers < 1:
        raise ValueError(f"dask_workers must be >= 1, got {dask_workers}")
    check_max_distance(near_duplicate_distance)
    if min_raters is not None:
        check_min_raters(min_raters)
    if hub_repo_id is not None:
        from hae_data.hub import check_push_target

        check_push_target(hub_repo_id)


@contextmanager
def open_build(
    output_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    source_roots: Iterable[str],
) -> Iterator[str]:
    """Everything a build checks and holds around its work; yields this build's id.

    Before any work: the output folder must not overlap a source root and must be empty, new or
    a previous export (:class:`hae_data.outdir.ExportFolder`), else
    :class:`~hae_data.outdir.BuildRefusedError`. Then the output folder (and the work folder,
    where it lies elsewhere) is locked for the whole build (a second build gets
    :class:`~hae_data.outdir.BuildBusyError`), an export swap a killed build left half done is
    finished, and plan files of killed builds are removed. On the way out this build's plans go.
    """
    out, work = Path(output_dir), Path(work_dir)
    check_not_overlapping(out, source_roots)
    folder = ExportFolder(out)
    folder.check_usable()
    with ExitStack() as stack:
        stack.enter_context(BuildLock(out))
        if not work.resolve().is_relative_to(out.resolve()):
            stack.enter_context(BuildLock(work))
        folder.claim()
        folder.recover()
        remove_plans(work)  # under the locks: only killed builds' plans can be there
        build_id = uuid.uuid4().hex[:12]
        try:
            yield build_id
        finally:
            remove_plans(work, build_id)


def _loader_options(cls: type) -> set[str]:
    """The keyword options a source loader's constructor takes (besides its root)."""
    import inspect

    return set(inspect.signature(cls.__init__).parameters) - {"self", "root"}


def read_build_spec(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    sources: Mapping[str, Any] | None = None,
    annotations: str | None = None,
    min_raters: int | None = None,
) -> BuildSpec:
    """Merge a YAML/JSON config file (or mapping) with explicit ``sources``/``annotations``.

    The config's shape: ``sources: {name: root | {root: ..., options: {...}}}`` and an optional
    ``annotations: root`` (the 12-dimension part). Explicit arguments win over the file.
    ``min_raters`` is passed to every loader that takes it. Raises ``ValueError`` with a clear
    message on anything malformed.
    """
    import yaml

    from hae_data.sources import SOURCES

    raw: dict[str, Any] = {}
    if isinstance(config, Mapping):
        raw = dict(config)
    elif config is not None:
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"sources config {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"sources config {str(path)!r} is not valid YAML/JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"sources config {str(path)!r} must be a mapping with 'sources'")
        unknown = set(raw) - {"sources", "annotations", *_CONFIG_SETTINGS}
        if unknown:
            raise ValueError(f"sources config: unknown key(s) {sorted(unknown)}")
    entries: dict[str, Any] = dict(raw.get("sources") or {})
    entries.update(sources or {})
    ann = annotations if annotations is not None else raw.get("annotations")
    if ann:
        entries["humanbeauty_50k"] = ann
    specs: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, entry in entries.items():
        if isinstance(entry, str | os.PathLike):
            root, options = str(entry), {}
        elif isinstance(entry, Mapping) and "root" in entry:
            root, options = str(entry["root"]), dict(entry.get("options") or {})
        else:
            raise ValueError(
                f"source {name!r}: expected a folder or {{root: ..., options: ...}}, got {entry!r}"
            )
        cls = SOURCES.get(name)
        if min_raters is not None and cls is not None and "min_raters" in _loader_options(cls):
            options.setdefault("min_raters", min_raters)
        specs[name] = (root, options)
    spec = BuildSpec(sources=specs, settings=_config_settings(raw))
    spec.validate()
    return spec


#: Build settings a sources config may fix, each with the check the flow's option has.
_CONFIG_SETTINGS: dict[str, Callable[[Any], Any]] = {
    "near_duplicate_distance": check_max_distance,
}


def _config_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The build settings of a sources config (they win over the flow's options), each checked
    as that option is; ``ValueError`` naming a bad one."""
    settings = {k: raw[k] for k in _CONFIG_SETTINGS if k in raw}
    for key, value in settings.items():
        try:
            _CONFIG_SETTINGS[key](value)
        except ValueError as exc:
            raise ValueError(f"sources config: {exc}") from None
    return settings


def load_source(
    name: str, root: str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> StageResult:
    """Read one source dataset from its root folder with its registered loader."""
    from hae_data.sources import SOURCES

    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    loader = SOURCES[name](Path(root), **dict(options or {}))
    result = StageResult()
    for item in loader.iter_items():
        if isinstance(item, Rejection):
            result.rejections.append(item)
        else:
            result.records.append(item)
    log.info(
        "%s: %d records, %d rejections from %s",
        name,
        len(result.records),
        len(result.rejections),
        root,
    )
    return result
