"""A folder of images -> a Label Studio task import file, and the project settings it needs.

Task format (https://labelstud.io/guide/task_format, "Basic Label Studio JSON format"): a
JSON list of ``{"data": {...}}``; the labeling config's ``<Image value="$image">`` reads
``data.image``. Two ways to point at the file, as Label Studio documents them:

- local files (https://labelstud.io/guide/storage#Local-storage): the server runs with
  ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=DOCROOT``, the project has a Local Storage whose
  path contains the images, and ``data.image`` is ``/data/local-files/?d=<path relative to
  DOCROOT>`` (URL-quoted);
- any URL the annotators' browsers can open (``--url-prefix``): ``PREFIX + relative path``.

Every task also carries ``data.hb_image``, the image's path relative to the images folder:
that is what :mod:`hae_data.annotate.ls_import` writes into the annotation rows' ``image``
column, whatever the URL scheme (so moving the files or the server changes nothing).

Overlap: in Label Studio the number of annotators per task is a project setting, not a task
field: ``maximum_annotations`` ("Annotations per task", the task counts as complete after that
many) with ``overlap_cohort_percentage`` 100 (every task gets that overlap).
:func:`project_settings` returns the body for ``POST /api/projects`` with both set to give
each image at least ``min_raters`` ratings (SPEC 2.3); ``overlap`` above ``min_raters`` leaves
room for raters that the reliability screen may drop later.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hae_data.annotate.labeling import IMAGE_FIELD, labeling_config
from hae_data.defaults import MIN_RATERS
from hae_data.outdir import write_text_atomic
from hae_data.scores import check_min_raters
from hae_data.sources.base import IMAGE_EXTENSIONS

__all__ = [
    "IMAGE_KEY",
    "LOCAL_FILES_PREFIX",
    "TaskFileError",
    "find_images",
    "make_tasks",
    "project_settings",
    "read_keep_list",
    "write_json",
]

log = logging.getLogger(__name__)

#: Task data field holding the image's path relative to the images folder.
IMAGE_KEY = "hb_image"
#: Label Studio's URL for files served from its local-files document root.
LOCAL_FILES_PREFIX = "/data/local-files/?d="


class TaskFileError(ValueError):
    """The task file cannot be made as asked (no images, an image outside the document root)."""


def find_images(images_dir: str | os.PathLike[str]) -> list[str]:
    """Image files under ``images_dir`` (recursively, hidden ones skipped), as sorted POSIX
    paths relative to it."""
    base = Path(images_dir)
    out = []
    for path in base.rglob("*"):
        rel = path.relative_to(base)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            out.append(rel.as_posix())
    return sorted(out)


def read_keep_list(path: str | os.PathLike[str], images_dir: str | os.PathLike[str]) -> set[str]:
    """Images kept by the face filter: the ``path`` of every ``"keep": true`` line of
    ``python -m hae_data.faces --json`` output, relative to ``images_dir``."""
    base = Path(images_dir).resolve()
    kept: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(f"{path}:{number}: not a JSON line: {exc}") from None
            if not isinstance(item, dict) or "path" not in item or "keep" not in item:
                raise TaskFileError(f"{path}:{number}: expected an object with path and keep")
            if item["keep"] is True:
                image = Path(item["path"])
                image = image if image.is_absolute() else Path.cwd() / image
                try:
                    kept.add(image.resolve().relative_to(base).as_posix())
                except ValueError:
                    log.warning("%s:%d: %s is not under %s; ignored", path, number, image, base)
    return kept


def make_tasks(
    images: Iterable[str],
    images_dir: str | os.PathLike[str],
    *,
    document_root: str | os.PathLike[str] | None = None,
    url_prefix: str | None = None,
) -> list[dict[str, Any]]:
    """One task per image (relative paths under ``images_dir``), in the given order; exactly
    one of ``document_root`` (local-files URLs) or ``url_prefix`` says how Label Studio reaches
    the file."""
    if (document_root is None) == (url_prefix is None):
        raise TaskFileError("give exactly one of document_root (local files) or url_prefix")
    base = Path(images_dir).resolve()
    tasks = []
    for rel in images:
        if url_prefix is not None:
            url = url_prefix + quote(rel, safe="/")
        else:
            path = base / rel
            try:
                inside = path.relative_to(Path(document_root).resolve())  # type: ignore[arg-type]
            except ValueError:
                raise TaskFileError(
                    f"{path} is not under the document root {document_root}: Label Studio "
                    "serves local files only from LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
                ) from None
            url = LOCAL_FILES_PREFIX + quote(inside.as_posix(), safe="/")
        tasks.append({"data": {IMAGE_FIELD: url, IMAGE_KEY: rel}})
    if not tasks:
        raise TaskFileError(f"no image to annotate under {images_dir}")
    return tasks


def project_settings(
    *,
    min_raters: int = MIN_RATERS,
    overlap: int | None = None,
    title: str = "HumanBeauty 12-dimension",
) -> dict[str, Any]:
    """The body of ``POST /api/projects``: the generated labeling config and an overlap of
    ``overlap`` (default ``min_raters``) annotators on every task."""
    check_min_raters(min_raters)
    overlap = min_raters if overlap is None else overlap
    if overlap < min_raters:
        raise TaskFileError(f"overlap {overlap} is below min_raters {min_raters}")
    return {
        "title": title,
        "description": f"Rate every image on the 12 dimensions; {overlap} annotators per image.",
        "label_config": labeling_config(),
        "maximum_annotations": overlap,
        "overlap_cohort_percentage": 100,
        "show_skip_button": True,
        "enable_empty_annotation": False,
        "show_annotation_history": False,
    }


def write_json(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON through a temporary name, so a reader never sees half."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
