"""LAPIS: the Leuven Art Personalized Image Set (Maerten et al., CVPR Workshops 2025).

Zero-shot evaluation set (SPEC 3.4). What is known from the paper, the project page and the
GRAPPA project report: 11,723 images of paintings (WikiArt, 26 styles, 7 genres), rated on a
visual analogue scale from "highly unaesthetic" to "highly aesthetic" by 552 raters, about 24
per image, with personal attributes of every rater and image attributes of every painting.

**Not confirmed** (``layout_confirmed=False``): the files. The data are released on request
only and no public copy or loader shows their layout, so this loader reads the most likely
form and makes every guess an option:

- a per-rater table (CSV; ``ratings_file``, default: the first ``*.csv`` under the root whose
  header has an image column and a rating column): one row per (image, rater). The image column
  is the first of ``image``, ``image_id``, ``image_name``, ``filename``, ``img``, ``painting``
  present (``image_col`` overrides), the rater column the first of ``rater``, ``rater_id``,
  ``user``, ``user_id``, ``participant``, ``participant_id``, ``annotator``, ``worker_id``
  (``rater_col``), the rating column the first of ``rating``, ``score``, ``aesthetic``,
  ``aesthetic_score``, ``response``, ``value`` (``rating_col``);
- when the table has no rater column it is read as one summary score per image instead;
- the images in ``images/`` (also tried: ``imgs/``, ``img/``; ``images_dir`` overrides); an
  image value without an extension is looked up with ``.jpg``, ``.jpeg`` and ``.png``.

Score: the visual-analogue rating; the scale is assumed 0-100 (``scale`` overrides), higher is
better. The MOS is computed here from the per-rater rows (:func:`hae_data.scores.aggregate_mos`,
``min_raters`` default 9; LAPIS has about 24 per image). Licence: access on request, research
use under the authors' terms. Citation: Maerten, Chen, De Winter, Bossens, Wagemans. LAPIS: a
novel dataset for personalized image aesthetic assessment. CVPR Workshops (CVEU) 2025. Homepage /
how to obtain: https://github.com/Anne-SofieMaerten/LAPIS (request form linked there).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from hae_data.records import Record, Rejection
from hae_data.scores import aggregate_mos, check_min_raters
from hae_data.sources.base import (
    CsvLabels,
    DirectoryIndex,
    Source,
    SourceFormatError,
    parse_score,
    relpath,
)
from hae_data.sources.catalog import CATALOG

__all__ = ["LapisSource"]

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "image_id", "image_name", "filename", "img", "painting")
RATER_COLUMNS = (
    "rater",
    "rater_id",
    "user",
    "user_id",
    "participant",
    "participant_id",
    "annotator",
    "worker_id",
)
RATING_COLUMNS = ("rating", "score", "aesthetic", "aesthetic_score", "response", "value")
_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        return [h.strip() for h in next(csv.reader(fh), [])]


def _pick(header: Sequence[str], option: str | None, candidates: Sequence[str]) -> str | None:
    if option is not None:
        return option if option in header else None
    lowered = {h.lower(): h for h in header}
    return next((lowered[c] for c in candidates if c in lowered), None)


class LapisSource(Source):
    """LAPIS from a per-rater CSV and ``images/`` (layout unconfirmed; see the module doc)."""

    info = CATALOG["lapis"]

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        min_raters: int = 9,
        ratings_file: str | None = None,
        images_dir: str | None = None,
        image_col: str | None = None,
        rater_col: str | None = None,
        rating_col: str | None = None,
        scale: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(root)
        self.min_raters = check_min_raters(min_raters)
        self.scale = tuple(scale) if scale is not None else self.info.scale
        candidates = (
            [self.root / ratings_file] if ratings_file else sorted(self.root.rglob("*.csv"))
        )
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
        self.images = self._images_dir(images_dir, ["images", "imgs", "img"])

    def _resolve(self, name: str, index: DirectoryIndex) -> Path:
        if Path(name).suffix.lower() not in _EXTENSIONS:
            for ext in _EXTENSIONS:
                if f"{name}{ext}" in index:
                    return self.images / f"{name}{ext}"
        return self.images / name

    def iter_items(self) -> Iterator[Record | Rejection]:
        """MOS per image from the per-rater rows (or the summary score when there are none)."""
        assert self.ratings_file is not None
        required = [self.image_col, self.rating_col] + ([self.rater_col] if self.rater_col else [])
        labels = CsvLabels(self.ratings_file, required, title=self.info.title)
        where = relpath(self.ratings_file, self.root)
        index = DirectoryIndex(self.images)
        rows: list[tuple[str, str, str]] = []
        for line, row, _fields, problem in labels.rows():
            if row is None:
                yield self._reject(f"{where}:{line}", "malformed_row", f"{where}:{line}: {problem}")
                continue
            rater = row[self.rater_col].strip() if self.rater_col else ""
            rows.append((row[self.image_col].strip(), rater, row[self.rating_col]))
        if self.rater_col is None:
            log.warning("LAPIS: %s has no rater column; reading one summary score per image", where)
            yield from self._summary(rows, index, where)
            return
        df = pd.DataFrame(rows, columns=["image", "rater", "rating"])
        result = aggregate_mos(
            df, ["rating"], source=self.info.name, scale=self.scale, min_raters=self.min_raters
        )
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
