"""Robust image decoding: every file either decodes to an upright 8-bit RGB image or fails with a
reason that becomes a rejection row (SPEC 2.2).

Handled: EXIF orientation (applied, so boxes and exported pixels share the displayed frame);
grayscale, RGBA/LA (composited on white), palette, CMYK/YCCK and 16-bit images (converted, with
16-bit scaled down rather than clipped); zero-byte, truncated, non-image and oversized files
(``empty_file``, ``truncated``, ``not_an_image``, ``too_large``).
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from hae_data.hashing import content_id

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodedImage",
    "ImageDecodeError",
    "decode_image",
    "export_bytes",
    "read_image",
]

log = logging.getLogger(__name__)

#: Images above this many pixels are rejected as ``too_large`` before their pixels are decoded
#: (a 16,000 x 10,000 photo is 160 MP; larger files in IAA sets are decompression bombs).
DEFAULT_MAX_PIXELS = 200_000_000

# Formats whose original bytes can go into the export unchanged when no conversion is needed.
_PASSTHROUGH_FORMATS = {"JPEG", "PNG", "WEBP"}
_PASSTHROUGH_MODES = {"RGB", "L"}


class ImageDecodeError(Exception):
    """A file that cannot become an RGB image; ``reason`` is the rejection reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class DecodedImage:
    """An upright RGB image with the facts the pipeline keeps about its file."""

    image: Image.Image
    image_id: str
    width: int
    height: int
    format: str | None
    source_mode: str
    #: True when the export must re-encode (orientation applied or mode converted).
    converted: bool


def _to_rgb(img: Image.Image) -> tuple[Image.Image, bool]:
    """8-bit RGB version of ``img`` and whether any conversion happened."""
    mode = img.mode
    if mode == "RGB":
        return img, False
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB"), True
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr8 = np.clip(np.rint(arr * (255.0 if arr.max() <= 1.0 else 1.0)), 0, 255)
        return Image.fromarray(arr8.astype(np.uint8), mode="L").convert("RGB"), True
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img, True
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), True
    # L, 1, CMYK, YCbCr, LAB, HSV, ...: PIL's converters handle them (CMYK JPEGs from Adobe
    # tools are stored inverted and PIL's JPEG plugin already undoes that on load).
    return img.convert("RGB"), True


def decode_image(
    data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Decode ``data`` into an upright RGB image or raise :class:`ImageDecodeError`."""
    if not data:
        raise ImageDecodeError("empty_file", f"{name} has zero bytes")
    image_id = content_id(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            w, h = img.size
            if w <= 0 or h <= 0:
                raise ImageDecodeError("not_an_image", f"{name} has size {w}x{h}")
            if w * h > max_pixels:
                raise ImageDecodeError(
                    "too_large", f"{name} is {w}x{h} = {w * h:,} pixels > {max_pixels:,}"
                )
            # Never accept a partial decode: truncated files must fail, whatever a caller set.
            previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
            try:
                img.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
            source_mode = img.mode
            rotated = _orientation(img) > 1
            upright = ImageOps.exif_transpose(img) if rotated else img
            rgb, converted = _to_rgb(upright)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not_an_image", f"{name}: {exc}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("too_large", f"{name}: {exc}") from exc
    except OSError as exc:
        msg = str(exc)
        low = msg.lower()
        reason = "truncated" if "truncated" in low or "broken data stream" in low else "corrupt"
        raise ImageDecodeError(reason, f"{name}: {msg}") from exc
    except (ValueError, SyntaxError, MemoryError, IndexError, TypeError) as exc:
        raise ImageDecodeError("corrupt", f"{name}: {type(exc).__name__}: {exc}") from exc
    return DecodedImage(
        image=rgb,
        image_id=image_id,
        width=rgb.width,
        height=rgb.height,
        format=fmt,
        source_mode=source_mode,
        converted=bool(
            converted
            or rotated
            or fmt not in _PASSTHROUGH_FORMATS
            or source_mode not in _PASSTHROUGH_MODES
        ),
    )


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a malformed EXIF block is not worth a rejection
        return 1


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Read and decode the file at ``path``; a missing file is ``missing_file``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise ImageDecodeError("missing_file", f"{p} does not exist") from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError("not_an_image", f"{p} is a directory") from exc
    except OSError as exc:
        raise ImageDecodeError("unreadable_file", f"{p}: {exc}") from exc
    return decode_image(data, name=str(p), max_pixels=max_pixels)


def export_bytes(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes to embed in the export for the image at ``path``.

    The original file when it is already an upright 8-bit RGB or grayscale JPEG/PNG/WebP (no
    generation loss); otherwise the decoded upright RGB image, re-encoded as JPEG (quality 95)
    when the source was a JPEG and as PNG otherwise.
    """
    data = Path(path).read_bytes()
    decoded = decode_image(data, name=str(path), max_pixels=max_pixels)
    if not decoded.converted:
        return data
    buf = io.BytesIO()
    if decoded.format == "JPEG":
        decoded.image.save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        decoded.image.save(buf, format="PNG")
    return buf.getvalue()
