"""What every fixture writer shares: the manifest, image files, hostile rows, file writers.

A fixture is a miniature copy of one source in its native layout, with known answers. Each
source's writer lives in the source's own module, beside its loader (``write_fixture`` in
:mod:`hae_data.sources.ava`, ...); :func:`hae_data.sources.write_fixture` picks one by name.

``write_fixture(name, root, n=6)`` writes ``n`` good items of source ``name`` under ``root``
exactly as the authors distribute the dataset (``AVA.txt``, ``All_Ratings.xlsx`` with 60 raters
per image, the MEBeauty wide workbook, ...), plus, with ``broken=True``, a few deliberately bad
rows: wrong column count, non-numeric and out-of-range scores, a missing image file, a duplicate
id, and for the per-rater sources too few raters and a duplicate (image, rater). It returns a
:class:`FixtureManifest` that says what the loader should produce: how many records, which
rejection reasons how often, and each record's expected raw score (computed here from the
generated ratings, independently of the loader).

``layout`` picks one of the real layouts a source is found in (the module's ``LAYOUTS`` lists
them, gathered in :data:`hae_data.sources.LAYOUTS`; the first is the default, the most common
one, which the demo uses). ``hostile=True`` adds rows no real download has, which the loader must
reject without stopping: paths that leave the root (``..``, absolute, a symlink to a file
outside), a symlink loop, and for text label files an undecodable name and a field over the csv
module's size limit (:func:`write_hostile_files` makes the files they name).

Images are small generated JPEGs unless ``images`` is given: a sequence of encoded images or a
function from the item index to encoded bytes. The demo passes real photos that way (good
items use ``images`` in order; the few extra files for broken cases are always generated).

The tests use these fixtures; nothing is downloaded.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "HUGE_FIELD",
    "FixtureImages",
    "FixtureManifest",
    "HostileNames",
    "ImageProvider",
    "append_bytes",
    "check_layout",
    "check_n",
    "folder_prefix",
    "make_jpeg",
    "mean_std",
    "seeded_rng",
    "write_csv",
    "write_hostile_files",
    "write_scored_csv",
    "write_xlsx",
]

#: Encoded images for the good items, in order, or a function from item index to bytes.
ImageProvider = Sequence[bytes] | Callable[[int], bytes] | None


@dataclass
class FixtureManifest:
    """What a loader should produce from a fixture.

    ``scores`` maps each expected record's ``file_name`` to its raw score; ``rater_counts`` and
    ``dimension_scores`` do the same where the source has raters or 12 dimensions,
    ``score_stds`` where it publishes a standard deviation, ``metadata`` lists metadata entries
    each record must carry. ``options``
    are constructor keyword arguments the loader needs for this fixture (usually none).
    """

    source: str
    root: Path
    kept: int
    rejected: dict[str, int]
    scores: dict[str, float]
    rater_counts: dict[str, int] = field(default_factory=dict)
    dimension_scores: dict[str, list[float]] = field(default_factory=dict)
    score_stds: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def total_rejected(self) -> int:
        """The number of rejections expected."""
        return sum(self.rejected.values())


def make_jpeg(index: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small JPEG, different for every ``index`` (so every image has its own content hash)."""
    from PIL import Image, ImageDraw

    w, h = size
    rng = np.random.default_rng(index)
    base = rng.integers(0, 256, size=3)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.empty((h, w, 3), dtype=np.uint8)
    for c in range(3):
        arr[..., c] = (base[c] + x * (c + 1) * 3 + y * (3 - c) * 2) % 256
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    draw.rectangle([x0, y0, x0 + w // 3, y0 + h // 3], fill=tuple(int(v) for v in 255 - base))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class FixtureImages:
    """Writes image files: provider bytes for good items, generated ones for the extras."""

    def __init__(self, provider: ImageProvider, n: int) -> None:
        if provider is not None and not callable(provider) and len(provider) < n:
            raise ValueError(f"images has {len(provider)} item(s); the fixture needs n={n}")
        self.provider = provider
        self.extra = 0

    def good(self, path: Path, index: int) -> None:
        """Write good item ``index``'s image at ``path``."""
        if self.provider is None:
            data = make_jpeg(index)
        elif callable(self.provider):
            data = self.provider(index)
        else:
            data = self.provider[index]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def extra_file(self, path: Path) -> None:
        """Write a generated image at ``path`` (for the broken cases' files)."""
        self.extra += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_jpeg(100_000 + self.extra))


def seeded_rng(name: str) -> np.random.Generator:
    """A generator seeded from ``name``: each writer draws the same numbers on every run."""
    return np.random.default_rng(sum(ord(c) * 31**i for i, c in enumerate(name)) % 2**32)


def check_n(n: int, minimum: int = 1) -> None:
    """``ValueError`` unless ``n >= minimum`` (the good items a writer needs)."""
    if n < minimum:
        raise ValueError(f"n must be >= {minimum}, got {n}")


def write_csv(path: Path, rows: list[list[Any]], *, encoding: str = "utf-8") -> None:
    """``rows`` as a CSV file, its folder made first."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)


def write_xlsx(path: Path, sheets: dict[str, list[list[Any]]]) -> None:
    """An ``.xlsx`` workbook with one sheet per entry of ``sheets``, in order."""
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def folder_prefix(folder: Path, root: Path) -> str:
    """``folder`` relative to ``root`` as a ``file_name`` prefix (``""`` for the root)."""
    rel = folder.relative_to(root).as_posix()
    return "" if rel == "." else rel + "/"


def check_layout(source: str, layout: str, layouts: Sequence[str]) -> str:
    """``layout`` if it is one of the source's ``layouts``; else a ``ValueError`` listing them."""
    if layout not in layouts:
        raise ValueError(f"{source}: unknown layout {layout!r}; known: {tuple(layouts)}")
    return layout


#: A CSV field longer than the csv module's default limit (131,072 characters).
HUGE_FIELD = "x" * 200_000


@dataclass(frozen=True)
class HostileNames:
    """Names for label rows that must be rejected, and what each must be rejected as.

    ``stranger`` is a real file outside the dataset root that must never be opened.
    """

    stranger: Path
    rows: dict[str, str]


def write_hostile_files(root: Path, images_dir: Path) -> HostileNames:
    """A file outside ``root`` and, in ``images_dir``, a symlink to it and a symlink loop.

    Returns the label names (relative to ``images_dir``) with the reason each must get:
    ``..`` segments, an absolute path and the outward symlink are ``outside_root``, the loop
    is ``symlink_loop``.
    """
    stranger = root.parent / f"{root.name}-stranger.jpg"
    stranger.write_bytes(make_jpeg(424_242))
    images_dir.mkdir(parents=True, exist_ok=True)
    (images_dir / "link-out.jpg").symlink_to(stranger)
    (images_dir / "loop.jpg").symlink_to(images_dir / "loop.jpg")
    depth = len(images_dir.relative_to(root).parts)
    return HostileNames(
        stranger,
        {
            "../" * (depth + 1) + stranger.name: "outside_root",
            str(stranger): "outside_root",
            "link-out.jpg": "outside_root",
            "loop.jpg": "symlink_loop",
        },
    )


def append_bytes(path: Path, data: bytes) -> None:
    """Append raw ``data`` to a file (bytes no text writer would produce)."""
    with open(path, "ab") as fh:
        fh.write(data)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value), as the loaders compute them."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


