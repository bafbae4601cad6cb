"""Real photos (scikit-image's) and every kind of broken or unusual image file, written to disk.

One writer per kind; each returns the path it wrote. The photos: astronaut and camera have one
face each, coffee none; the group is three astronaut face crops side by side (three faces).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

#: Where the astronaut's face is in ``data.astronaut()`` (x1, y1, x2, y2), to within a few px.
ASTRONAUT_FACE = (178.0, 57.0, 273.0, 177.0)


def astronaut() -> np.ndarray:
    """512x512 RGB, one face."""
    return data.astronaut()


def group_photo() -> np.ndarray:
    """900x300 RGB: three astronaut face crops (one mirrored) on a grey background."""
    crop = data.astronaut()[20:230, 130:320]
    canvas = np.full((300, 900, 3), 200, np.uint8)
    canvas[40:250, 30:220] = crop
    canvas[40:250, 350:540] = crop[:, ::-1]
    canvas[40:250, 670:860] = crop
    return canvas


def write_photos(folder: Path) -> dict[str, Path]:
    """The real photos with their expected decision: name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "astronaut": folder / "astronaut.jpg",
        "camera": folder / "camera.png",
        "coffee": folder / "coffee.jpg",
        "group": folder / "group.jpg",
    }
    Image.fromarray(astronaut()).save(paths["astronaut"], quality=92)
    Image.fromarray(data.camera()).save(paths["camera"])  # 8-bit grayscale PNG
    Image.fromarray(data.coffee()).save(paths["coffee"], quality=92)
    Image.fromarray(group_photo()).save(paths["group"], quality=92)
    return paths


def _jpeg_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92, **kwargs)
    return buf.getvalue()


def write_truncated_jpeg(path: Path) -> Path:
    """The astronaut JPEG cut at 60% of its bytes."""
    full = _jpeg_bytes(Image.fromarray(astronaut()))
    path.write_bytes(full[: int(len(full) * 0.6)])
    return path


def write_empty(path: Path) -> Path:
    """A zero-byte file."""
    path.write_bytes(b"")
    return path


def write_text_as_jpeg(path: Path) -> Path:
    """A text file named like a JPEG."""
    path.write_text("this is not an image\n" * 20)
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def write_png_bomb(path: Path, side: int = 100_000) -> Path:
    """A valid-looking PNG declaring ``side x side`` RGB pixels with almost no data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )
    return path


def write_cmyk_jpeg(path: Path) -> Path:
    """The astronaut as a CMYK JPEG."""
    path.write_bytes(_jpeg_bytes(Image.fromarray(astronaut()).convert("CMYK")))
    return path


def write_16bit_png(path: Path) -> Path:
    """The astronaut in grayscale, 16 bits per sample."""
    gray = np.asarray(Image.fromarray(astronaut()).convert("L"), dtype=np.uint16) * 257
    img = Image.fromarray(gray)  # uint16 -> mode I;16
    assert img.mode == "I;16", img.mode
    img.save(path)
    return path


def write_gray_jpeg(path: Path) -> Path:
    """The astronaut as a one-channel JPEG."""
    path.write_bytes(_jpeg_bytes(Image.fromarray(astronaut()).convert("L")))
    return path


def write_rgba_png(path: Path) -> Path:
    """The astronaut with an alpha channel (opaque face, transparent corner)."""
    rgba = np.dstack([astronaut(), np.full((512, 512), 255, np.uint8)])
    rgba[400:, 400:, 3] = 0
    Image.fromarray(rgba).save(path)
    return path


def write_palette_png(path: Path) -> Path:
    """The astronaut quantised to a 256-colour palette."""
    Image.fromarray(astronaut()).quantize(256).save(path)
    return path


def upright_portrait() -> np.ndarray:
    """A 400x512 (w x h) crop of the astronaut: not square, so a rotation shows."""
    return astronaut()[:, 50:450]


def write_exif_rotated(path: Path, orientation: int) -> Path:
    """The portrait stored rotated, with the EXIF orientation (6 or 8) that makes it upright."""
    upright = Image.fromarray(upright_portrait())
    # Orientation 6 displays the stored pixels rotated 90 degrees clockwise, 8 anticlockwise.
    stored = upright.transpose(
        Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.write_bytes(_jpeg_bytes(stored, exif=exif.tobytes()))
    return path


def write_large_jpeg(path: Path, side: int = 2048) -> Path:
    """The astronaut upscaled to ``side x side`` (decoded at 1/2 scale by the fast path)."""
    big = Image.fromarray(astronaut()).resize((side, side), Image.Resampling.BICUBIC)
    path.write_bytes(_jpeg_bytes(big))
    return path


#: name -> (writer, expected reason; None = keep). The file names carry the kind.
BROKEN_AND_ODD = {
    "truncated.jpg": (write_truncated_jpeg, "truncated"),
    "empty.jpg": (write_empty, "empty_file"),
    "text.jpg": (write_text_as_jpeg, "not_an_image"),
    "bomb.png": (write_png_bomb, "too_large"),
    "cmyk.jpg": (write_cmyk_jpeg, None),
    "gray16.png": (write_16bit_png, None),
    "gray.jpg": (write_gray_jpeg, None),
    "rgba.png": (write_rgba_png, None),
    "palette.png": (write_palette_png, None),
    "exif6.jpg": (lambda p: write_exif_rotated(p, 6), None),
    "exif8.jpg": (lambda p: write_exif_rotated(p, 8), None),
    "large.jpg": (write_large_jpeg, None),
}


def write_broken_and_odd(folder: Path) -> dict[str, Path]:
    """Every file of :data:`BROKEN_AND_ODD` in ``folder``: name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    return {name: writer(folder / name) for name, (writer, _) in BROKEN_AND_ODD.items()}
