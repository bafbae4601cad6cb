"""Robust image decoding: every file either decodes to an upright 8-bit RGB image or fails with a
reason that becomes a rejection row (SPEC 2.2).

Handled: EXIF orientation (applied, so boxes and exported pixels share the displayed frame);
grayscale, RGBA/LA (composited on white), palette, CMYK/YCCK and 16-bit images (converted, with
16-bit scaled down rather than clipped); zero-byte, truncated, non-image and oversized files
(``empty_file``, ``truncated``, ``not_an_image``, ``too_large``).

:func:`decode_reduced` / :func:`read_reduced` are the fast path for detection: the same checks
and conversions, but a JPEG is decoded straight at a reduced size (libjpeg's DCT scaling, PIL's
``draft``) and the result is a numpy array whose long side is at most ``long_side``, with the
full displayed size alongside (boxes are mapped back to it).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from hae_data.hashing import content_id

__all__ = [
    "DEFAULT_DECODE_PIXEL_BUDGET",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "DecodedImage",
    "ImageDecodeError",
    "PixelBudget",
    "ReducedImage",
    "decode_image",
    "decode_reduced",
    "encode_for_export",
    "expand_paths",
    "export_bytes",
    "fit_long_side",
    "read_image",
    "read_reduced",
]

log = logging.getLogger(__name__)

#: Files taken from folders (a file named on the command line is always taken).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)


def expand_paths(paths: Sequence[Path], *, all_files: bool = False) -> tuple[list[Path], int]:
    """Inputs in order: files as given, folders walked recursively (sorted, image suffixes
    unless ``all_files``; hidden files skipped). Returns the list and how many folder files were
    left out for their suffix."""
    out: list[Path] = []
    left_out = 0
    for p in paths:
        if not p.is_dir():
            out.append(p)
            continue
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            if any(part.startswith(".") for part in f.relative_to(p).parts):
                continue
            if all_files or f.suffix.lower() in IMAGE_SUFFIXES:
                out.append(f)
            else:
                left_out += 1
    return out, left_out


#: Images above this many pixels are rejected as ``too_large`` before their pixels are decoded
#: (a 12,000 x 12,000 photo is 144 MP; larger files in IAA sets are decompression bombs). PIL
#: itself refuses anything above twice its ``MAX_IMAGE_PIXELS`` (about 179 MP by default).
DEFAULT_MAX_PIXELS = 150_000_000
#: Pixels that the decode threads of one process may hold at once (see :class:`PixelBudget`):
#: the largest image accepted, so one such image decodes alone while ordinary photos (1-25 MP)
#: decode many at a time. Peak decode memory is then about this many pixels times ~10 bytes
#: (RGB, a converted copy, the resize), whatever the thread count.
DEFAULT_DECODE_PIXEL_BUDGET = DEFAULT_MAX_PIXELS
# ``warnings.catch_warnings`` swaps process-wide state: decode threads must not interleave it.
_OPEN_LOCK = threading.Lock()

# Formats whose original bytes can go into the export unchanged when no conversion is needed.
_PASSTHROUGH_FORMATS = {"JPEG", "PNG", "WEBP"}
_PASSTHROUGH_MODES = {"RGB", "L"}


class PixelBudget:
    """A count of pixels shared by decode threads: a thread holds an image's pixels from the
    moment its size is known until its full-size buffers are gone.

    A request larger than the whole budget is capped to it, so a huge image still decodes,
    alone. Without a budget, peak memory grows with the thread count (a 144 MP PNG costs about
    1.5 GB while it decodes).
    """

    def __init__(self, pixels: int = DEFAULT_DECODE_PIXEL_BUDGET) -> None:
        if pixels < 1:
            raise ValueError(f"a pixel budget must be >= 1, got {pixels}")
        self.total = pixels
        self.in_use = 0
        #: Highest ``in_use`` seen, for tests and benchmarks.
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(self, pixels: int) -> int:
        """Wait until ``pixels`` (capped to the budget) are free, take them, return the amount."""
        want = max(1, min(int(pixels), self.total))
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + want <= self.total)
            self.in_use += want
            self.peak = max(self.peak, self.in_use)
        return want

    def release(self, pixels: int) -> None:
        """Give back what :meth:`acquire` returned."""
        with self._cond:
            self.in_use -= pixels
            self._cond.notify_all()


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


def _open_checked(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open ``data`` and check what the header tells before any pixel is decoded.

    Safe from several threads: PIL's decompression-bomb warning is silenced under a lock (our
    own ``max_pixels`` check replaces it), and a process that set
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` gets a refusal rather than silently partial images.
    """
    if not data:
        raise ImageDecodeError("empty_file", f"{name} has zero bytes")
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError("not_an_image", f"{name} has size {w}x{h}")
    if w * h > max_pixels:
        raise ImageDecodeError(
            "too_large", f"{name} is {w}x{h} = {w * h:,} pixels > {max_pixels:,}"
        )
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageDecodeError(
            "corrupt", "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: partial decodes refused"
        )
    return img