def write_scored_csv(
    name: str,
    root: Path,
    label_files: list[tuple[Path, str]],
    images_dir: Path,
    *,
    n: int,
    images: ImageProvider,
    broken: bool,
    hostile: bool,
    scale: tuple[float, float],
    stem: Callable[[int], str],
) -> FixtureManifest:
    """A source whose label files are ``image,score`` CSVs (TAD66K, BAID): one file per split.

    ``stem(i)`` names item ``i``'s image; broken and hostile rows go to the first file, a
    duplicate of the first image to the last one."""
    rng = seeded_rng(name)
    files = FixtureImages(images, n)
    rows: dict[Path, list[list[Any]]] = {path: [["image", "score"]] for path, _ in label_files}
    scores: dict[str, float] = {}
    meta: dict[str, dict[str, Any]] = {}
    prefix = folder_prefix(images_dir, root)
    lo, hi = scale
    for i in range(n):
        path, split = label_files[i % len(label_files)]
        image = f"{stem(i)}.jpg"
        score = round(float(lo + (hi - lo) * rng.uniform(0.05, 0.95)), 6)
        rows[path].append([image, f"{score}"])
        files.good(images_dir / image, i)
        scores[f"{prefix}{image}"] = score
        meta[f"{prefix}{image}"] = {"official_split": split}
    rejected: Counter[str] = Counter()
    if broken:
        first, last = label_files[0][0], label_files[-1][0]
        rows[first].append([f"{stem(900)}.jpg", "5.0", "extra"])
        rejected["malformed_row"] += 1
        rows[first].append([f"{stem(901)}.jpg", "abc"])
        rejected["non_numeric_score"] += 1
        rows[first].append([f"{stem(902)}.jpg", f"{hi + 2.5}"])
        rejected["score_out_of_range"] += 1
        rows[first].append([f"{stem(903)}.jpg", f"{(lo + hi) / 2}"])  # no file
        rejected["missing_file"] += 1
        rows[last].append([rows[first][1][0], "1.0"])  # the first good image again
        rejected["duplicate_id"] += 1
    first = label_files[0][0]
    if hostile:
        for label, reason in write_hostile_files(root, images_dir).rows.items():
            rows[first].append([label, f"{(lo + hi) / 2}"])
            rejected[reason] += 1
        rows[first].append([f"{stem(950)}.jpg", HUGE_FIELD])
        rejected["malformed_row"] += 1
    for path, content in rows.items():
        write_csv(path, content)
    if hostile:
        append_bytes(first, b"\xff\xfe.jpg,5.0\r\n")
        rejected["undecodable_name"] += 1
    return FixtureManifest(name, root, n, dict(rejected), scores, metadata=meta)
