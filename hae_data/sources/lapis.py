"""LAPIS: the Leuven Art Personalized Image Set (Maerten et al., CVPR Workshops 2025).

Zero-shot evaluation set (SPEC 3.4): evaluation-only, never split, never a training source. 11,723
images of paintings (WikiArt, 26 styles, 7 genres), rated on a visual analogue scale from
"highly unaesthetic" to "highly aesthetic" by 552 raters, about 24 per image. HumanAesExpert
evaluates on **LAPIS's official test set** (2,345 images; 307 after its face filter), so this
loader reads that set by default (``split="test"``); ``split="all"`` reads every image.

Native format, as read by the code of LAPIS's second author (github.com/lwchen6309/
aesthetics_transfer_learning, ``README.md`` section "LAPIS" and ``LAPIS_PIAA_dataloader.py``:
``LAPIS_PIAADataset`` and ``create_image_split_dataset``); the data themselves are released on
request only, so ``layout_confirmed`` stays False until a real copy is seen::

    LAPIS/
        annotation/LAPIS_individualratings_metaANDdemodata.csv
        images/*.jpg
        imageset/TrainImageSet.txt  ValImageSet.txt  TestImageSet.txt
        userset/TrainUserIDs_Fold[1-4].txt  TestUserIDs_Fold[1-4].txt   (not needed)

The annotation table has one row per (image, rater): ``file`` (a path whose last component is
the image's name in ``images/``), ``image_id`` (a number), ``participant_id``, ``response``
(the rating, 0-100) and the rater's demographics and art-interest answers. Each
``imageset/*ImageSet.txt`` lists one image name per line. Images outside the chosen split are
skipped before anything else is read of them (counted in the log, not rejected: they are not
part of the evaluation set).

Every name is still an option, for copies that differ: ``ratings_file`` (default: the file above,
else the first ``*.csv`` under the root whose header has an image and a rating column), the
image column (first of ``file``, ``image``, ``image_name``, ``filename``, ``img``,
``painting``, ``image_id``; ``image_col``; its last path component is used), the rater column
(first of ``participant_id``, ``rater``, ``rater_id``, ``user``, ``user_id``,
``participant``, ``annotator``, ``worker_id``; ``rater_col``), the rating column (first of
``response``, ``rating``, ``score``, ``aesthetic``, ``aesthetic_score``, ``value``;
``rating_col``), the image folder (whichever of ``images/``, ``imgs/``, ``img/`` holds the most
of the split's images, failing those the folder holding the most under the root;
``images_dir``), ``split_file``. An image value without an extension is looked up with
``.jpg``, ``.jpeg`` and ``.png``. When the table has no rater column it is read as one summary
score per image instead.

Score: the visual-analogue rating, 0-100 (``scale`` overrides), higher is better. The MOS is
computed here from the per-rater rows (:func:`hae_data.scores.aggregate_mos`, ``min_raters``
default :data:`hae_data.defaults.MIN_RATERS`; LAPIS has about 24 per image). Licence: access on
request, research use under the authors' terms. Citation: Maerten, Chen, De Winter, Bossens,
Wagemans. LAPIS: a novel dataset for personalized image aesthetic assessment. CVPR Workshops
(CVEU) 2025. Homepage / how to obtain: https://github.com/Anne-SofieMaerten/LAPIS (request form
linked there).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hae_data.defaults import MIN_RATERS
from hae_data.records import Record, Rejection
from hae_data.sources.base import (
    CsvLabels,
    DirectoryIndex,
    RaterSource,
    SourceFormatError,
    SourceInfo,
    parse_score,
    read_text_lines,
    relpath,
)
from hae_data.sources.fixtures import (
    FixtureImages,
    FixtureManifest,
    ImageProvider,
    check_n,
    mean_std,
    seeded_rng,
    write_csv,
)

__all__ = ["LAPIS_SPLITS", "LapisSource", "write_fixture"]

log = logging.getLogger(__name__)

# ``file`` before ``image_id``: the real table has both, and its ``image_id`` is a number.
IMAGE_COLUMNS = ("file", "image", "image_name", "filename", "img", "painting", "image_id")
RATER_COLUMNS = (
    "participant_id",
    "rater",
    "rater_id",
    "user",
    "user_id",
    "participant",
    "annotator",
    "worker_id",
)
RATING_COLUMNS = ("response", "rating", "score", "aesthetic", "aesthetic_score", "value")
_EXTENSIONS = (".jpg", ".jpeg", ".png")
RATINGS_FILE = "annotation/LAPIS_individualratings_metaANDdemodata.csv"
#: ``split`` -> the official image list it reads; ``all`` reads every image.
LAPIS_SPLITS = {
    "test": "imageset/TestImageSet.txt",
    "val": "imageset/ValImageSet.txt",
    "train": "imageset/TrainImageSet.txt",
    "all": None,
}


def _name(value: str) -> str:
    """The image's name in ``images/``: the last component of a (possibly Windows) path."""
    return value.strip().replace("\\", "/").rsplit("/", 1)[-1]


