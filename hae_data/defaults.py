"""The build's defaults, named once (SPEC 2): every loader, stage, CLI and flow reads them here.

Values that are facts of the 12-dimension standard (names, level thresholds, questions) live in
``annotation_schema/standard.yaml``; these are the pipeline's choices where the paper is silent
or states a number.
"""

from __future__ import annotations

__all__ = [
    "DETECTOR_BATCH_CPU",
    "DETECTOR_BATCH_GPU",
    "DETECTOR_LONG_SIDE",
    "FACE_THRESHOLD",
    "MIN_RATERS",
    "SHARD_SIZE",
]

#: A detection counts as a face at this confidence or above (the RetinaFace reference default).
FACE_THRESHOLD = 0.9
#: Valid ratings an image needs before its MOS is kept (the paper's nine raters per image).
MIN_RATERS = 9
#: Images the face detector sees per batch when none is given, by device: on the CPU the
#: network already spreads one image over every core, while a GPU needs a hundred or more to be
#: busy (MobileNet-0.25 at 640 px: 168 images/s at batch 1, 4,732 at 64; FACTS.md).
DETECTOR_BATCH_CPU = 8
DETECTOR_BATCH_GPU = 128
#: Long side, in pixels, an image is resized to for detection (RetinaFace's reference size).
DETECTOR_LONG_SIDE = 640
#: Images per shard of the face stage (the unit of resumption and of parallel work).
SHARD_SIZE = 2000
