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
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from hae_data.defaults import MIN_RATERS
from hae_data.records import Record, Rejection
from hae_data.scores import aggregate_mos, check_min_raters
from hae_data.sources.base import (
    DirectoryIndex,
    Source,
    SourceFormatError,
    iter_xlsx_rows,
    read_text_lines,
    relpath,
    xlsx_sheet_names,
    xlsx_sheet_sizes,
)
from hae_data.sources.catalog import CATALOG

__all__ = ["SUBSETS", "ScutFbp5500Source"]

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


class ScutFbp5500Source(Source):
    """SCUT-FBP5500 from ``All_Ratings.xlsx`` (60 raters per image) and ``Images/``."""

    info = CATALOG["scut_fbp5500"]
    image_folders = ("Images", "images", ".")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        min_raters: int = MIN_RATERS,
        images_dir: str | os.PathLike[str] | None = None,
        sheet: str | None = None,
    ) -> None:
        super().__init__(root, images_dir=images_dir)
        self.min_raters = check_min_raters(min_raters)
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
        lo, hi = self.info.scale
        result = aggregate_mos(
            df,
            ["Rating"],
            source=self.info.name,
            scale=(lo, hi),
            min_raters=self.min_raters,
            image_col="Filename",
            rater_col="Rater",
        )
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
