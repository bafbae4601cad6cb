"""The reduced-size decode path: same verdicts as ``decode_image``, right sizes and frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hae_data.images import (
    ImageDecodeError,
    decode_reduced,
    fit_long_side,
    read_image,
    read_reduced,
)
from tests.faces.fixtures import BROKEN_AND_ODD


@pytest.mark.parametrize("name", sorted(BROKEN_AND_ODD))
def test_fast_path_agrees_with_full_decode(name: str, odd_files: dict[str, Path]) -> None:
    path = odd_files[name]
    expected_reason = BROKEN_AND_ODD[name][1]
    if expected_reason is not None:
        with pytest.raises(ImageDecodeError) as full:
            read_image(path)
        with pytest.raises(ImageDecodeError) as fast:
            read_reduced(path, long_side=640)
        assert fast.value.reason == full.value.reason == expected_reason
        return
    full_image = read_image(path)
    reduced = read_reduced(path, long_side=640)
    assert (reduced.width, reduced.height) == (full_image.width, full_image.height)
    assert reduced.image_id == full_image.image_id
    assert reduced.pixels.dtype == np.uint8 and reduced.pixels.shape[2] == 3
    h, w = reduced.pixels.shape[:2]
    assert max(h, w) == min(640, max(full_image.width, full_image.height))
    # Same frame orientation: the aspect ratio of the reduced array is the displayed one.
    assert abs(w / h - full_image.width / full_image.height) < 0.01
    if max(full_image.width, full_image.height) <= 640:
        # No reduction: the very pixels the export path produces.
        np.testing.assert_array_equal(reduced.pixels, np.asarray(full_image.image))


def test_large_jpeg_is_decoded_at_reduced_scale(odd_files: dict[str, Path]) -> None:
    reduced = read_reduced(odd_files["large.jpg"], long_side=640)
    assert (reduced.width, reduced.height) == (2048, 2048)
    assert reduced.pixels.shape == (640, 640, 3)
    full = fit_long_side(np.asarray(read_image(odd_files["large.jpg"]).image), 640)
    # DCT scaling then resizing stays close to decoding everything then resizing.
    assert np.abs(reduced.pixels.astype(int) - full.astype(int)).mean() < 3


def test_exif_rotation_swaps_the_frame(odd_files: dict[str, Path]) -> None:
    for name in ("exif6.jpg", "exif8.jpg"):
        reduced = read_reduced(odd_files[name], long_side=640)
        assert (reduced.width, reduced.height) == (400, 512)
        assert reduced.pixels.shape == (512, 400, 3)


def test_missing_and_oversized(tmp_path: Path, odd_files: dict[str, Path]) -> None:
    with pytest.raises(ImageDecodeError) as missing:
        read_reduced(tmp_path / "nope.jpg", long_side=640)
    assert missing.value.reason == "missing_file"
    with pytest.raises(ImageDecodeError) as folder:
        read_reduced(tmp_path, long_side=640)
    assert folder.value.reason == "not_an_image"
    data = odd_files["cmyk.jpg"].read_bytes()
    with pytest.raises(ImageDecodeError) as big:
        decode_reduced(data, long_side=640, max_pixels=1000)
    assert big.value.reason == "too_large"
    with pytest.raises(ValueError):
        decode_reduced(data, long_side=0)


def test_fit_long_side() -> None:
    small = np.zeros((100, 50, 3), np.uint8)
    assert fit_long_side(small, 640) is small
    assert fit_long_side(np.zeros((1000, 300, 3), np.uint8), 640).shape == (640, 192, 3)
    assert fit_long_side(np.zeros((683, 1024, 3), np.uint8), 640).shape == (427, 640, 3)
    assert fit_long_side(np.zeros((4000, 3, 3), np.uint8), 640).shape == (640, 1, 3)