def decode_image(
    data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Decode ``data`` into an upright RGB image or raise :class:`ImageDecodeError`."""
    try:
        img = _open_checked(data, name, max_pixels)
        fmt = img.format
        img.load()
        source_mode = img.mode
        rotated = _orientation(img) > 1
        upright = ImageOps.exif_transpose(img) if rotated else img
        rgb, converted = _to_rgb(upright)
    except Exception as exc:  # any failure of one file (PIL raises many types) is its reason
        raise _decode_error(exc, name) from exc
    return DecodedImage(
        image=rgb,
        image_id=content_id(data),
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


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes; a missing or unreadable file is an :class:`ImageDecodeError`."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError as exc:
        raise ImageDecodeError("missing_file", f"{p} does not exist") from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError("not_an_image", f"{p} is a directory") from exc
    except OSError as exc:
        raise ImageDecodeError("unreadable_file", f"{p}: {exc}") from exc


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Read and decode the file at ``path``; a missing file is ``missing_file``."""
    return decode_image(_read_bytes(path), name=str(path), max_pixels=max_pixels)


def encode_for_export(
    data: bytes,
    *,
    name: str = "<bytes>",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decoded_before: bool = False,
) -> bytes:
    """The bytes to embed in the export for an image file's bytes ``data``.

    The original file when it is already an upright 8-bit RGB JPEG/PNG/WebP (no generation
    loss); otherwise the decoded upright RGB image, re-encoded as JPEG (quality 95) when the
    source was a JPEG and as PNG otherwise.

    ``decoded_before``: these exact bytes already decoded without error (the face stage decoded
    them, and the caller checked their content id). Whether they go in unchanged is then read
    from the header alone (format, mode, EXIF orientation), without decoding the pixels again;
    the result is the same bytes either way.
    """
    if decoded_before:
        try:
            img = _open_checked(data, name, max_pixels)
            as_is = (
                img.format in _PASSTHROUGH_FORMATS and img.mode == "RGB" and _orientation(img) <= 1
            )
        except ImageDecodeError:
            raise
        except Exception as exc:  # any failure of one file (PIL raises many types) is its reason
            raise _decode_error(exc, name) from exc
        if as_is:
            return data
    decoded = decode_image(data, name=name, max_pixels=max_pixels)
    if not decoded.converted:
        return data
    buf = io.BytesIO()
    if decoded.format == "JPEG":
        decoded.image.save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        decoded.image.save(buf, format="PNG")
    return buf.getvalue()


def export_bytes(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """:func:`encode_for_export` of the file at ``path``."""
    return encode_for_export(_read_bytes(path), name=str(path), max_pixels=max_pixels)


# --- fast path for detection ----------------------------------------------------------------

# EXIF orientations that swap width and height (transpose, rotate 270, transverse, rotate 90).
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(slots=True)
class ReducedImage:
    """An upright RGB array for detection, with the facts about the full image.

    ``pixels`` is ``(h, w, 3)`` uint8 with ``max(h, w) <= long_side`` (never upscaled);
    ``width``/``height`` are the full image as displayed (after EXIF orientation).
    """

    pixels: np.ndarray
    image_id: str
    width: int
    height: int
    format: str | None
    source_mode: str


def fit_long_side(pixels: np.ndarray, long_side: int) -> np.ndarray:
    """``pixels`` resized (aspect kept) so its long side is ``long_side``; unchanged if smaller.

    Bilinear below a factor of 2 (biubug6's RetinaFace resize), area averaging above it so that
    large reductions do not alias.
    """
    h, w = pixels.shape[:2]
    if max(h, w) <= long_side:
        return pixels
    factor = max(h, w) / long_side
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    interpolation = cv2.INTER_AREA if factor >= 2 else cv2.INTER_LINEAR
    return cv2.resize(pixels, size, interpolation=interpolation)


def _pixels(rgb: Image.Image, long_side: int) -> np.ndarray:
    """``rgb`` as a ``(h, w, 3)`` array fitted to ``long_side``.

    ``np.asarray`` on a PIL image packs it through ``tobytes`` while holding the GIL (about as
    long as the JPEG decode itself), which would serialise the decode threads. PIL's Arrow export
    is a zero-copy view of its 4-byte pixels instead; OpenCV then resizes and drops the padding
    byte with the GIL released. Images PIL stores in several memory blocks (above ~16 MB, which
    JPEGs decoded at reduced scale never are) take the copying path.
    """
    w, h = rgb.size
    try:
        rgbx = pa.array(rgb).values.to_numpy(zero_copy_only=True).reshape(h, w, 4)
    except (ValueError, TypeError, AttributeError, pa.ArrowException):
        return fit_long_side(np.asarray(rgb), long_side)
    return cv2.cvtColor(fit_long_side(rgbx, long_side), cv2.COLOR_RGBA2RGB)


def _decode_error(exc: BaseException, name: str) -> ImageDecodeError:
    """The rejection reason for an exception raised while opening or decoding ``name``."""
    if isinstance(exc, ImageDecodeError):
        return exc
    if isinstance(exc, UnidentifiedImageError):
        return ImageDecodeError("not_an_image", f"{name}: not a format PIL can identify")
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return ImageDecodeError("too_large", f"{name}: {exc}")
    if isinstance(exc, OSError):
        low = str(exc).lower()
        reason = "truncated" if "truncated" in low or "broken data stream" in low else "corrupt"
        return ImageDecodeError(reason, f"{name}: {exc}")
    return ImageDecodeError("corrupt", f"{name}: {type(exc).__name__}: {exc}")


def decode_reduced(
    data: bytes,
    *,
    long_side: int,
    name: str = "<bytes>",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget: PixelBudget | None = None,
) -> ReducedImage:
    """Decode ``data`` for detection: upright RGB, long side <= ``long_side``.

    Same rejections as :func:`decode_image` (a truncated file fails even when the JPEG would be
    decoded at 1/8 scale: libjpeg still reads every scan). Safe to call from several threads;
    threads sharing a ``budget`` hold at most its pixels in full-size buffers at once.
    """
    if long_side < 1:
        raise ValueError(f"long_side must be >= 1, got {long_side}")
    held = 0
    try:
        img = _open_checked(data, name, max_pixels)
        fmt = img.format
        w, h = img.size
        orientation = _orientation(img)
        factor = max(w, h) / long_side
        if factor >= 2 and fmt == "JPEG":
            # DCT scaling by 1/2, 1/4 or 1/8, never below the target size.
            img.draft(None, (max(1, int(w / factor)), max(1, int(h / factor))))
        if budget is not None:
            # After draft(): a JPEG decoded at 1/8 scale holds 1/64 of its pixels.
            held = budget.acquire(img.size[0] * img.size[1])
        img.load()
        source_mode = img.mode
        upright = ImageOps.exif_transpose(img) if orientation > 1 else img
        rgb, _ = _to_rgb(upright)
        pixels = _pixels(rgb, long_side)
        del img, upright, rgb
    except Exception as exc:  # any failure of one file (PIL raises many types) is its reason
        raise _decode_error(exc, name) from exc
    finally:
        if held:
            budget.release(held)  # type: ignore[union-attr]
    if orientation in _SWAPPING_ORIENTATIONS:
        w, h = h, w
    return ReducedImage(
        pixels=pixels,
        image_id=content_id(data),
        width=w,
        height=h,
        format=fmt,
        source_mode=source_mode,
    )


def read_reduced(
    path: str | os.PathLike[str],
    *,
    long_side: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget: PixelBudget | None = None,
) -> ReducedImage:
    """Read ``path`` and :func:`decode_reduced` it; a missing file is ``missing_file``."""
    return decode_reduced(
        _read_bytes(path), long_side=long_side, name=str(path), max_pixels=max_pixels, budget=budget
    )
