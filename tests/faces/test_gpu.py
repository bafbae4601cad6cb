"""The CUDA path (fp16 torch, device-side decoding and NMS) against the CPU path.

Needs a CUDA GPU: marked ``gpu`` (deselected by default; run with ``-m gpu``) and skipped when
torch sees no device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hae_data.faces import decide, filter_records, load_detector
from hae_data.faces.detectors import OnnxRetinaFace
from hae_data.faces.postprocess import nms
from hae_data.faces.torch_backend import TorchRetinaFace, batched_nms_keep
from hae_data.images import read_reduced
from hae_data.records import Record

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_cuda_fp16_matches_cpu_decisions(
    photos: dict[str, Path], odd_files: dict[str, Path], onnx_detector: OnnxRetinaFace
) -> None:
    paths = [*photos.values(), *(p for p in odd_files.values() if p.stat().st_size > 1000)]
    decoded = []
    for p in paths:
        try:
            decoded.append(read_reduced(p, long_side=640))
        except Exception:
            continue  # the broken files are the CPU tests' business
    gpu = load_detector(device="cuda")
    assert isinstance(gpu, TorchRetinaFace) and gpu.fp16
    images = [d.pixels for d in decoded]
    frames = [(d.width, d.height) for d in decoded]
    ref = onnx_detector.detect_batch(images, frames)
    got = gpu.detect_batch(images, frames)
    for r, g, frame in zip(ref, got, frames, strict=True):
        assert decide(g) == decide(r)
        strong_r = [f for f in r if f.score >= 0.9]
        strong_g = [f for f in g if f.score >= 0.9]
        # fp16 moves boxes by a fraction of a detector pixel; frames above 640 px magnify it.
        tolerance = 2.0 * max(1.0, max(frame) / 640)
        for a, b in zip(strong_g, strong_r, strict=True):
            assert a.score == pytest.approx(b.score, abs=5e-3)
            np.testing.assert_allclose(a.box, b.box, atol=tolerance)


def test_batched_nms_on_cuda_equals_greedy() -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 200, (2, 300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (2, 300, 2))], axis=-1).astype(np.float32)
    scores = rng.uniform(0, 1, (2, 300)).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")
    sorted_boxes = np.take_along_axis(boxes, order[..., None], axis=1)
    keep = batched_nms_keep(
        torch.from_numpy(sorted_boxes).cuda(), torch.ones(2, 300, dtype=torch.bool).cuda(), 0.4
    ).cpu()
    for b in range(2):
        assert sorted(order[b][keep[b].numpy()].tolist()) == sorted(
            nms(boxes[b], scores[b], 0.4).tolist()
        )


def test_filter_records_on_cuda(photos: dict[str, Path]) -> None:
    records = [Record(source="t", file_name=p.name, image_path=str(p)) for p in photos.values()]
    kept, rejected = filter_records(records, load_detector(device="cuda"), batch_size=2)
    assert {r.file_name for r in kept} == {"astronaut.jpg", "camera.png"}
    assert {(r.file_name, r.reason) for r in rejected} == {
        ("coffee.jpg", "no_face"),
        ("group.jpg", "multi_face"),
    }
