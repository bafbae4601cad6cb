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
