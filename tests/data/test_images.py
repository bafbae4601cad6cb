import io

import numpy as np
import pytest
from PIL import Image

from hae_data.images import ImageDecodeError, decode_image, export_bytes, read_image


def _encode(img, fmt="JPEG", **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(w=64, h=32):
    x = np.linspace(0, 255, w, dtype=np.uint8)
    arr = np.stack(
        [np.tile(x, (h, 1)), np.zeros((h, w), np.uint8), np.full((h, w), 99, np.uint8)], -1
    )
    return Image.fromarray(arr)


def test_plain_rgb_jpeg_passes_through_unchanged(tmp_path):
    data = _encode(_gradient())
    dec = decode_image(data)
    assert (dec.width, dec.height, dec.image.mode, dec.converted) == (64, 32, "RGB", False)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    assert export_bytes(path) == data
    assert read_image(path).image_id == dec.image_id


@pytest.mark.parametrize("orientation, size", [(6, (32, 64)), (8, (32, 64)), (3, (64, 32))])
def test_exif_orientation_is_applied(tmp_path, orientation, size):
    img = _gradient()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rot.jpg"
    path.write_bytes(_encode(img, exif=exif, quality=95))
    dec = read_image(path)
    assert (dec.width, dec.height) == size and dec.converted
    exported = Image.open(io.BytesIO(export_bytes(path)))
    assert exported.size == size
    assert exported.getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: _encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0))),
        lambda: _encode(Image.fromarray(np.full((10, 20), 40000, np.uint16)), "PNG"),
        lambda: _encode(Image.new("L", (20, 10), 128), "PNG"),
        lambda: _encode(Image.new("RGBA", (20, 10), (255, 0, 0, 0)), "PNG"),
        lambda: _encode(Image.new("P", (20, 10), 3), "PNG"),
        lambda: _encode(Image.new("RGB", (20, 10), "blue"), "BMP"),
    ],
    ids=["cmyk", "16bit", "gray", "rgba", "palette", "bmp"],
)
def test_modes_become_8bit_rgb(make):
    dec = decode_image(make())
    assert dec.image.mode == "RGB" and dec.image.size == (20, 10)


def test_16bit_is_scaled_not_clipped_and_alpha_is_composited_on_white():
    sixteen = decode_image(_encode(Image.fromarray(np.full((4, 4), 32896, np.uint16)), "PNG"))
    assert np.asarray(sixteen.image)[0, 0].tolist() == [128, 128, 128]
    clear = decode_image(_encode(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG"))
    assert np.asarray(clear.image)[0, 0].tolist() == [255, 255, 255]
    cmyk = decode_image(_encode(Image.new("CMYK", (4, 4), (0, 255, 255, 0))))
    r, g, b = np.asarray(cmyk.image)[1, 1].tolist()
    assert r > 200 and g < 60 and b < 60


def test_converted_images_are_exported_as_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    path.write_bytes(_encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0))))
    out = Image.open(io.BytesIO(export_bytes(path)))
    assert (out.format, out.mode) == ("JPEG", "RGB")
    path16 = tmp_path / "deep.png"
    path16.write_bytes(_encode(Image.fromarray(np.full((10, 20), 40000, np.uint16)), "PNG"))
    out16 = Image.open(io.BytesIO(export_bytes(path16)))
    assert (out16.format, out16.mode) == ("PNG", "RGB")


def test_broken_files_fail_with_reasons(tmp_path):
    good = _encode(_gradient(256, 256))
    cases = {
        "empty_file": b"",
        "truncated": good[: len(good) // 2],
        "not_an_image": b"this is not an image at all",
    }
    for reason, data in cases.items():
        with pytest.raises(ImageDecodeError) as info:
            decode_image(data, name="x")
        assert info.value.reason == reason
    with pytest.raises(ImageDecodeError) as info:
        decode_image(good, max_pixels=100)
    assert info.value.reason == "too_large"
    with pytest.raises(ImageDecodeError) as info:
        read_image(tmp_path / "nope.jpg")
    assert info.value.reason == "missing_file"
    with pytest.raises(ImageDecodeError) as info:
        read_image(tmp_path)
    assert info.value.reason == "not_an_image"


def test_decompression_bomb_header_is_rejected_before_decoding():
    # A PNG header declaring 100k x 100k pixels: rejected from the header alone.
    import struct
    import zlib

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageDecodeError) as info:
        decode_image(bomb)
    assert info.value.reason == "too_large"


def test_decode_threads_share_a_pixel_budget(tmp_path):
    """Eight threads over 2-MP PNGs with a 5-MP budget: never more than 5 MP held at once,
    every image still decoded (a lone image larger than the budget too)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from hae_data.images import PixelBudget, read_reduced

    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (1000, 2000, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), "gray").save(big)  # 6 MP > the whole budget
    budget = PixelBudget(5_000_000)
    seen = []
    real_acquire = budget.acquire

    def acquire(pixels):
        got = real_acquire(pixels)
        seen.append((threading.get_ident(), budget.in_use))
        return got

    budget.acquire = acquire
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: read_reduced(p, long_side=64, budget=budget), paths))
    assert all(r.pixels.shape[:2] == (32, 64) for r in results)
    assert budget.peak <= 4_000_000  # two 2-MP images fit, a third would pass 5 MP
    assert len({t for t, _ in seen}) > 1  # several threads did decode
    assert budget.in_use == 0
    assert read_reduced(big, long_side=64, budget=budget).width == 3000
    assert budget.peak == 5_000_000 and budget.in_use == 0
    with pytest.raises(ValueError):
        PixelBudget(0)
