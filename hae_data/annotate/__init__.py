"""Annotating new images with the 12-dimension standard in Label Studio, and reading them back.

The loop (README, "Annotating new images"):

1. :mod:`~hae_data.annotate.labeling`: the labeling config, generated from
   ``annotation_schema/standard.yaml`` (dimensions, order, hierarchy, guidelines, scale);
2. :mod:`~hae_data.annotate.tasks`: a folder of images -> a task import file, plus the
   project settings that give every image ``min_raters`` annotators;
3. :mod:`~hae_data.annotate.ls_import`: Label Studio's JSON / JSON-MIN export -> per-rater
   annotation rows in ``ROOT/annotations/``, which :class:`hae_data.sources.annotations.
   AnnotationSource` (``humanbeauty_50k``) reads into the build;
4. :mod:`hae_data.reliability`: how much the raters agree, and an optional screen.

``python -m hae_data.annotate {config,tasks,import,reliability}`` runs each step.
"""

from __future__ import annotations

from hae_data.annotate.labeling import SCALE_MAX, labeling_config, rating_to_score
from hae_data.annotate.ls_import import ExportFormatError, ImportResult, import_export
from hae_data.annotate.tasks import IMAGE_KEY, make_tasks, project_settings

__all__ = [
    "IMAGE_KEY",
    "SCALE_MAX",
    "ExportFormatError",
    "ImportResult",
    "import_export",
    "labeling_config",
    "make_tasks",
    "project_settings",
    "rating_to_score",
]
