"""Perceptual hashes of a decoded image: 64 bits that survive re-encoding, resizing and crops.

The DCT hash (pHash): grey levels, area-resized to 32 x 32, 2-D DCT, the 8 x 8 lowest
frequencies, one bit per coefficient above their median. Copies of one photo differ in a few
bits, different photos in about 32. One hash moves by 6-24 bits when 2-5% of each side is
cropped away, as much as two different photos can differ, so each image also keeps the hashes
of its centre crops (``CROP_FRACTIONS`` of each side): a copy cropped by up to 10% a side lands
within a few bits of one of the original's crops (``python -m bench.near_duplicates``).

They are computed from the pixels the face stage has already decoded
(``hae_data.faces.filter``), so they cost no second read of the file, and those pixels are
upright (EXIF orientation applied), so a copy rotated by its tag hashes alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["CROP_FRACTIONS", "PHASH_VERSION", "hamming", "phash", "phashes"]

#: Changes whenever the hashes change; detections stored with other hashes are redone.
PHASH_VERSION = 1
#: Centre crops hashed besides the whole image, as the fraction cut from each side.
CROP_FRACTIONS = (0.025, 0.05, 0.075, 0.10)


def phash(pixels: np.ndarray) -> str:
    """The 64-bit DCT hash of an RGB (``h, w, 3``) or grey (``h, w``) uint8 image, 16 hex
    digits (the most significant bit is the DCT's (0, 0) coefficient)."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else pixels
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low)
    return f"{int(np.packbits(bits).view('>u8')[0]):016x}"


def phashes(pixels: np.ndarray, fractions: Sequence[float] = CROP_FRACTIONS) -> list[str]:
    """The whole image's :func:`phash`, then one per centre crop in ``fractions``."""
    h, w = pixels.shape[:2]
    out = [phash(pixels)]
    for f in fractions:
        dy, dx = round(h * f), round(w * f)
        crop = pixels[dy : h - dy, dx : w - dx] if h - 2 * dy > 0 and w - 2 * dx > 0 else pixels
        out.append(phash(np.ascontiguousarray(crop)))
    return out


def hamming(a: str, b: str) -> int:
    """The number of bits in which two hashes from :func:`phash` differ."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
