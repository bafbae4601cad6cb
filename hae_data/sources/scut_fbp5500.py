"""SCUT-FBP5500: a benchmark for multi-paradigm facial beauty prediction (Liang et al., ICPR 2018).

Native format (``SCUT-FBP5500_v2`` as distributed through the links in
github.com/HCIILAB/SCUT-FBP5500-Database-Release, cross-checked against several public loaders):

- ``Images/`` (also accepted: ``images/``, or the images at the root; failing those the folder
  holding the most rated file names is searched for under the root; ``images_dir``
  overrides): 5,500 frontal faces named by subset: ``AF*`` (Asian female, 2,000), ``AM*``
  (Asian male, 2,000), ``CF*`` (Caucasian female, 750), ``CM*`` (Caucasian male, 750);
- ``All_Ratings.xlsx``: one row per (rater, image) with the columns ``Rater``, ``Filename``,
  ``Rating`` and ``original Rating``; 60 raters x 5,500 images = 330,000 rows. The authors'
  README does not describe the workbook (it is inside the download). Public loaders found by
  code search (their repositories not identified by the search) disagree on its sheets: one
  reads ``sheet_name="ALL"``, one splits the workbook into per-subset CSVs, others read the
  first sheet and report all 330,000 rows there. This loader reads exactly one sheet, the one
  with all ratings, never a subset: the sheet named ``ALL`` (any case), else the only sheet,
  else the sheet with the most rows among those with the three columns (logged); ``sheet``
  overrides. Reading several sheets would count each subset's ratings twice. Some copies keep
  the file in ``train_test_files/``; both places are tried;
- ``train_test_files/``: ``All_labels.txt`` (``<file> <mean>``), the 60/40 split
  ``split_of_60%training and 40%testing/{train,test}.txt`` and the five cross-validation folds
  ``5_folders_cross_validations_files/cross_validation_<k>/{train,test}_<k>.txt``.

Score: 1-5, higher is more attractive. Raters: 60 volunteers rated every image, so the MOS is
computed here (:func:`hae_data.scores.aggregate_mos`) from the ``Rating`` column, not read from
``All_labels.txt``; the published mean is kept as ``published_score`` for comparison.
``min_raters`` (default 9, the SPEC's rule) is an option. Metadata: ``ethnicity`` and
``gender`` from the file-name prefix, ``official_split`` from the 60/40 split, ``cv_fold`` (the
fold whose test list holds the image).

Licence: non-commercial research use only (the repository's README). Citation: Liang, Lin, Jin,
Xie, Li. SCUT-FBP5500: A Diverse Benchmark Dataset for Multi-Paradigm Facial Beauty
Prediction. ICPR 2018. Homepage / how to obtain:
https://github.com/HCIILAB/SCUT-FBP5500-Database-Release (Google Drive / Baidu links, 172 MB
per its README).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hae_data.defaults import MIN_RATERS
from hae_data.records import Record, Rejection
from hae_data.sources.base import (
    DirectoryIndex,
    RaterSource,
    SourceFormatError,
    SourceInfo,
    iter_xlsx_rows,
    read_text_lines,
    relpath,
    xlsx_sheet_names,
    xlsx_sheet_sizes,
)
from hae_data.sources.fixtures import (
    FixtureImages,
    FixtureManifest,
    ImageProvider,
    check_layout,
    check_n,
    mean_std,
    seeded_rng,
    write_hostile_files,
    write_xlsx,
)

__all__ = ["LAYOUTS", "SUBSETS", "ScutFbp5500Source", "write_fixture"]

log = logging.getLogger(__name__)

#: File-name prefix -> (ethnicity, gender), as the README describes the four subsets.
SUBSETS = {
    "AF": ("asian", "female"),
    "AM": ("asian", "male"),
    "CF": ("caucasian", "female"),
    "CM": ("caucasian", "male"),
}
_COLUMNS = ("Rater", "Filename", "Rating")
_SPLIT_6040 = "split_of_60%training and 40%testing"
_CV = "5_folders_cross_validations_files"


def read_score_list(path: Path) -> dict[str, float | None]:
    """``<file> <score>`` lines as {file name: score}; a line without a number maps to None."""
    out: dict[str, float | None] = {}
    for number, line in read_text_lines(path):
        parts = line.strip().rsplit(maxsplit=1)
        name = parts[0].replace("\\", "/").rsplit("/", 1)[-1]
        try:
            out[name] = float(parts[1]) if len(parts) > 1 else None
        except ValueError:
            log.warning("%s:%d: no score on this line: %r", path, number, line)
            out[name] = None
    return out


def _norm(header: object) -> str:
    return " ".join(str(header or "").split()).lower()


def _has_columns(path: Path, sheet: str) -> bool:
    """Whether the first row of ``sheet`` names ``Rater``, ``Filename`` and ``Rating``."""
    for _, values in iter_xlsx_rows(path, sheet):
        headers = [_norm(v) for v in values]
        return all(c.lower() in headers for c in _COLUMNS)
    return False


class ScutFbp5500Source(RaterSource):
    """SCUT-FBP5500 from ``All_Ratings.xlsx`` (60 raters per image) and ``Images/``."""

    info = SourceInfo(
        name="scut_fbp5500",
        title="SCUT-FBP5500",
        part="overall",
        scale=(1.0, 5.0),
        raters="60 raters rated every image (All_Ratings.xlsx); MOS computed here",
        licence="Non-commercial research use only (the repository's README).",
        citation="Liang et al. SCUT-FBP5500: A Diverse Benchmark Dataset for Multi-Paradigm "
        "Facial Beauty Prediction. ICPR 2018.",
        homepage="https://github.com/HCIILAB/SCUT-FBP5500-Database-Release",
        use="training",
    )
    image_folders = ("Images", "images", ".")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        min_raters: int = MIN_RATERS,
        images_dir: str | os.PathLike[str] | None = None,
        sheet: str | None = None,
    ) -> None:
        super().__init__(root, min_raters=min_raters, images_dir=images_dir)
        self.sheet = sheet
        self.ratings_file = self._find(
            ["All_Ratings.xlsx", "train_test_files/All_Ratings.xlsx"], what="All_Ratings.xlsx"
        )
        assert self.ratings_file is not None
        self.splits_dir = self.root / "train_test_files"

    def label_names(self) -> list[str]:
        """The rated file names (reads the workbook; :meth:`iter_items` reads it once)."""
        return [str(n) for n in self.ratings()["Filename"].dropna().unique()]

    def _sheet(self) -> str:
        """The one sheet holding all ratings (see the module doc)."""
        path = self.ratings_file
        assert path is not None
        names = xlsx_sheet_names(path)
        if self.sheet is not None:
            if self.sheet not in names:
                raise SourceFormatError(
                    f"SCUT-FBP5500: {path} has no sheet {self.sheet!r}; has {names}"
                )
            return self.sheet
        for name in names:
            if name.strip().lower() == "all":
                return name
        if len(names) == 1:
            return names[0]
        sizes = xlsx_sheet_sizes(path)
        usable = [n for n in names if _has_columns(path, n)]
        if not usable:
            return names[0]  # ratings() reports the missing columns
        best = max(usable, key=lambda n: sizes.get(n, 0))
        log.info(
            "SCUT-FBP5500: %s has no sheet 'ALL'; reading %r, the largest of %s (rows: %s)",
            path,
            best,
            usable,
            {n: sizes.get(n) for n in usable},
        )
        return best

    def ratings(self) -> pd.DataFrame:
        """The per-rater table (columns ``Rater``, ``Filename``, ``Rating``, ``sheet``, ``row``)."""
        rows: list[tuple[object, object, object, str, int]] = []
        path = self.ratings_file
        assert path is not None
        for sheet in [self._sheet()]:
            columns: list[int] | None = None
            for number, values in iter_xlsx_rows(path, sheet):
                if columns is None:
                    headers = [_norm(v) for v in values]
                    missing = [c for c in _COLUMNS if c.lower() not in headers]
                    if missing:
                        raise SourceFormatError(
                            f"SCUT-FBP5500: sheet {sheet!r} of {path} lacks column(s) {missing}; "
                            f"found {[v for v in values if v is not None]}"
                        )
                    columns = [headers.index(c.lower()) for c in _COLUMNS]
                    continue
                if all(v is None for v in values):
                    continue
                cells = [values[i] if i < len(values) else None for i in columns]
                rows.append((cells[0], cells[1], cells[2], sheet, number))
        df = pd.DataFrame(rows, columns=[*_COLUMNS, "sheet", "row"])
        # Excel stores some ids as numbers; the rating table keys are strings.
        for col in ("Rater", "Filename"):
            df[col] = df[col].map(lambda v: None if pd.isna(v) else str(v).strip() or None)
        return df

    def _splits(self) -> tuple[dict[str, str], dict[str, int], dict[str, float | None]]:
        official: dict[str, str] = {}
        folds: dict[str, int] = {}
        published: dict[str, float | None] = {}
        d6040 = self.splits_dir / _SPLIT_6040
        for split in ("train", "test"):
            if (d6040 / f"{split}.txt").is_file():
                for name in read_score_list(d6040 / f"{split}.txt"):
                    official[name] = split
        for k in range(1, 6):
            test = self.splits_dir / _CV / f"cross_validation_{k}" / f"test_{k}.txt"
            if test.is_file():
                for name in read_score_list(test):
                    folds.setdefault(name, k)
        if (self.splits_dir / "All_labels.txt").is_file():
            published = read_score_list(self.splits_dir / "All_labels.txt")
        return official, folds, published

    def iter_items(self) -> Iterator[Record | Rejection]:
        """MOS per image from the 60 ratings; records in file-name order after the rejections."""
        df = self.ratings()
        result = self._mos(df, ["Rating"], image_col="Filename", rater_col="Rater")
        names = df["Filename"].dropna().unique()
        self.discover_images(str(n) for n in names)
        to_path = {n: self.images / n for n in names}
        yield from self._fix_mos_rejections(
            result.rejections,
            to_path,
            relpath(self.ratings_file, self.root),  # type: ignore[arg-type]
        )
        official, folds, published = self._splits()
        index = DirectoryIndex(self.images, self.root)
        where = relpath(self.ratings_file, self.root)  # type: ignore[arg-type]
        for name, row in result.table.iterrows():
            name = str(name)
            image, rejection = self._locate(
                index, name, relpath(self.images / name, self.root), where
            )
            if rejection is not None:
                yield rejection
                continue
            std = float(row["Rating_std"])
            metadata: dict[str, object] = {}
            subset = SUBSETS.get(name[:2].upper())
            if subset is not None:
                metadata["ethnicity"], metadata["gender"] = subset
            if name in official:
                metadata["official_split"] = official[name]
            if name in folds:
                metadata["cv_fold"] = folds[name]
            if published.get(name) is not None:
                metadata["published_score"] = published[name]
            yield self._record(
                image,
                float(row["Rating"]),
                rater_count=int(row["rater_count"]),
                score_std=None if math.isnan(std) else std,
                metadata=metadata,
            )


# -- fixture: a miniature copy in the native layout (see hae_data.sources.fixtures) ----

_SCUT_PREFIXES = ("AF", "AM", "CF", "CM")
#: Raters per image in the fixture, as in the real workbook.
SCUT_RATERS = 60


#: SCUT-FBP5500 workbook layouts: sheet name -> which rows (``None``: all of them).
_SCUT_SHEETS: dict[str, dict[str, str | None]] = {
    "all_sheet": {"Asian_Female": "AF", "ALL": None},
    "one_sheet": {"Sheet1": None},
    "largest_sheet": {"Asian_Female": "AF", "Sheet1": None, "Caucasian_Male": "CM"},
}

#: The layouts :func:`write_fixture` can produce (``layout=``), the default first.
LAYOUTS = tuple(_SCUT_SHEETS)


def write_fixture(
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
    check_n(n, 4 if broken else 1)
    sheets = _SCUT_SHEETS[check_layout("scut_fbp5500", layout, LAYOUTS)]
    rng = seeded_rng("scut")
    files = FixtureImages(images, n)
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
    write_xlsx(
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
        scores[key], _ = mean_std(expect[name])
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