def _lookup_names(names: Iterable[str]) -> list[str]:
    """The distinct names as the image folder holds them, for choosing that folder.

    LAPIS's images are ``.jpg``: a name without an image extension (an ``image_id`` column) is
    counted as one, and :meth:`LapisSource._resolve` still tries every extension once the
    folder is chosen.
    """
    unique = dict.fromkeys(n for n in names if n)
    return [n if Path(n).suffix.lower() in _EXTENSIONS else f"{n}.jpg" for n in unique]


def _in_split(name: str, members: set[str]) -> bool:
    # A list may name images with or without their extension.
    return name in members or Path(name).stem in members


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        return [h.strip() for h in next(csv.reader(fh), [])]


def _pick(header: Sequence[str], option: str | None, candidates: Sequence[str]) -> str | None:
    if option is not None:
        return option if option in header else None
    lowered = {h.lower(): h for h in header}
    return next((lowered[c] for c in candidates if c in lowered), None)


class LapisSource(RaterSource):
    """LAPIS's official test split (``split``) from its per-rater table and ``images/``."""

    info = SourceInfo(
        name="lapis",
        title="LAPIS (zero-shot evaluation)",
        part="overall",
        scale=(0.0, 100.0),
        raters="552 raters, about 24 per image, on a visual analogue scale; MOS computed "
        "here from the per-rater ratings",
        licence="Access on request from the authors; research use (authors' terms).",
        citation="Maerten, Chen, De Winter, Bossens, Wagemans. LAPIS: a novel dataset for "
        "personalized image aesthetic assessment. CVPR Workshops (CVEU) 2025.",
        homepage="https://github.com/Anne-SofieMaerten/LAPIS",
        use="zero_shot",
        layout_confirmed=False,
    )
    image_folders = ("images", "imgs", "img")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        min_raters: int = MIN_RATERS,
        ratings_file: str | None = None,
        images_dir: str | os.PathLike[str] | None = None,
        image_col: str | None = None,
        rater_col: str | None = None,
        rating_col: str | None = None,
        scale: tuple[float, float] | None = None,
        split: str = "test",
        split_file: str | None = None,
    ) -> None:
        super().__init__(root, min_raters=min_raters, images_dir=images_dir)
        self.scale = tuple(scale) if scale is not None else self.info.scale
        if split not in LAPIS_SPLITS:
            raise ValueError(f"LAPIS: split must be one of {list(LAPIS_SPLITS)}, got {split!r}")
        self.split = split
        self.split_file: Path | None = None
        listed = split_file or LAPIS_SPLITS[split]
        if listed is not None:
            self.split_file = self.root / listed
            if not self.split_file.is_file():
                raise SourceFormatError(
                    f"LAPIS: no {listed!r} under {str(self.root)!r}. Zero-shot evaluation reads "
                    f"the official {split} set (SPEC 3.4); pass split_file=<list of image "
                    "names>, or split='all' to read every image"
                )
        if ratings_file:
            candidates = [self.root / ratings_file]
        else:
            candidates = [self.root / RATINGS_FILE, *sorted(self.root.rglob("*.csv"))]
        self.ratings_file: Path | None = None
        for path in candidates:
            if not path.is_file():
                continue
            header = _header(path)
            image = _pick(header, image_col, IMAGE_COLUMNS)
            rating = _pick(header, rating_col, RATING_COLUMNS)
            if image and rating:
                self.ratings_file = path
                self.image_col, self.rating_col = image, rating
                self.rater_col = _pick(header, rater_col, RATER_COLUMNS)
                break
        if self.ratings_file is None:
            raise SourceFormatError(
                f"LAPIS: no CSV under {str(self.root)!r} has an image column (one of "
                f"{list(IMAGE_COLUMNS)}) and a rating column (one of {list(RATING_COLUMNS)}); "
                "pass ratings_file / image_col / rating_col"
            )

    def label_names(self) -> list[str]:
        """The split's rated images (reads the ratings table; :meth:`iter_items` reads it once)."""
        rows, _, _ = self._split_rows(self._members())
        return _lookup_names(name for name, _, _ in rows)

    def _resolve(self, name: str, index: DirectoryIndex) -> Path:
        if Path(name).suffix.lower() not in _EXTENSIONS:
            for ext in _EXTENSIONS:
                if f"{name}{ext}" in index:
                    return self.images / f"{name}{ext}"
        return self.images / name

    def _members(self) -> set[str] | None:
        """Image names of the chosen split, or None when every image is read."""
        if self.split_file is None:
            return None
        return {_name(line) for _, line in read_text_lines(self.split_file) if _name(line)}

    def _split_rows(
        self, members: set[str] | None
    ) -> tuple[list[tuple[str, str, str]], list[Rejection], set[str]]:
        """The ratings table's ``(image, rater, rating)`` rows of images in ``members`` (all when
        None), the rejections of its malformed rows, and the rated images left out."""
        assert self.ratings_file is not None
        required = [self.image_col, self.rating_col] + ([self.rater_col] if self.rater_col else [])
        labels = CsvLabels(self.ratings_file, required, title=self.info.title)
        where = relpath(self.ratings_file, self.root)
        rows: list[tuple[str, str, str]] = []
        malformed: list[Rejection] = []
        outside: set[str] = set()
        for line, row, _fields, problem in labels.rows():
            if row is None:
                malformed.append(
                    self._reject(f"{where}:{line}", "malformed_row", f"{where}:{line}: {problem}")
                )
                continue
            name = _name(row[self.image_col])
            if members is not None and name and not _in_split(name, members):
                outside.add(name)
                continue
            rater = row[self.rater_col].strip() if self.rater_col else ""
            rows.append((name, rater, row[self.rating_col]))
        return rows, malformed, outside

    def iter_items(self) -> Iterator[Record | Rejection]:
        """MOS per image of the split from the per-rater rows (or the summary score when there
        are none)."""
        assert self.ratings_file is not None
        where = relpath(self.ratings_file, self.root)
        members = self._members()
        rows, malformed, outside = self._split_rows(members)
        yield from malformed
        self.discover_images(_lookup_names(name for name, _, _ in rows))
        index = DirectoryIndex(self.images)
        if members is not None:
            log.info(
                "LAPIS: reading the %s split (%d images listed in %s); %d rated images of other "
                "splits skipped",
                self.split,
                len(members),
                relpath(self.split_file, self.root),  # type: ignore[arg-type]
                len(outside),
            )
        if self.rater_col is None:
            log.warning("LAPIS: %s has no rater column; reading one summary score per image", where)
            yield from self._summary(rows, index, where)
            return
        df = pd.DataFrame(rows, columns=["image", "rater", "rating"])
        result = self._mos(df, ["rating"], scale=self.scale)
        to_path = {n: self._resolve(n, index) for n in df["image"].unique() if n}
        yield from self._fix_mos_rejections(result.rejections, to_path, where)
        for image, row in result.table.iterrows():
            path = to_path[str(image)]
            if path.name not in index:
                yield self._missing(path, where)
                continue
            std = float(row["rating_std"])
            yield self._record(
                path,
                float(row["rating"]),
                rater_count=int(row["rater_count"]),
                score_std=None if math.isnan(std) else std,
            )

    def _summary(
        self, rows: list[tuple[str, str, str]], index: DirectoryIndex, where: str
    ) -> Iterator[Record | Rejection]:
        seen: set[str] = set()
        for name, _, text in rows:
            path = self._resolve(name, index)
            file_name = relpath(path, self.root)
            value, reason = parse_score(text, self.scale)  # type: ignore[arg-type]
            if reason is not None:
                yield self._reject(file_name, reason, f"{where}: score {text!r}", image=path)
                continue
            if name in seen:
                yield self._reject(file_name, "duplicate_id", f"{where}: listed again", image=path)
                continue
            seen.add(name)
            if path.name not in index:
                yield self._missing(path, where)
                continue
            assert value is not None
            yield self._record(path, value)


