"""RetinaFace in torch: CUDA fp16 batches with anchor decoding and NMS on the device.

The same network and the same post-processing rules as :class:`OnnxRetinaFace` (see
:mod:`hae_data.faces.postprocess`), written for the GPU: the padded uint8 batch goes to the
device from pinned memory (a quarter of the bytes of float input), the channel swap, mean
subtraction and fp16 cast run there, every anchor is decoded at once, and NMS for the whole batch
is a masked ``[B, K, K]`` IoU computation resolved by a fixed-point iteration (exactly the greedy
result, see :func:`batched_nms_keep`). Only the kept detections come back to the host, in one
transfer per batch. No torchvision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hae_data.faces.detectors import RawDetections, RetinaFaceBase
from hae_data.faces.retinaface import RetinaFace

__all__ = ["TorchRetinaFace", "batched_nms_keep", "torch_anchors"]

log = logging.getLogger(__name__)

#: Upper bound on ``B * K * K`` IoU entries computed at once by the batched NMS.
_NMS_ELEMENTS = 1 << 24


def torch_anchors(
    height: int,
    width: int,
    steps: Sequence[int],
    min_sizes: Sequence[Sequence[int]],
    device: torch.device,
) -> torch.Tensor:
    """``[A, 4]`` float32 anchors ``(cx, cy, w, h)``, normalised, same order as numpy's."""
    parts = []
    for step, sizes in zip(steps, min_sizes, strict=True):
        ny, nx = -(-height // step), -(-width // step)
        ys, xs = torch.meshgrid(
            torch.arange(ny, device=device), torch.arange(nx, device=device), indexing="ij"
        )
        cx = (xs.reshape(-1).double() + 0.5) * step / width
        cy = (ys.reshape(-1).double() + 0.5) * step / height
        centres = torch.stack([cx, cy], dim=1).repeat_interleave(len(sizes), dim=0)
        wh = torch.tensor([[s / width, s / height] for s in sizes], device=device).double()
        parts.append(torch.cat([centres, wh.repeat(ny * nx, 1)], dim=1))
    return torch.cat(parts).float()


def batched_nms_keep(boxes: torch.Tensor, valid: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS for a batch: ``boxes [B, K, 4]`` sorted by descending score per image,
    ``valid [B, K]`` marks real candidates; returns the ``[B, K]`` keep mask.

    ``over[b, j, i]``: an earlier (higher-scored) candidate ``j`` overlaps ``i`` above the
    threshold. Greedy NMS keeps ``i`` iff no kept ``j < i`` overlaps it; iterating
    ``keep <- valid & ~any_j(keep_j & over_ji)`` from ``keep = valid`` fixes one more position per
    step (position 0 is always right, and position ``i`` only reads positions ``< i``), so it
    reaches the greedy answer after at most ``K`` steps, in practice two or three.
    """
    n, k = valid.shape
    if k == 0:
        return valid.clone()
    chunk = max(1, _NMS_ELEMENTS // (k * k))
    if n > chunk:
        return torch.cat(
            [
                batched_nms_keep(boxes[i : i + chunk], valid[i : i + chunk], threshold)
                for i in range(0, n, chunk)
            ]
        )
    area = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])  # [B, K, K, 2]
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)  # [B, K, K]
    iou = inter / (area[:, :, None] + area[:, None, :] - inter).clamp(min=1e-12)
    earlier = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(diagonal=1)
    over = (iou > threshold) & earlier & valid[:, :, None] & valid[:, None, :]
    keep = valid.clone()
    for _ in range(k):
        new = valid & ~(over & keep[:, :, None]).any(dim=1)
        if torch.equal(new, keep):
            break
        keep = new
    return keep


class TorchRetinaFace(RetinaFaceBase):
    """RetinaFace in torch on ``device``; fp16 on CUDA by default.

    ``model`` is a :class:`RetinaFace` with its weights loaded (its config gives the mean and
    anchors). On CUDA the input batch lives in pinned host memory and cuDNN autotuning is on.
    """

    name = "torch"

    def __init__(
        self,
        model: RetinaFace,
        *,
        device: str | torch.device = "cpu",
        fp16: bool | None = None,
        channels_last: bool | None = None,
        pad_multiple: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        cfg = model.config
        super().__init__(
            mean_bgr=cfg.mean_bgr,
            steps=cfg.steps,
            min_sizes=cfg.min_sizes,
            variances=cfg.variances,
            pad_multiple=pad_multiple or (128 if cuda else 32),
            **kwargs,
        )
        self.fp16 = cuda if fp16 is None else fp16
        self.channels_last = cuda if channels_last is None else channels_last
        self.dtype = torch.float16 if self.fp16 else torch.float32
        if cuda:
            torch.backends.cudnn.benchmark = True
        model = model.eval().to(self.device, dtype=self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.name = f"torch-{self.device.type}{'-fp16' if self.fp16 else ''}"
        self._mean = torch.tensor(cfg.mean_bgr, dtype=self.dtype, device=self.device).view(
            1, 3, 1, 1
        )
        self._anchors: dict[tuple[int, int], torch.Tensor] = {}
        self._host: tuple[np.ndarray, torch.Tensor] | None = None

    def new_batch(self, n: int, height: int, width: int) -> np.ndarray:
        """A pinned host buffer on CUDA (the copy to the device can then overlap)."""
        if self.device.type != "cuda":
            return super().new_batch(n, height, width)
        tensor = torch.empty((n, height, width, 3), dtype=torch.uint8, pin_memory=True)
        array = tensor.numpy()
        self._host = (array, tensor)
        return array

    def anchors(self, height: int, width: int) -> torch.Tensor:
        """Cached anchors of a padded shape on the device."""
        key = (height, width)
        if key not in self._anchors:
            self._anchors[key] = torch_anchors(
                height, width, self.steps, self.min_sizes, self.device
            )
        return self._anchors[key]

    @torch.inference_mode()
    def raw_outputs(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Network outputs ``(loc, conf, landmarks)`` on the device, as float32."""
        host = self._host[1] if self._host and self._host[0] is batch else torch.from_numpy(batch)
        x = host.to(self.device, non_blocking=True)  # [B, H, W, 3] uint8 RGB
        x = x[..., [2, 1, 0]].permute(0, 3, 1, 2)  # [B, 3, H, W] BGR, NHWC in memory
        x = x.to(self.dtype) - self._mean
        x = x.contiguous(
            memory_format=torch.channels_last if self.channels_last else torch.contiguous_format
        )
        loc, conf, ldm = self.model(x)
        return loc.float(), conf.float(), ldm.float()

    @torch.inference_mode()
    def run(self, batch: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[RawDetections]:
        """Detect on a padded batch; decoding and NMS on the device."""
        height, width = batch.shape[1:3]
        loc, conf, ldm = self.raw_outputs(batch)
        found = self.postprocess(loc, conf, ldm, height, width, sizes)  # synchronises
        self._host = None  # the pinned buffer may go once the copy from it has surely run
        return found

    def postprocess(
        self,
        loc: torch.Tensor,
        conf: torch.Tensor,
        ldm: torch.Tensor,
        height: int,
        width: int,
        sizes: Sequence[tuple[int, int]],
    ) -> list[RawDetections]:
        """Batched decode, filtering and NMS; the rules of ``postprocess_numpy``."""
        v0, v1 = self.variances
        priors = self.anchors(height, width)  # [A, 4]
        scale = torch.tensor([width, height, width, height], device=loc.device)
        centre = priors[:, :2] + loc[..., :2] * v0 * priors[:, 2:]
        size = priors[:, 2:] * torch.exp(loc[..., 2:] * v1)
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1) * scale  # [B, A, 4]
        real = torch.tensor(sizes, device=loc.device, dtype=torch.float32)  # [B, 2] (h, w)
        scores = conf[..., 1]  # [B, A]
        valid = (
            (scores >= self.min_score)
            & ((boxes[..., 0] + boxes[..., 2]) / 2 < real[:, 1:2])
            & ((boxes[..., 1] + boxes[..., 3]) / 2 < real[:, 0:1])
        )
        k = min(int(valid.sum(dim=1).max()), self.top_k)
        empty = (
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, 10), np.float32),
        )
        if k == 0:
            return [empty for _ in sizes]
        top_scores, top_idx = scores.masked_fill(~valid, -1.0).topk(k, dim=1)  # [B, K] sorted
        cand = top_scores >= self.min_score
        top_boxes = boxes.gather(1, top_idx[..., None].expand(-1, -1, 4))  # [B, K, 4]
        keep = batched_nms_keep(top_boxes, cand, self.nms_threshold)
        top_priors = priors[top_idx]  # [B, K, 4]
        points = ldm.gather(1, top_idx[..., None].expand(-1, -1, 10)).reshape(*top_idx.shape, 5, 2)
        points = top_priors[..., None, :2] + points * v0 * top_priors[..., None, 2:]
        points = points.reshape(*top_idx.shape, 10) * scale[:2].repeat(5)
        host = torch.cat(
            [keep[..., None].float(), top_scores[..., None], top_boxes, points], dim=-1
        )
        host = host.cpu().numpy()  # [B, K, 1 + 1 + 4 + 10], the one device->host transfer
        out: list[RawDetections] = []
        for rows in host:
            rows = rows[rows[:, 0] > 0.5]
            out.append((rows[:, 2:6], rows[:, 1], rows[:, 6:16]))
        return out
