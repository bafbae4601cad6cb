"""The decision rule and the streaming filter over records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from hae_data.faces import (
    DETECT_ERROR,
    STAGE,
    decide,
    detect_items,
    filter_records,
)
from hae_data.faces.detectors import OnnxRetinaFace
from hae_data.records import Face, Record
from tests.faces.fixtures import BROKEN_AND_ODD


def _face(score: float, size: float = 50.0) -> Face:
    return Face(box=[10.0, 10.0, 10.0 + size, 10.0 + size * 1.2], score=score, landmarks=[0.0] * 10)


def test_decide() -> None:
    assert decide([]) == "no_face"
    assert decide([_face(0.89)]) == "no_face"
    assert decide([_face(0.9)]) is None  # at the threshold counts
    assert decide([_face(0.99), _face(0.6)]) is None  # a weak second detection is not a face
    assert decide([_face(0.99), _face(0.95)]) == "multi_face"
    assert decide([_face(0.99), _face(0.95)], threshold=0.96) is None
    assert decide([_face(0.99, size=20)], min_face_size=32) == "too_small"
    assert decide([_face(0.99, size=40)], min_face_size=32) is None
    assert decide([_face(0.5)], threshold=0.5) is None


def _record(path: Path, part: str = "overall") -> Record:
    return Record(source="test", file_name=path.name, image_path=str(path), part=part)


def test_filter_records_keeps_singles_and_explains_every_rejection(
    photos: dict[str, Path], odd_files: dict[str, Path], onnx_detector: OnnxRetinaFace
) -> None:
    records = [_record(p) for p in photos.values()]
    records += [_record(p) for p in odd_files.values()]
    records.append(_record(photos["coffee"].with_name("missing.jpg")))
    records.append(_record(photos["coffee"], part="fine_grained"))  # annotated, not filtered
    kept, rejected = filter_records(records, onnx_detector, batch_size=3, workers=2)
    assert len(kept) + len(rejected) == len(records)
    by_reason = {(r.file_name, r.reason) for r in rejected}
    expected = {
        ("coffee.jpg", "no_face"),
        ("group.jpg", "multi_face"),
        ("missing.jpg", "missing_file"),
    }
    expected |= {(n, reason) for n, (_, reason) in BROKEN_AND_ODD.items() if reason is not None}
    assert by_reason == expected
    assert all(r.stage == STAGE and r.detail for r in rejected)
    assert {r.file_name for r in kept} == {
        "astronaut.jpg",
        "camera.png",
        "coffee.jpg",  # the fine_grained copy
        *(n for n, (_, reason) in BROKEN_AND_ODD.items() if reason is None),
    }
    for r in kept:
        assert r.image_id and len(r.image_id) == 64
        assert r.faces is not None and r.width and r.height
        if r.part == "overall":
            assert sum(f.score >= 0.9 for f in r.faces) == 1
            x1, y1, x2, y2 = r.faces[0].box
            assert 0 <= x1 < x2 <= r.width and 0 <= y1 < y2 <= r.height
    fine = next(r for r in kept if r.part == "fine_grained")
    assert fine.faces == []
    rotated = {r.file_name: r for r in kept if r.file_name.startswith("exif")}
    for r in rotated.values():
        assert (r.width, r.height) == (400, 512)
        np.testing.assert_allclose(r.faces[0].box, [128, 56, 225, 178], atol=4)
    group = next(r for r in rejected if r.reason == "multi_face")
    assert group.image_id and "3 face(s)" in group.detail


def test_annotate_only_rejects_nothing_decodable(
    photos: dict[str, Path], onnx_detector: OnnxRetinaFace
) -> None:
    records = [_record(p) for p in photos.values()]
    kept, rejected = filter_records(records, onnx_detector, filter_parts=())
    assert rejected == [] and len(kept) == len(records)
    assert [len(r.faces) for r in kept] == [1, 1, 0, 3]


def test_threshold_below_min_score_is_refused(onnx_detector: OnnxRetinaFace) -> None:
    with pytest.raises(ValueError, match="min_score"):
        filter_records([], onnx_detector, threshold=0.3)


class _FailsOn:
    """A detector that raises whenever a batch holds an image of a given height."""

    def __init__(self, inner: OnnxRetinaFace, bad_height: int) -> None:
        self.inner = inner
        self.bad_height = bad_height
        self.long_side = inner.long_side
        self.min_score = inner.min_score
        self.name = "failing"
        self.batch_size = 4

    def detect_batch(
        self, images: Sequence[np.ndarray], frames: Sequence[tuple[int, int]] | None = None
    ) -> list[list[Face]]:
        if any(im.shape[0] == self.bad_height for im in images):
            raise RuntimeError("simulated device failure")
        return self.inner.detect_batch(images, frames)


def test_a_detector_failure_costs_one_image(
    photos: dict[str, Path], onnx_detector: OnnxRetinaFace
) -> None:
    paths = list(photos.values())
    # The group photo (300 px high, 213 once reduced) makes its batch fail.
    results = list(detect_items(paths, lambda p: p, _FailsOn(onnx_detector, 213), workers=2))
    assert [p for p, _ in results] == paths
    reasons = {p.name: r.reason for p, r in results}
    assert reasons == {
        "astronaut.jpg": None,
        "camera.png": None,
        "coffee.jpg": None,
        "group.jpg": DETECT_ERROR,
    }


def test_detect_items_streams_in_input_order(
    photos: dict[str, Path], odd_files: dict[str, Path], onnx_detector: OnnxRetinaFace
) -> None:
    paths = [*photos.values(), *odd_files.values()] * 2
    results = list(detect_items(paths, lambda p: p, onnx_detector, batch_size=2, workers=3))
    assert [p for p, _ in results] == paths
    first, second = results[: len(paths) // 2], results[len(paths) // 2 :]
    for (_, a), (_, b) in zip(first, second, strict=True):
        assert a.reason == b.reason and a.image_id == b.image_id
        assert (a.faces is None) == (b.faces is None)
        if a.faces is not None:
            assert [f.score for f in a.faces] == [f.score for f in b.faces]


def test_an_item_without_a_path_is_a_rejection(
    photos: dict[str, Path], onnx_detector: OnnxRetinaFace
) -> None:
    paths = {"a": photos["astronaut"]}
    results = list(detect_items(["a", "b"], lambda k: paths[k], onnx_detector, workers=1))
    assert [(k, r.reason) for k, r in results] == [("a", None), ("b", "missing_file")]
    assert "no image path" in results[1][1].detail