# -- fixture: a miniature copy in the native layout (see hae_data.sources.fixtures) ----


def write_fixture(
    root: Path, *, n: int = 5, images: ImageProvider = None, broken: bool = True, raters: int = 12
) -> FixtureManifest:
    """``annotation/LAPIS_individualratings_metaANDdemodata.csv`` (``image_id,file,
    participant_id,response`` on 0-100, ``file`` = ``<genre>/<name>``), ``images/`` and
    ``imageset/{Train,Val,Test}ImageSet.txt``: the ``n`` good images (and the broken cases) are
    in the test list, two more rated images in the train list, which the loader must skip."""
    check_n(n, 2 if broken else 1)
    rng = seeded_rng("lapis")
    files = FixtureImages(images, n)
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
    write_csv(root / "annotation" / "LAPIS_individualratings_metaANDdemodata.csv", rows)
    (root / "imageset").mkdir(parents=True, exist_ok=True)
    for name, listed in (("Test", test), ("Train", train), ("Val", [])):
        (root / "imageset" / f"{name}ImageSet.txt").write_text("".join(f"{x}\n" for x in listed))
    scores, counts = {}, {}
    for image, values in expect.items():
        scores[f"images/{image}"], _ = mean_std(values)
        counts[f"images/{image}"] = len(values)
    return FixtureManifest("lapis", root, n, dict(rejected), scores, counts)
