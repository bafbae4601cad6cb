"""The embedded demo: miniature copies of all six sources and the 12-dimension annotations.

Each source is written in its native layout by its fixture writer (``write_fixture`` in the
source's module, through :func:`hae_data.sources.write_fixture`), with real photos that ship
with scikit-image instead of generated noise, so the face filter's decisions in the demo are real:

- single-face portraits: variants of ``astronaut`` and ``camera`` (flips, crops, brightness,
  scale, one stored with an EXIF rotation), expected to be kept;
- group photos: several face crops side by side on one canvas, expected ``multi_face``;
- photos without people (``coffee``, ``chelsea`` the cat, ``rocket``, ``coins``, ...), expected
  ``no_face``;
- plus, from the fixture writers, broken label rows, missing files and duplicate ids, and one
  truncated JPEG and one zero-byte file per source (``truncated``, ``empty_file``).

``write_demo(root)`` writes everything and a ``sources.yaml`` that the flow reads.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from hae_data.sources import TRAINING_SOURCES, write_fixture
from hae_data.sources.fixtures import FixtureManifest

__all__ = [
    "DEMO_SOURCES",
    "DemoManifest",
    "demo_photos",
    "write_demo",
]

log = logging.getLogger(__name__)

#: The six public sources of the 58K part, then the 12-dimension annotations.
DEMO_SOURCES = TRAINING_SOURCES
ANNOTATIONS = "humanbeauty_50k"


@dataclass
class DemoPhoto:
    """An encoded photo and the face-filter decision it is expected to get."""

    name: str
    data: bytes
    expected: str  # "keep", "multi_face" or "no_face"


@dataclass
class DemoManifest:
    """What ``write_demo`` wrote: roots per source, the fixture manifests, expected decisions."""

    root: Path
    sources: dict[str, Path]
    annotations: Path
    config: Path
    fixtures: dict[str, FixtureManifest] = field(default_factory=dict)
    #: Per source, the face stage's expected decision for each good item's file: ``keep``,
    #: ``multi_face``, ``no_face``, ``truncated`` or ``empty_file``.
    expected: dict[str, dict[str, str]] = field(default_factory=dict)


def _jpeg(arr: np.ndarray, quality: int = 90, exif: Image.Exif | None = None) -> bytes:
    img = Image.fromarray(arr)
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _scaled(arr: np.ndarray, factor: float) -> np.ndarray:
    img = Image.fromarray(arr)
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return np.asarray(img.resize(size, Image.Resampling.LANCZOS))


def _bright(arr: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(arr.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def _group(crops: list[np.ndarray], gap: int = 60) -> np.ndarray:
    """Face crops side by side on a grey canvas: a group photo."""
    crops = [c if c.ndim == 3 else np.stack([c] * 3, -1) for c in crops]
    h = max(c.shape[0] for c in crops) + 2 * gap
    w = sum(c.shape[1] for c in crops) + gap * (len(crops) + 1)
    canvas = np.full((h, w, 3), 128, np.uint8)
    x = gap
    for c in crops:
        canvas[gap : gap + c.shape[0], x : x + c.shape[1]] = c
        x += c.shape[1] + gap
    return canvas


def demo_photos() -> dict[str, list[DemoPhoto]]:
    """The demo's real photos, grouped by the decision each should get."""
    from skimage import data

    astro = data.astronaut()
    camera = data.camera()
    face_a = astro[20:230, 130:320]
    face_c = camera[30:260, 160:360]
    rotated = Image.Exif()
    rotated[0x0112] = 6  # stored sideways, displayed upright once the EXIF rotation is applied
    upright_stored_sideways = np.ascontiguousarray(np.rot90(astro, k=1))
    keep = [
        DemoPhoto("astronaut", _jpeg(astro), "keep"),
        DemoPhoto("astronaut_mirror", _jpeg(astro[:, ::-1]), "keep"),
        DemoPhoto("astronaut_dim", _jpeg(_bright(astro, 0.8)), "keep"),
        DemoPhoto("astronaut_crop", _jpeg(astro[0:400, 60:420]), "keep"),
        DemoPhoto("astronaut_large", _jpeg(_scaled(astro, 1.6), quality=85), "keep"),
        DemoPhoto("astronaut_small", _jpeg(_scaled(astro, 0.75)), "keep"),
        DemoPhoto("astronaut_exif6", _jpeg(upright_stored_sideways, exif=rotated), "keep"),
        DemoPhoto("camera", _jpeg(camera), "keep"),
        DemoPhoto("camera_mirror", _jpeg(camera[:, ::-1]), "keep"),
        DemoPhoto("camera_bright", _jpeg(_bright(camera, 1.15)), "keep"),
    ]
    multi = [
        DemoPhoto("group_three", _jpeg(_group([face_a, face_a[:, ::-1], face_a])), "multi_face"),
        DemoPhoto("group_pair", _jpeg(_group([face_a, face_c])), "multi_face"),
    ]
    none = [
        DemoPhoto("coffee", _jpeg(data.coffee()), "no_face"),
        DemoPhoto("chelsea_cat", _jpeg(data.chelsea()), "no_face"),
        DemoPhoto("rocket", _jpeg(data.rocket()), "no_face"),
        DemoPhoto("coins", _jpeg(data.coins()), "no_face"),
    ]
    return {"keep": keep, "multi_face": multi, "no_face": none}


