"""Fixture writers: a miniature copy of each source in its native layout, with known answers.

``write_fixture(name, root, n=6)`` writes ``n`` good items of source ``name`` under ``root``
exactly as the authors distribute the dataset (``AVA.txt``, ``All_Ratings.xlsx`` with 60 raters
per image, the MEBeauty wide workbook, ...), plus, with ``broken=True``, a few deliberately bad
rows: wrong column count, non-numeric and out-of-range scores, a missing image file, a duplicate
id, and for the per-rater sources too few raters and a duplicate (image, rater). It returns a
:class:`FixtureManifest` that says what the loader should produce: how many records, which
rejection reasons how often, and each record's expected raw score (computed here from the
generated ratings, independently of the loader).

``layout`` picks one of the real layouts a source is found in (:data:`LAYOUTS` lists them per
source; the first is the default, the most common one, which the demo uses). ``hostile=True``
adds rows no real download has, which the loader must reject without stopping: paths that
leave the root (``..``, absolute, a symlink to a file outside), a symlink loop, and for text
label files an undecodable name and a field over the csv module's size limit
(:func:`write_hostile_files` makes the files they name).

Images are small generated JPEGs unless ``images`` is given: a sequence of encoded images or a
function from the item index to encoded bytes. The demo passes real photos that way (good
items use ``images`` in order; the few extra files for broken cases are always generated).

The tests use these fixtures; nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotation_schema import load_standard
from hae_data.sources.apddv2 import ATTRIBUTES as APDD_ATTRIBUTES

__all__ = [
    "HUGE_FIELD",
    "LAYOUTS",
    "WRITERS",
    "FixtureManifest",
    "HostileNames",
    "ImageProvider",
    "make_jpeg",
    "write_fixture",
    "write_hostile_files",
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


class _Images:
    """Writes image files: provider bytes for good items, generated ones for the extras."""

    def __init__(self, provider: ImageProvider, n: int) -> None:
        if provider is not None and not callable(provider) and len(provider) < n:
            raise ValueError(f"images has {len(provider)} item(s); the fixture needs n={n}")
        self.provider = provider
        self.extra = 0

    def good(self, path: Path, index: int) -> None:
        if self.provider is None:
            data = make_jpeg(index)
        elif callable(self.provider):
            data = self.provider(index)
        else:
            data = self.provider[index]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def extra_file(self, path: Path) -> None:
        self.extra += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_jpeg(100_000 + self.extra))


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(sum(ord(c) * 31**i for i, c in enumerate(name)) % 2**32)


def _check_n(n: int, minimum: int = 1) -> None:
    if n < minimum:
        raise ValueError(f"n must be >= {minimum}, got {n}")


def _write_csv(path: Path, rows: list[list[Any]], *, encoding: str = "utf-8") -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)


def _xlsx(path: Path, sheets: dict[str, list[list[Any]]]) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def _prefix(folder: Path, root: Path) -> str:
    """``folder`` relative to ``root`` as a ``file_name`` prefix (``""`` for the root)."""
    rel = folder.relative_to(root).as_posix()
    return "" if rel == "." else rel + "/"


def _layout(source: str, layout: str) -> str:
    if layout not in LAYOUTS[source]:
        raise ValueError(f"{source}: unknown layout {layout!r}; known: {LAYOUTS[source]}")
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


def _append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


# -- AVA ---------------------------------------------------------------------------------


#: AVA layouts: (folder of ``AVA.txt`` and its lists, image folder), relative to the root.
_AVA_LAYOUTS = {
    "images": (".", "images"),
    "archive": ("AVA_dataset", "AVA_dataset/images/images"),
    "images/images": (".", "images/images"),
    "image": ("AVA_dataset", "image"),
    "flat": (".", "."),
}


def write_ava(
    root: Path,
    *,
    n: int = 6,
    images: ImageProvider = None,
    broken: bool = True,
    layout: str = "images",
    hostile: bool = False,
) -> FixtureManifest:
    """``AVA.txt`` (15 columns), ``tags.txt``, ``challenges.txt``, the generic split lists and
    ``<id>.jpg`` images in the ``layout``'s folder. Item 0 has no tags (``0 0``), item 1 one
    tag (``15 0``)."""
    _check_n(n)
    meta_dir, image_dir = (root / d for d in _AVA_LAYOUTS[_layout("ava", layout)])
    prefix = _prefix(image_dir, root)
    rng = _rng("ava")
    files = _Images(images, n)
    meta_dir.mkdir(parents=True, exist_ok=True)
    (meta_dir / "tags.txt").write_text("1 Abstract\n15 Nature\n17 Portraiture\n18 Still Life\n")
    (meta_dir / "challenges.txt").write_text("100 Portraits\n101 Free_Study\n102 Faces\n")
    lines: list[str] = []
    scores: dict[str, float] = {}
    counts: dict[str, int] = {}
    meta: dict[str, dict[str, Any]] = {}
    train, test = [], []
    for i in range(n):
        image_id = str(953_000 + i)
        votes = [int(v) for v in rng.integers(0, 40, size=10)]
        votes[int(rng.integers(0, 10))] += 1  # never all zero
        tags = [0, 0] if i == 0 else [15, 0] if i == 1 else [17, 1 + int(rng.integers(0, 66))]
        lines.append(" ".join(map(str, [i + 1, image_id, *votes, *tags, 100 + i % 3])))
        files.good(image_dir / f"{image_id}.jpg", i)
        name = f"{prefix}{image_id}.jpg"
        total = sum(votes)
        scores[name] = sum(k * c for k, c in enumerate(votes, start=1)) / total
        counts[name] = total
        meta[name] = {"tags": [t for t in tags if t], "challenge_id": 100 + i % 3}
        (train if i % 2 == 0 else test).append(image_id)
    rejected: Counter[str] = Counter()
    if broken:
        k = n + 1
        lines.append(f"{k} 990001 1 2 3 4 5 6 7 8 9 10 0 0")  # 14 columns
        rejected["malformed_row"] += 1
        lines.append(f"{k + 1} 990002 1 2 x 4 5 6 7 8 9 10 0 0 100")
        rejected["non_numeric_score"] += 1
        lines.append(f"{k + 2} 990003 1 2 -3 4 5 6 7 8 9 10 0 0 100")
        rejected["score_out_of_range"] += 1
        lines.append(f"{k + 3} 990004 0 0 0 0 0 0 0 0 0 0 0 0 100")
        rejected["no_votes"] += 1
        lines.append(f"{k + 4} 990005 1 2 3 4 5 6 7 8 9 10 0 0 100")  # no image file
        rejected["missing_file"] += 1
        first = lines[0].split(" ", 1)[1]
        lines.append(f"{k + 5} {first}")
        rejected["duplicate_id"] += 1
    if hostile:
        for j, (label, reason) in enumerate(write_hostile_files(root, image_dir).rows.items()):
            lines.append(f"{n + 20 + j} {label.removesuffix('.jpg')} 1 2 3 4 5 6 7 8 9 10 0 0 100")
            rejected[reason] += 1
    ava_txt = meta_dir / "AVA.txt"
    ava_txt.write_text("\n".join(lines) + "\n")
    if hostile:
        # An id whose bytes are not UTF-8: read as U+FFFD, it cannot name a file.
        _append_bytes(ava_txt, b"990 \xff\xfe990 1 2 3 4 5 6 7 8 9 10 0 0 100\n")
        rejected["undecodable_name"] += 1
    lists = meta_dir / "aesthetics_image_lists"
    lists.mkdir(exist_ok=True)
    (lists / "generic_ls_train.jpgl").write_text("".join(f"{i}\n" for i in train))
    (lists / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in test))
    return FixtureManifest("ava", root, n, dict(rejected), scores, counts, metadata=meta)


# -- TAD66K and BAID (image,score CSVs) ---------------------------------------------------


def _scored_csv_fixture(
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
    rng = _rng(name)
    files = _Images(images, n)
    rows: dict[Path, list[list[Any]]] = {path: [["image", "score"]] for path, _ in label_files}
    scores: dict[str, float] = {}
    meta: dict[str, dict[str, Any]] = {}
    prefix = _prefix(images_dir, root)
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
        _write_csv(path, content)
    if hostile:
        _append_bytes(first, b"\xff\xfe.jpg,5.0\r\n")
        rejected["undecodable_name"] += 1
    return FixtureManifest(name, root, n, dict(rejected), scores, metadata=meta)


#: TAD66K layouts: (folder holding ``merge/`` and ``unmerge/``, image folder).
_TAD_LAYOUTS = {
    "imgs": ("labels", "imgs"),
    "drive": ("labels", "TAD66K"),
    "repo": ("dataset", "."),
    "images": ("labels", "images"),
}


def write_tad66k(
    root: Path,
    *,
    n: int = 6,
    images: ImageProvider = None,
    broken: bool = True,
    layout: str = "imgs",
    hostile: bool = False,
) -> FixtureManifest:
    """``<labels>/merge/{train,test}.csv`` (``image,score``, CRLF as the authors ship them),
    per-theme files ``<labels>/unmerge/{train,test}/<theme>.csv`` and the image folder, as
    ``layout`` puts them (``drive``: ``labels/`` and ``TAD66K/``, the authors' download)."""
    _check_n(n)
    labels_dir, image_dir = (root / d for d in _TAD_LAYOUTS[_layout("tad66k", layout)])
    merge = labels_dir / "merge"
    manifest = _scored_csv_fixture(
        "tad66k",
        root,
        [(merge / "train.csv", "train"), (merge / "test.csv", "test")],
        image_dir,
        n=n,
        images=images,
        broken=broken,
        hostile=hostile,
        scale=(0.0, 10.0),
        stem=lambda i: str(1_003_000 + i),
    )
    # Per-theme label files naming the first image (train) and the last one (test).
    good = list(manifest.scores)
    for key, split, theme in ((good[0], "train", "portrait"), (good[-1], "test", "family")):
        _write_csv(
            labels_dir / "unmerge" / split / f"{theme}.csv",
            [["image", "score"], [key.rsplit("/", 1)[-1], manifest.scores[key]]],
        )
        manifest.metadata[key]["theme"] = theme
    return manifest


def write_baid(
    root: Path,
    *,
    n: int = 6,
    images: ImageProvider = None,
    broken: bool = True,
    layout: str = "images",
    hostile: bool = False,
) -> FixtureManifest:
    """``dataset/{train,val,test}_set.csv`` (``image,score``) and ``images/`` (or the root)."""
    _check_n(n)
    data = root / "dataset"
    return _scored_csv_fixture(
        "baid",
        root,
        [
            (data / "train_set.csv", "train"),
            (data / "val_set.csv", "val"),
            (data / "test_set.csv", "test"),
        ],
        root / ("images" if _layout("baid", layout) == "images" else "."),
        n=n,
        images=images,
        broken=broken,
        hostile=hostile,
        scale=(0.0, 10.0),
        stem=lambda i: str(241_700 + i),
    )


# -- SCUT-FBP5500 ------------------------------------------------------------------------

_SCUT_PREFIXES = ("AF", "AM", "CF", "CM")
SCUT_RATERS = 60


#: SCUT-FBP5500 workbook layouts: sheet name -> which rows (``None``: all of them).
_SCUT_SHEETS: dict[str, dict[str, str | None]] = {
    "all_sheet": {"Asian_Female": "AF", "ALL": None},
    "one_sheet": {"Sheet1": None},
    "largest_sheet": {"Asian_Female": "AF", "Sheet1": None, "Caucasian_Male": "CM"},
}


def write_scut_fbp5500(
    root: Path,
    *,
    n: int = 8,
    images: ImageProvider = None,
    broken: bool = True,
    layout: str = "all_sheet",
    hostile: bool = False,
) -> FixtureManifest:
    """``Images/``, ``All_Ratings.xlsx`` (60 raters per image: ``Rater, Filename, Rating,
    original Rating``) and ``train_test_files/``. The workbook's sheets follow ``layout``:
    ``all_sheet`` a decoy subset sheet, then ``ALL``; ``one_sheet`` a single sheet;
    ``largest_sheet`` subset sheets around an unnamed full one."""
    _check_n(n, 4 if broken else 1)
    sheets = _SCUT_SHEETS[_layout("scut_fbp5500", layout)]
    rng = _rng("scut")
    files = _Images(images, n)
    header = ["Rater", "Filename", "Rating", "original Rating"]
    ratings: dict[str, list[tuple[object, object]]] = {}
    names = [f"{_SCUT_PREFIXES[i % 4]}{i // 4 + 1}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        centre = rng.uniform(1.8, 4.2)
        values = np.clip(np.rint(rng.normal(centre, 0.7, SCUT_RATERS)), 1, 5).astype(int)
        ratings[name] = [(r + 1, int(v)) for r, v in enumerate(values)]
        files.good(root / "Images" / name, i)
    rejected: Counter[str] = Counter()
    extra_rows: list[list[Any]] = []
    expect = {name: [float(v) for _, v in rows] for name, rows in ratings.items()}
    if broken:
        # A non-numeric and an out-of-range rating: dropped, the image keeps 59 raters.
        r0 = ratings[names[0]]
        r0[0] = (r0[0][0], "abc")
        expect[names[0]] = expect[names[0]][1:]
        rejected["non_numeric_rating"] += 1
        r1 = ratings[names[1]]
        r1[0] = (r1[0][0], 7)
        expect[names[1]] = expect[names[1]][1:]
        rejected["rating_out_of_range"] += 1
        # The same rater twice for one image: both copies go (58 raters left).
        r2 = ratings[names[2]]
        extra_rows.append([r2[5][0], names[2], 3, 3])
        expect[names[2]] = [float(v) for k, (_, v) in enumerate(r2) if k != 5]
        rejected["duplicate_rating"] += 2
        # An image rated by only 5 raters, one whose file is missing, a row without a file name.
        ratings["AM901.jpg"] = [(r + 1, 3) for r in range(5)]
        files.extra_file(root / "Images" / "AM901.jpg")
        rejected["too_few_raters"] += 1
        ratings["CF902.jpg"] = [(r + 1, 4) for r in range(SCUT_RATERS)]
        rejected["missing_file"] += 1
        extra_rows.append([7, None, 3, 3])
        rejected["malformed_rating_row"] += 1
    if hostile:
        for label, reason in write_hostile_files(root, root / "Images").rows.items():
            ratings[label] = [(r + 1, 3) for r in range(SCUT_RATERS)]
            rejected[reason] += 1
    all_rows = [header]
    for name, rows in ratings.items():
        all_rows.extend([rater, name, value, value] for rater, value in rows)
    all_rows.extend(extra_rows)
    _xlsx(
        root / "All_Ratings.xlsx",
        {
            sheet: all_rows
            if subset is None
            else [header] + [row for row in all_rows[1:] if str(row[1] or "").startswith(subset)]
            for sheet, subset in sheets.items()
        },
    )
    scores, counts, meta = {}, {}, {}
    tt = root / "train_test_files"
    split = tt / "split_of_60%training and 40%testing"
    split.mkdir(parents=True, exist_ok=True)
    published = {name: float(np.mean([v for v in vals])) for name, vals in expect.items()}
    train_lines, test_lines = [], []
    for i, name in enumerate(names):
        key = f"Images/{name}"
        scores[key], _ = _mean_std(expect[name])
        counts[key] = len(expect[name])
        subset = {
            "AF": ("asian", "female"),
            "AM": ("asian", "male"),
            "CF": ("caucasian", "female"),
            "CM": ("caucasian", "male"),
        }[name[:2]]
        in_train = i % 5 < 3
        meta[key] = {
            "ethnicity": subset[0],
            "gender": subset[1],
            "official_split": "train" if in_train else "test",
            "cv_fold": i % 5 + 1,
        }
        (train_lines if in_train else test_lines).append(f"{name} {published[name]:.6f}")
    (split / "train.txt").write_text("\n".join(train_lines) + "\n")
    (split / "test.txt").write_text("\n".join(test_lines) + "\n")
    (tt / "All_labels.txt").write_text("".join(f"{k} {v:.6f}\n" for k, v in published.items()))
    for k in range(1, 6):
        cv = tt / "5_folders_cross_validations_files" / f"cross_validation_{k}"
        cv.mkdir(parents=True, exist_ok=True)
        test = [name for i, name in enumerate(names) if i % 5 + 1 == k]
        (cv / f"test_{k}.txt").write_text("".join(f"{t} {published[t]:.6f}\n" for t in test))
        (cv / f"train_{k}.txt").write_text(
            "".join(f"{t} {published[t]:.6f}\n" for t in names if t not in test)
        )
    return FixtureManifest("scut_fbp5500", root, n, dict(rejected), scores, counts, metadata=meta)


# -- MEBeauty ----------------------------------------------------------------------------

_ME_GROUPS = [
    ("female", "asian"),
    ("male", "black"),
    ("female", "caucasian"),
    ("male", "hispanic"),
    ("female", "indian"),
    ("male", "mideastern"),
]
_ME_RATERS = [f"A{17 + k}XQ{k:02d}" for k in range(10)] + ["femalecf29", "malecm37"]


_ME_AUTHORS = "/home/ubuntu/ME-beautydatabase/images"


def write_mebeauty(
    root: Path,
    *,
    n: int = 6,
    images: ImageProvider = None,
    broken: bool = True,
    layout: str = "repo",
    hostile: bool = False,
) -> FixtureManifest:
    """The MEBeauty repository's layout (``repo``): ``original_images/<gender>/<ethnicity>/``,
    the wide workbook ``scores/generic_scores_all_2022.xlsx`` (``mean``, ``image``, ``path``,
    12 rater columns) and split lists ``scores/{train,val,test}_2022.txt`` naming the crops,
    quoted where a name holds a space. In it one bare name is filed in two folders (both rated,
    each row's ``path`` says which) and one row has no ``path``. ``images``: the earlier layout,
    ``images/<gender>/<ethnicity>/`` and a workbook with bare names only (``image``, raters,
    ``mean``), split lists with the authors' absolute paths."""
    _check_n(n, 3 if broken else 1)
    repo = _layout("mebeauty", layout) == "repo"
    image_root = root / ("original_images" if repo else "images")
    rng = _rng("mebeauty")
    files = _Images(images, n)
    header = ["mean", "image", "path", *_ME_RATERS] if repo else ["image", *_ME_RATERS, "mean"]

    def row(name: str, path: str, cells: list[Any]) -> list[Any]:
        rated = [float(c) for c in cells if isinstance(c, int | float)]
        mean = round(float(np.mean(rated)), 3) if rated else None
        return [mean, name, path, *cells] if repo else [name, *cells, mean]

    def authors(rel: str) -> str:
        return f"{_ME_AUTHORS}/{rel}"

    sheet: list[list[Any]] = [header]
    cells_of: dict[str, list[Any]] = {}
    rel_of: dict[str, str] = {}
    for i in range(n):
        gender, ethnicity = _ME_GROUPS[i % len(_ME_GROUPS)]
        name = (
            f"woman-{4_686_000 + i}_1920.jpg"
            if gender == "female"
            else f"man-{921_000 + i}_1920.jpg"
        )
        if repo and i == 0:
            name = name.replace(".jpg", " (1).jpg")  # quoted in the split lists
        if repo and n >= 4 and i >= n - 2:
            name = "shared-face.jpg"  # one bare name, two folders: the path cell decides
        rel = f"{gender}/{ethnicity}/{name}"
        files.good(image_root / rel, i)
        centre = rng.uniform(3.0, 8.0)
        cells: list[Any] = []
        for k in range(len(_ME_RATERS)):
            # Raters 10 and 11 skip every other image: empty cells are "not rated".
            if k >= 10 and i % 2:
                cells.append(None)
            else:
                cells.append(int(np.clip(round(rng.normal(centre, 1.5)), 1, 10)))
        rel_of[rel] = rel
        cells_of[rel] = cells
    rejected: Counter[str] = Counter()
    expect = {rel: [float(c) for c in cells if c is not None] for rel, cells in cells_of.items()}
    rels = list(rel_of)
    if broken:
        cells_of[rels[0]][0] = "n/a"
        expect[rels[0]] = expect[rels[0]][1:]
        rejected["non_numeric_rating"] += 1
        cells_of[rels[1]][0] = 11
        expect[rels[1]] = expect[rels[1]][1:]
        rejected["rating_out_of_range"] += 1
    for k, rel in enumerate(rels):
        name = rel.rsplit("/", 1)[-1]
        # The authors' workbook leaves some path cells empty: the bare name finds the file.
        path = "" if k == 1 else authors(rel)
        sheet.append(row(name, path if repo else "", cells_of[rel]))
    if broken:
        files.extra_file(image_root / "female" / "black" / "few-raters.jpg")
        few = [5, 6, 7, 5, 6, *[None] * 7]
        sheet.append(row("few-raters.jpg", authors("female/black/few-raters.jpg"), few))
        rejected["too_few_raters"] += 1
        sheet.append(row("ghost.jpg", authors("male/asian/ghost.jpg"), [6] * 12))
        rejected["missing_file"] += 1
        sheet.append(row(sheet[3][1 if repo else 0], sheet[3][2] if repo else "", [1] * 12))
        rejected["duplicate_id"] += 1
        files.extra_file(image_root / "female" / "hispanic" / "2.jpg")
        files.extra_file(image_root / "male" / "black" / "2.jpg")
        sheet.append(row("2.jpg", "", [5] * 12))  # a bare name in two folders, no path
        rejected["ambiguous_file"] += 1
    if hostile:
        folder = image_root / "female" / "asian"
        for label, reason in write_hostile_files(root, folder).rows.items():
            cell = label if label.startswith("/") else authors(f"female/asian/{label}")
            # Without a path column the image cell itself carries the hostile path.
            sheet.append(row(label.rsplit("/", 1)[-1] if repo else label, cell, [6] * 12))
            rejected[reason] += 1
    _xlsx(root / "scores" / "generic_scores_all_2022.xlsx", {"Sheet1": sheet})
    scores, counts, meta = {}, {}, {}
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, (rel, values) in enumerate(expect.items()):
        key = f"{image_root.name}/{rel}"
        scores[key], _ = _mean_std(values)
        counts[key] = len(values)
        split = ("train", "train", "val", "test")[i % 4]
        gender, ethnicity = rel.split("/")[:2]
        meta[key] = {"gender": gender, "ethnicity": ethnicity, "official_split": split}
        listed = f"./cropped_images/images_crop_align_mtcnn/{rel}" if repo else authors(rel)
        listed = f'"{listed}"' if " " in listed else listed
        lists[split].append(f"{listed} {scores[key]}")
    for split, lines in lists.items():
        (root / "scores" / f"{split}_2022.txt").write_text("\n".join(lines) + "\n")
    return FixtureManifest("mebeauty", root, n, dict(rejected), scores, counts, metadata=meta)


# -- AGIQA-3K ----------------------------------------------------------------------------

_AGIQA_HEADER = [
    "name",
    "prompt",
    "adj1",
    "adj2",
    "style",
    "mos_quality",
    "std_quality",
    "mos_align",
    "std_align",
]


def write_agiqa_3k(
    root: Path,
    *,
    n: int = 6,
    images: ImageProvider = None,
    broken: bool = True,
    layout: str = "images",
    hostile: bool = False,
) -> FixtureManifest:
    """``data.csv`` (the 9 released columns, prompts with commas) and the images in the
    ``layout``'s folder (``images/``, ``Images/``, ``AGIQA-3K/``, or ``flat`` at the root)."""
    _check_n(n)
    image_dir = root / ("." if _layout("agiqa_3k", layout) == "flat" else layout)
    prefix = _prefix(image_dir, root)
    rng = _rng("agiqa")
    files = _Images(images, n)
    generators = ("AttnGAN", "sd1.5", "midjourney")
    rows: list[list[Any]] = [_AGIQA_HEADER]
    scores, meta = {}, {}
    stds: dict[str, float] = {}
    for i in range(n):
        name = f"{generators[i % 3]}_normal_{i:03d}.jpg"
        mos = round(float(rng.uniform(0.3, 4.2)), 6)
        std = round(float(rng.uniform(0.2, 1.0)), 6)
        align = round(float(rng.uniform(0.3, 4.0)), 6)
        style = "anime style" if i % 2 else ""
        prompt = f"portrait of a woman number {i}" + (f", {style}" if style else "")
        rows.append(
            [name, prompt, "", "", style, mos, std, align, round(float(rng.uniform(0.2, 1)), 6)]
        )
        files.good(image_dir / name, i)
        scores[f"{prefix}{name}"] = mos
        stds[f"{prefix}{name}"] = std
        meta[f"{prefix}{name}"] = {"generator": generators[i % 3], "mos_align": align}
    rejected: Counter[str] = Counter()
    if broken:
        rows.append(["sd1.5_bad_900.jpg", "a prompt", "", "", "", 2.0, 0.5, 2.0, 0.5, "extra"])
        rejected["malformed_row"] += 1
        rows.append(["sd1.5_bad_901.jpg", "a prompt", "", "", "", "abc", 0.5, 2.0, 0.5])
        rejected["non_numeric_score"] += 1
        rows.append(["sd1.5_bad_902.jpg", "a prompt", "", "", "", 5.7, 0.5, 2.0, 0.5])
        rejected["score_out_of_range"] += 1
        rows.append(["sd1.5_bad_903.jpg", "a prompt", "", "", "", 2.5, 0.5, 2.0, 0.5])
        rejected["missing_file"] += 1
        rows.append([rows[1][0], "again", "", "", "", 1.0, 0.5, 1.0, 0.5])
        rejected["duplicate_id"] += 1
    if hostile:
        for label, reason in write_hostile_files(root, image_dir).rows.items():
            rows.append([label, "a prompt", "", "", "", 2.5, 0.5, 2.0, 0.5])
            rejected[reason] += 1
        rows.append(["sd1.5_huge_950.jpg", HUGE_FIELD, "", "", "", 2.5, 0.5, 2.0, 0.5])
        rejected["malformed_row"] += 1
    _write_csv(root / "data.csv", rows)
    if hostile:
        _append_bytes(root / "data.csv", b"\xff\xfe.jpg,p,,,,2.5,0.5,2.0,0.5\r\n")
        rejected["undecodable_name"] += 1
    return FixtureManifest(
        "agiqa_3k", root, n, dict(rejected), scores, score_stds=stds, metadata=meta
    )


# -- HumanBeauty-50K annotations ---------------------------------------------------------


def write_humanbeauty_50k(
    root: Path,
    *,
    n: int = 4,
    images: ImageProvider = None,
    broken: bool = True,
    fmt: str = "csv",
    raters: int = 10,
) -> FixtureManifest:
    """Per-rater 12-dimension rows (SPEC 2.4) as ``annotations.csv`` or ``.parquet`` and
    ``images/``. Broken: an image with 8 raters, a duplicate (image, rater), an out-of-range and
    a non-numeric value, a row with the wrong column count (CSV only), a missing image file."""
    _check_n(n, 3 if broken else 1)
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    keys = list(load_standard().keys)
    rng = _rng("humanbeauty_50k")
    files = _Images(images, n)
    rows: list[list[Any]] = []
    expect: dict[str, list[list[float]]] = {}

    def rate(image: str, rater: str, centre: float) -> list[Any]:
        values = [round(float(np.clip(rng.normal(centre, 0.12), 0, 1)), 2) for _ in keys]
        return [image, rater, *values]

    for i in range(n):
        image = f"person_{i:04d}.jpg"
        files.good(root / "images" / image, i)
        centre = rng.uniform(0.25, 0.85)
        expect[image] = []
        for r in range(raters):
            row = rate(image, f"r{r:02d}", centre)
            rows.append(row)
            expect[image].append([float(v) for v in row[2:]])
    rejected: Counter[str] = Counter()
    if broken:
        img0, img1, img2 = "person_0000.jpg", "person_0001.jpg", "person_0002.jpg"
        # Out of range, non-numeric: those rows go, the image keeps `raters` valid ones.
        bad = rate(img0, "r90", 0.5)
        bad[2 + 3] = 1.4
        rows.append(bad)
        rejected["rating_out_of_range"] += 1
        bad = rate(img1, "r91", 0.5)
        bad[2 + 7] = "high" if fmt == "csv" else None
        rows.append(bad)
        rejected["non_numeric_rating"] += 1
        # The same rater twice: both copies are dropped.
        dup = rate(img2, "r00", 0.5)
        rows.append(dup)
        expect[img2] = expect[img2][1:]
        rejected["duplicate_rating"] += 2
        # Only 8 raters.
        files.extra_file(root / "images" / "few_raters.jpg")
        for r in range(8):
            rows.append(rate("few_raters.jpg", f"r{r:02d}", 0.4))
        rejected["too_few_raters"] += 1
        # Rated, but the image file is missing.
        for r in range(raters):
            rows.append(rate("missing_image.jpg", f"r{r:02d}", 0.6))
        rejected["missing_file"] += 1
    header = ["image", "rater", *keys]
    if fmt == "csv":
        if broken:
            rows.append(["person_0000.jpg", "r99", 0.5])  # wrong column count
            rejected["malformed_row"] += 1
        _write_csv(root / "annotations.csv", [header, *rows])
    else:
        import pandas as pd

        df = pd.DataFrame(rows, columns=header)
        df[keys] = df[keys].astype("float64")
        root.mkdir(parents=True, exist_ok=True)
        df.to_parquet(root / "annotations.parquet", index=False)
    std = load_standard()
    scores, counts, dims = {}, {}, {}
    for image, per_rater in expect.items():
        arr = np.asarray(per_rater)
        key = f"images/{image}"
        dims[key] = [float(v) for v in arr.mean(axis=0)]
        scores[key] = dims[key][std.root - 1]
        counts[key] = len(per_rater)
    return FixtureManifest(
        "humanbeauty_50k", root, n, dict(rejected), scores, counts, dimension_scores=dims
    )


# -- the public release's label.jsonl ----------------------------------------------------

_RELEASE_SOURCES = (
    ("AVA", "ava"),
    ("TAD66K", "tad66k"),
    ("SCUT-FBP5500", "scut_fbp5500"),
    ("MEBeauty", "mebeauty"),
    ("BAID", "baid"),
    ("AGIQA-3K", "agiqa_3k"),
)


def write_humanbeauty_release(
    root: Path, *, n: int = 8, images: ImageProvider = None, broken: bool = True
) -> FixtureManifest:
    """``HumanBeauty-58K/`` and ``HumanBeauty-50K/``, each with ``label.jsonl`` and ``images/``."""
    _check_n(n, 2)
    from hae_data.levels import score_to_level

    rng = _rng("release")
    files = _Images(images, n)
    n50 = max(1, n // 3)
    lines = {"HumanBeauty-58K": [], "HumanBeauty-50K": []}
    scores, dims, meta = {}, {}, {}
    root_index = load_standard().root - 1
    for i in range(n):
        if i < n - n50:
            part = "HumanBeauty-58K"
            label, key = _RELEASE_SOURCES[i % len(_RELEASE_SOURCES)]
            name = f"{label.lower()}_{i:05d}.jpg"
            score = round(float(rng.uniform(0.02, 0.98)), 4)
            entry = {
                "image_name": name,
                "source": label,
                "score": score,
                "text_level": score_to_level(score),
            }
            scores[f"{part}/images/{name}"] = score
        else:
            part = "HumanBeauty-50K"
            key = "humanbeauty_50k"
            name = f"hb50k_{i:05d}.jpg"
            values = [round(float(v), 4) for v in rng.uniform(0.1, 0.95, 12)]
            entry = {
                "image_name": name,
                "source": "HumanBeauty-50K",
                "score": values,
                "text_level": None,
            }
            scores[f"{part}/images/{name}"] = values[root_index]
            dims[f"{part}/images/{name}"] = values
        files.good(root / part / "images" / name, i)
        lines[part].append(json.dumps(entry))
        meta[f"{part}/images/{name}"] = {"source": key}
    rejected: Counter[str] = Counter()
    if broken:
        bad = lines["HumanBeauty-58K"]
        bad.append('{"image_name": "broken.jpg", "source": "AVA", "score": ')
        rejected["malformed_row"] += 1
        bad.append(json.dumps({"image_name": "noscore.jpg", "source": "AVA", "text_level": "fair"}))
        rejected["missing_column"] += 1
        bad.append(json.dumps({"image_name": "high.jpg", "source": "AVA", "score": 1.3}))
        rejected["score_out_of_range"] += 1
        bad.append(json.dumps({"image_name": "word.jpg", "source": "AVA", "score": "good"}))
        rejected["non_numeric_score"] += 1
        bad.append(json.dumps({"image_name": "flickr.jpg", "source": "Flickr", "score": 0.5}))
        rejected["unknown_source"] += 1
        bad.append(json.dumps({"image_name": "gone.jpg", "source": "BAID", "score": 0.5}))
        rejected["missing_file"] += 1
        bad.append(lines["HumanBeauty-58K"][0])
        rejected["duplicate_id"] += 1
        lines["HumanBeauty-50K"].append(
            json.dumps(
                {"image_name": "eleven.jpg", "source": "HumanBeauty-50K", "score": [0.5] * 11}
            )
        )
        rejected["malformed_row"] += 1
    for part, content in lines.items():
        (root / part).mkdir(parents=True, exist_ok=True)
        (root / part / "label.jsonl").write_text("\n".join(content) + "\n")
    return FixtureManifest(
        "humanbeauty_release", root, n, dict(rejected), scores, dimension_scores=dims, metadata=meta
    )


# -- APDDv2 ------------------------------------------------------------------------------

_APDD_HEADER = [
    "filename",
    "Artistic Categories",
    "Total aesthetic score",
    *APDD_ATTRIBUTES,
    "Language Comment",
]


def write_apddv2(
    root: Path, *, n: int = 6, images: ImageProvider = None, broken: bool = True
) -> FixtureManifest:
    """``APDDv2-10023.csv`` (Latin-1, like some copies) and ``APDDv2images/``."""
    _check_n(n)
    rng = _rng("apddv2")
    files = _Images(images, n)
    rows: list[list[Any]] = [_APDD_HEADER]
    scores, meta = {}, {}
    for i in range(n):
        name = f"{rng.integers(0, 2**63):016x}{i:016x}.jpg"
        total = round(float(rng.uniform(15, 92)), 2)
        attrs = [round(total / 10 + float(rng.normal(0, 0.3)), 2) for _ in range(10)]
        attrs[1] = ""  # Creativity does not apply to this category
        comment = "Portrait très réussi" if i == 0 else ""
        rows.append([name, "oil painting*classicism*portraiture", total, *attrs, comment])
        files.good(root / "APDDv2images" / name, i)
        scores[f"APDDv2images/{name}"] = total
        meta[f"APDDv2images/{name}"] = {
            "medium": "oil painting",
            "style": "classicism",
            "subject": "portraiture",
        }
    rejected: Counter[str] = Counter()
    if broken:
        filler = [5.0] * 10
        rows.append(
            ["bad900.jpg", "sketching*romanticism*landscapes", 50.0, *filler]
        )  # no comment field
        rejected["malformed_row"] += 1
        rows.append(["bad901.jpg", "sketching*romanticism*landscapes", "n/a", *filler, ""])
        rejected["non_numeric_score"] += 1
        rows.append(["bad902.jpg", "sketching*romanticism*landscapes", 104.5, *filler, ""])
        rejected["score_out_of_range"] += 1
        rows.append(["bad903.jpg", "sketching*romanticism*landscapes", 40.0, *filler, ""])
        rejected["missing_file"] += 1
        rows.append([rows[1][0], "oil painting*classicism*portraiture", 10.0, *filler, ""])
        rejected["duplicate_id"] += 1
    _write_csv(root / "APDDv2-10023.csv", rows, encoding="latin-1")
    return FixtureManifest("apddv2", root, n, dict(rejected), scores, metadata=meta)


# -- LAPIS -------------------------------------------------------------------------------


def write_lapis(
    root: Path, *, n: int = 5, images: ImageProvider = None, broken: bool = True, raters: int = 12
) -> FixtureManifest:
    """``annotation/LAPIS_individualratings_metaANDdemodata.csv`` (``image_id,file,
    participant_id,response`` on 0-100, ``file`` = ``<genre>/<name>``), ``images/`` and
    ``imageset/{Train,Val,Test}ImageSet.txt``: the ``n`` good images (and the broken cases) are
    in the test list, two more rated images in the train list, which the loader must skip."""
    _check_n(n, 2 if broken else 1)
    rng = _rng("lapis")
    files = _Images(images, n)
    rows: list[list[Any]] = [["image_id", "file", "participant_id", "response"]]
    expect: dict[str, list[float]] = {}
    test, train = [], []

    def rate(number: int, image: str, rater: int, value: object) -> None:
        rows.append([number, f"portrait/{image}", rater, value])

    for i in range(n):
        image = f"lapis_{i:05d}.jpg"
        files.good(root / "images" / image, i)
        test.append(image)
        centre = rng.uniform(20, 80)
        expect[image] = []
        for r in range(raters):
            value = round(float(np.clip(rng.normal(centre, 12), 0, 100)), 1)
            rate(i, image, r, value)
            expect[image].append(value)
    for j in range(2):  # rated, on disk, but not in the test list
        image = f"lapis_train_{j:05d}.jpg"
        files.extra_file(root / "images" / image)
        train.append(image)
        for r in range(raters):
            rate(500 + j, image, r, 30 + r)
    rejected: Counter[str] = Counter()
    if broken:
        rate(0, "lapis_00000.jpg", 900, "sixty")
        rejected["non_numeric_rating"] += 1
        rate(1, "lapis_00001.jpg", 901, 101)
        rejected["rating_out_of_range"] += 1
        rate(1, "lapis_00001.jpg", 0, 50)  # rater 0 rated lapis_00001 already
        expect["lapis_00001.jpg"] = expect["lapis_00001.jpg"][1:]
        rejected["duplicate_rating"] += 2
        files.extra_file(root / "images" / "lapis_09990.jpg")
        for r in range(5):
            rate(9990, "lapis_09990.jpg", r, 40)
        rejected["too_few_raters"] += 1
        for r in range(raters):
            rate(9991, "lapis_09991.jpg", r, 40)
        rejected["missing_file"] += 1
        test += ["lapis_09990.jpg", "lapis_09991.jpg"]
    _write_csv(root / "annotation" / "LAPIS_individualratings_metaANDdemodata.csv", rows)
    (root / "imageset").mkdir(parents=True, exist_ok=True)
    for name, listed in (("Test", test), ("Train", train), ("Val", [])):
        (root / "imageset" / f"{name}ImageSet.txt").write_text("".join(f"{x}\n" for x in listed))
    scores, counts = {}, {}
    for image, values in expect.items():
        scores[f"images/{image}"], _ = _mean_std(values)
        counts[f"images/{image}"] = len(values)
    return FixtureManifest("lapis", root, n, dict(rejected), scores, counts)


#: The layouts each writer can produce (``layout=``), the default (most common) first.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "ava": tuple(_AVA_LAYOUTS),
    "tad66k": tuple(_TAD_LAYOUTS),
    "scut_fbp5500": tuple(_SCUT_SHEETS),
    "mebeauty": ("repo", "images"),
    "baid": ("images", "flat"),
    "agiqa_3k": ("images", "Images", "AGIQA-3K", "flat"),
}

#: One writer per source, by catalogue key.
WRITERS: dict[str, Callable[..., FixtureManifest]] = {
    "ava": write_ava,
    "tad66k": write_tad66k,
    "scut_fbp5500": write_scut_fbp5500,
    "mebeauty": write_mebeauty,
    "baid": write_baid,
    "agiqa_3k": write_agiqa_3k,
    "humanbeauty_50k": write_humanbeauty_50k,
    "humanbeauty_release": write_humanbeauty_release,
    "apddv2": write_apddv2,
    "lapis": write_lapis,
}


def write_fixture(
    name: str,
    root: str | Path,
    *,
    n: int | None = None,
    images: ImageProvider = None,
    broken: bool = True,
    **options: Any,
) -> FixtureManifest:
    """Write a miniature copy of source ``name`` under ``root`` and return what to expect.

    ``n`` is the number of good items (each writer has a small default), ``images`` supplies
    their encoded images, ``broken`` adds the deliberately bad rows; ``options`` go to the
    source's writer (for example ``fmt="parquet"`` for ``humanbeauty_50k``).
    """
    try:
        writer = WRITERS[name]
    except KeyError:
        raise KeyError(f"no fixture writer for {name!r}; known: {', '.join(WRITERS)}") from None
    kwargs: dict[str, Any] = {"images": images, "broken": broken, **options}
    if n is not None:
        kwargs["n"] = n
    manifest = writer(Path(root), **kwargs)
    assert not math.isnan(sum(manifest.scores.values()))
    return manifest
