"""How far apart are copies of one photo, and different photos, in perceptual-hash bits?

The measurement behind ``hae_data.near_duplicates.DEFAULT_MAX_DISTANCE``. It takes the real
photos scikit-image ships, makes the copies a dataset picks up on its way around the web
(re-encoded at JPEG quality 90 to 30, resized to 1/2 and 1/4, cropped by 2-20% of each side or
5% off one side, brightened, and a resize + crop + re-encode combination), and hashes every
copy through the pipeline's own path (JPEG bytes -> ``decode_reduced`` at the face stage's
long side -> ``phashes``). Positives: each copy against its original. Negatives: every pair
of different photos, originals and copies alike. Prints a Markdown table (the largest distance
per kind of copy, the smallest between different photos) and writes JSON with ``--json``.

    python -m bench.near_duplicates [--json out/near_duplicates.json]

It runs twice: hashing the whole image only, and with the centre-crop hashes the pipeline keeps
(``hae_data.phash.CROP_FRACTIONS``), to show what the crops buy.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from hae_data.images import decode_reduced
from hae_data.near_duplicates import DEFAULT_MAX_DISTANCE, distance
from hae_data.phash import CROP_FRACTIONS, phashes

#: scikit-image photos bundled with the wheel (the others download on first use).
PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
LONG_SIDE = 640


def load_photos() -> dict[str, Image.Image]:
    """The bundled photos as RGB PIL images, by name (those that fail to load are skipped)."""
    from skimage import data

    out = {}
    for name in PHOTOS:
        try:
            arr = getattr(data, name)()
        except Exception:  # a photo that needs a download is not there offline
            continue
        out[name] = Image.fromarray(arr).convert("RGB")
    return out


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _crop(img: Image.Image, frac: float) -> Image.Image:
    w, h = img.size
    dx, dy = round(w * frac), round(h * frac)
    return img.crop((dx, dy, w - dx, h - dy))


def _resize(img: Image.Image, scale: float) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)


def _reencode(img: Image.Image, quality: int) -> bytes:
    return _jpeg(img, quality)


def _resized(img: Image.Image, divisor: int) -> bytes:
    return _jpeg(_resize(img, 1 / divisor), 85)


def _cropped(img: Image.Image, frac: float) -> bytes:
    return _jpeg(_crop(img, frac), 85)


#: Kind of copy -> how to make it (image -> JPEG bytes).
COPIES: dict[str, Callable[[Image.Image], bytes]] = {
    **{f"re-encode q{q}": partial(_reencode, quality=q) for q in (90, 70, 50, 30)},
    **{f"resize 1/{d}": partial(_resized, divisor=d) for d in (2, 4)},
    **{
        f"crop {round(f * 100)}% a side": partial(_cropped, frac=f)
        for f in (0.02, 0.05, 0.10, 0.20)
    },
    "crop 5% off the left only": lambda im: _jpeg(
        im.crop((round(im.width * 0.05), 0, *im.size)), 85
    ),
    "brightness +15%": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.15), 85),
    "resize 1/2 + crop 5% + q60": lambda im: _jpeg(_crop(_resize(im, 0.5), 0.05), 60),
}


def hash_bytes(data: bytes, fractions: tuple[float, ...] = CROP_FRACTIONS) -> list[str]:
    """The pipeline's hashes of an encoded image: reduced decode as in the face stage, then
    :func:`phashes` (``fractions=()``: the whole image's alone)."""
    return phashes(decode_reduced(data, long_side=LONG_SIDE).pixels, fractions)


def measure(fractions: tuple[float, ...] = CROP_FRACTIONS) -> dict[str, object]:
    """Positive distances per kind of copy and the negative distances between photos."""
    photos = load_photos()
    hashes: dict[str, dict[str, list[str]]] = {}
    for name, img in photos.items():
        hashes[name] = {"original": hash_bytes(_jpeg(img, 95), fractions)}
        for kind, make in COPIES.items():
            hashes[name][kind] = hash_bytes(make(img), fractions)
    positives: dict[str, list[int]] = defaultdict(list)
    for per in hashes.values():
        for kind in COPIES:
            positives[kind].append(distance(per["original"], per[kind]))
    negatives = [
        distance(ha, hb)
        for a, b in itertools.combinations(hashes, 2)
        for ha in hashes[a].values()
        for hb in hashes[b].values()
    ]
    return {
        "photos": sorted(photos),
        "long_side": LONG_SIDE,
        "crop_fractions": list(fractions),
        "positives": {k: sorted(v) for k, v in positives.items()},
        "negatives_min": min(negatives),
        "negatives_count": len(negatives),
        "negatives_percentiles": {p: float(np.percentile(negatives, p)) for p in (0.1, 1, 5, 50)},
        "default_max_distance": DEFAULT_MAX_DISTANCE,
    }


def markdown(result: dict[str, object]) -> str:
    """The measurement as a Markdown table."""
    t = DEFAULT_MAX_DISTANCE
    lines = [
        f"{len(result['photos'])} scikit-image photos, hashed after a reduced decode to a "  # type: ignore[arg-type]
        f"{result['long_side']}-px long side. Distances in bits out of 64; copies found at the "
        f"default `max_distance` {t}:",
        "",
        "| copy of the photo | median | max | found at <= " + str(t) + " |",
        "|---|---:|---:|---:|",
    ]
    for kind, values in result["positives"].items():  # type: ignore[union-attr]
        found = sum(v <= t for v in values)
        lines.append(
            f"| {kind} | {int(np.median(values))} | {max(values)} | {found}/{len(values)} |"
        )
    pct = result["negatives_percentiles"]
    lines += [
        "",
        f"Different photos ({result['negatives_count']} pairs, copies included): smallest "
        f"distance {result['negatives_min']}, 0.1st / 1st / 5th / 50th percentile "
        + " / ".join(f"{v:g}" for v in pct.values())  # type: ignore[union-attr]
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure (with and without the crop hashes), print the tables, optionally write JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.near_duplicates")
    parser.add_argument("--json", help="also write the raw distances here")
    args = parser.parse_args(argv)
    results = {}
    for label, fractions in (("whole image only", ()), ("whole + centre crops", CROP_FRACTIONS)):
        results[label] = measure(fractions)
        sys.stdout.write(f"\n#### {label} (crops {list(fractions)})\n\n")
        sys.stdout.write(markdown(results[label]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