def _tagged(jpeg: bytes, tag: str) -> bytes:
    """The same JPEG with a comment segment naming ``tag``: identical pixels, distinct bytes.

    The image id is a hash of the bytes, so without this the same photo in two demo sources
    would be one image and the second copy a ``duplicate_image``.
    """
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    text = f"humanbeauty demo: {tag}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def _provider(photos: list[DemoPhoto], source: str) -> Callable[[int], bytes]:
    return lambda i: _tagged(photos[i % len(photos)].data, f"{source}/{i}")


#: Marks a folder as the demo's own, which a later write_demo may update and prune.
DEMO_MARKER = ".humanbeauty-demo"


def write_demo(root: str | os.PathLike[str], *, per_source: int = 10) -> DemoManifest:
    """Write the demo sources under ``root`` and a ``sources.yaml`` naming their folders.

    Each public source gets ``per_source`` good label rows: mostly single-face portraits, one
    group photo and one or two photos without people (so every source loses some images to the
    face filter). The 12-dimension annotations get portraits only (that part is not
    face-filtered).
    """
    if per_source < 6:
        raise ValueError(f"per_source must be >= 6 (portraits, a group, no-face), got {per_source}")
    final = Path(root)
    marker = final / DEMO_MARKER
    if final.is_dir() and any(final.iterdir()) and not marker.is_file():
        # _sync_tree deletes what the demo does not hold: never in a folder the demo did not
        # write.
        raise FileExistsError(
            f"{final} is not empty and holds no {DEMO_MARKER}: not writing the demo over it; "
            "choose another folder"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{final.name}.", dir=final.parent) as tmp:
        manifest = _write_demo(Path(tmp), per_source)
        _sync_tree(Path(tmp), final)
    return _relocate(manifest, Path(tmp), final)


def _write_demo(root: Path, per_source: int) -> DemoManifest:
    photos = demo_photos()
    manifest = DemoManifest(
        root=root, sources={}, annotations=root / ANNOTATIONS, config=root / "sources.yaml"
    )
    (root / DEMO_MARKER).write_text("written by hae_data.demo.write_demo\n", encoding="utf-8")
    for k, name in enumerate(DEMO_SOURCES):
        n_none = 1 + k % 2
        n_keep = per_source - 1 - n_none
        # Rotate through the photos so sources differ, while every photo appears somewhere.
        keep = [photos["keep"][(k * 3 + i) % len(photos["keep"])] for i in range(n_keep)]
        group = [photos["multi_face"][k % len(photos["multi_face"])]]
        none = [photos["no_face"][(k + i) % len(photos["no_face"])] for i in range(n_none)]
        chosen = keep + group + none
        folder = root / name
        fixture = write_fixture(name, folder, n=per_source, images=_provider(chosen, name))
        manifest.fixtures[name] = fixture
        manifest.sources[name] = folder
        # The fixture lists its good items' files in item order, the order of ``chosen``.
        files = list(fixture.scores)
        manifest.expected[name] = {f: p.expected for f, p in zip(files, chosen, strict=True)}
        # Two portraits become broken files that stay in the labels: the face stage, not the
        # loader, must reject them.
        truncated, empty = folder / files[0], folder / files[1]
        data = truncated.read_bytes()
        truncated.write_bytes(data[: len(data) // 2])
        empty.write_bytes(b"")
        manifest.expected[name][files[0]] = "truncated"
        manifest.expected[name][files[1]] = "empty_file"
    portraits = photos["keep"]
    fixture = write_fixture(
        ANNOTATIONS, manifest.annotations, n=per_source, images=_provider(portraits, ANNOTATIONS)
    )
    manifest.fixtures[ANNOTATIONS] = fixture
    manifest.expected[ANNOTATIONS] = dict.fromkeys(fixture.scores, "keep")
    return manifest


def _sync_tree(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src``, touching only files whose bytes differ.

    Unchanged files keep their modification times, so a second demo build finds its face-stage
    completion files still valid and does no detection work.
    """
    dst.mkdir(parents=True, exist_ok=True)
    wanted = {p.relative_to(src) for p in src.rglob("*") if p.is_file()}
    for rel in sorted(wanted):
        target = dst / rel
        data = (src / rel).read_bytes()
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src / rel, target)
    for path in sorted(dst.rglob("*"), reverse=True):
        rel = path.relative_to(dst)
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    log.info("demo sources written under %s", dst)


def _relocate(manifest: DemoManifest, old: Path, new: Path) -> DemoManifest:
    """The manifest with every path moved from the staging folder to the final one."""

    def move(p: Path) -> Path:
        return new / p.relative_to(old)

    for fixture in manifest.fixtures.values():
        fixture.root = move(fixture.root)
    manifest.root = new
    manifest.sources = {k: move(v) for k, v in manifest.sources.items()}
    manifest.annotations = move(manifest.annotations)
    manifest.config = move(manifest.config)
    config = {
        "sources": {name: str(path) for name, path in manifest.sources.items()},
        "annotations": str(manifest.annotations),
        # The demo's portraits are variants of two photos on purpose (so the face filter's
        # decisions are real); near-duplicate grouping would fold each source into a few images.
        "near_duplicate_distance": None,
    }
    text = yaml.safe_dump(config, sort_keys=False)
    if not manifest.config.is_file() or manifest.config.read_text() != text:
        manifest.config.write_text(text)
    return manifest
