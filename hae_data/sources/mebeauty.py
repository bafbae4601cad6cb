"""MEBeauty: a multi-ethnic facial beauty dataset in the wild (Lebedeva, Guo, Ying, 2021).

Native format (github.com/fbplab/MEBeauty-database; its README: "Generic (average) and
personal scores are included in ``/scores/train_2022, test_2022, val_2022.txt`` and
``/scores/generic_scores_all_2022.xlsx``, respectively"):

- ``images/<gender>/<ethnicity>/<file>``: about 2,550 faces; gender ``female``/``male``,
  ethnicity ``asian``, ``black``, ``caucasian``, ``hispanic``, ``indian``, ``mideastern``
  (one list line spells it ``midestern``; ethnicity is taken from the real folder);
- ``scores/generic_scores_all_2022.xlsx``: the per-rater table in wide form, one row per image:
  an ``image`` column and one column per rater (about 360), a cell per rating, empty where
  that rater did not rate the image. Third-party measurements report 2,607 rows x 363 columns;
  the columns that are not raters (``mean``, ``path``, ``std``, ``count``, ``median`` and
  unnamed index columns) are recognised by name and skipped. ``ratings_file`` picks another
  workbook of the same shape (for example ``scores/generic_scores_all.xlsx``);
- ``scores/{train,val,test}_2022.txt``: the official split, lines ``<path> <mean>`` where the
  path is the authors' absolute path (``/home/ubuntu/ME-beautydatabase/images/female/...``);
  everything before ``images/`` is ignored.

Confirmed: the folder layout, the split lists and their line format (read from the
repository), the wide per-rater layout with its ``image`` column (the authors' cleaning
notebook). Not confirmed against a copy of the 2022 workbook (binary, unreadable here): the
exact names of its non-rater columns, and whether ``image`` holds a bare file name or a path.
Both forms are handled: a path is cut at ``images/``; a bare name is looked up among the image
files, and a name found in several folders is rejected as ``ambiguous_file``.

Score: 1-10, higher is more attractive. Raters: about 360 crowd workers, median about 25 per
image; the MOS is computed here (:func:`hae_data.scores.aggregate_mos`, ``min_raters`` default
9, an option) and the split list's published mean is kept as ``published_score``. An image
listed twice in the workbook is a ``duplicate_id`` (the first row wins). Metadata: ``gender``
and ``ethnicity`` from the path, ``official_split``.

Licence: non-commercial research use only (the repository's README). Citation: Lebedeva, Guo,
Ying. MEBeauty: a multi-ethnic facial beauty dataset in-the-wild. Neural Computing and
Applications, 2021. Homepage / how to obtain: https://github.com/fbplab/MEBeauty-database.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from hae_data.records import Record, Rejection
from hae_data.scores import aggregate_mos, check_min_raters
from hae_data.sources.base import (
    IMAGE_EXTENSIONS,
    Source,
    SourceFormatError,
    iter_xlsx_rows,
    read_text_lines,
    relpath,
)
from hae_data.sources.catalog import CATALOG

__all__ = ["MebeautySource"]

log = logging.getLogger(__name__)

_NON_RATER = {"mean", "path", "std", "count", "median", "score", "index", "id"}
_SPLITS = ("train", "val", "test")


def _after_images(text: str) -> str | None:
    """The part of a path from ``images/`` on, or None when it has no ``images`` component."""
    parts = text.replace("\\", "/").split("/")
    if "images" in parts[:-1]:
        return "/".join(parts[parts.index("images") :])
    return None


class MebeautySource(Source):
    """MEBeauty from the per-rater workbook, the split lists and ``images/``."""

    info = CATALOG["mebeauty"]

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        min_raters: int = 9,
        ratings_file: str = "scores/generic_scores_all_2022.xlsx",
    ) -> None:
        super().__init__(root)
        self.min_raters = check_min_raters(min_raters)
        self.ratings_file = self._find([ratings_file], what=f"per-rater workbook {ratings_file}")
        self.images = self.root / "images"
        if not self.images.is_dir():
            log.warning("MEBeauty: no images/ folder under %s", self.root)

    def _image_files(self) -> tuple[dict[str, Path], dict[str, list[Path]]]:
        """Every image under ``images/``, by relative path and by bare file name."""
        by_rel: dict[str, Path] = {}
        by_name: dict[str, list[Path]] = defaultdict(list)
        if self.images.is_dir():
            for path in sorted(self.images.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                    by_rel[relpath(path, self.root)] = path
                    by_name[path.name].append(path)
        return by_rel, by_name

    def ratings(self) -> tuple[pd.DataFrame, list[Rejection]]:
        """The wide workbook melted to one row per (image, rater) with a rating.

        Also returns ``duplicate_id`` rejections for image rows listed again.
        """
        path = self.ratings_file
        assert path is not None
        where = relpath(path, self.root)
        rows: list[tuple[str, str, object]] = []
        rejections: list[Rejection] = []
        image_col: int | None = None
        raters: list[tuple[int, str]] = []
        first_row: dict[str, int] = {}
        for number, values in iter_xlsx_rows(path):
            if image_col is None:
                headers = [str(v).strip() if v is not None else "" for v in values]
                lowered = [h.lower() for h in headers]
                if "image" not in lowered:
                    raise SourceFormatError(
                        f"MEBeauty: {path} lacks the required column 'image'; found "
                        f"{[h for h in headers if h][:20]}"
                    )
                image_col = lowered.index("image")
                raters = [
                    (i, h)
                    for i, h in enumerate(headers)
                    if i != image_col
                    and h
                    and h.lower() not in _NON_RATER
                    and not h.lower().startswith("unnamed")
                ]
                skipped = [h for i, h in enumerate(headers) if i != image_col and h]
                log.info(
                    "MEBeauty: %d rater columns, %d other column(s) skipped: %s",
                    len(raters),
                    len(skipped) - len(raters),
                    sorted(set(skipped) - {h for _, h in raters}),
                )
                continue
            cell = values[image_col] if image_col < len(values) else None
            image = str(cell).strip() if cell is not None else ""
            if not image:
                if any(v is not None for v in values):
                    rejections.append(
                        self._reject(
                            f"{where}:{number}", "malformed_row", f"{where}:{number}: no image"
                        )
                    )
                continue
            if image in first_row:
                rejections.append(
                    self._reject(
                        image,
                        "duplicate_id",
                        f"{where}:{number}: image already listed on row {first_row[image]}; "
                        "this row's ratings are ignored",
                    )
                )
                continue
            first_row[image] = number
            for i, rater in raters:
                value = values[i] if i < len(values) else None
                if value is None or (isinstance(value, str) and not value.strip()):
                    continue  # not rated by this rater
                rows.append((image, rater, value))
        df = pd.DataFrame(rows, columns=["image", "rater", "rating"])
        return df, rejections

    def _split_lists(self) -> tuple[dict[str, str], dict[str, float | None]]:
        """Official split and published mean, keyed by path from ``images/`` and by bare name."""
        split_of: dict[str, str] = {}
        published: dict[str, float | None] = {}
        for split in _SPLITS:
            path = self.root / "scores" / f"{split}_2022.txt"
            if not path.is_file():
                continue
            for number, line in read_text_lines(path):
                parts = line.strip().rsplit(maxsplit=1)
                key = _after_images(parts[0]) or parts[0].rsplit("/", 1)[-1]
                try:
                    score: float | None = float(parts[1]) if len(parts) > 1 else None
                except ValueError:
                    log.warning("%s:%d: no score on this line: %r", path, number, line)
                    score = None
                for k in (key, key.rsplit("/", 1)[-1]):
                    split_of.setdefault(k, split)
                    published.setdefault(k, score)
        return split_of, published

    def iter_items(self) -> Iterator[Record | Rejection]:
        """MOS per image from the per-rater workbook."""
        df, duplicates = self.ratings()
        by_rel, by_name = self._image_files()
        where = relpath(self.ratings_file, self.root)  # type: ignore[arg-type]

        # Resolve each workbook image to a file before the MOS, so rejections carry paths.
        resolved: dict[str, Path] = {}
        problems: dict[str, Rejection] = {}
        for image in df["image"].unique():
            rel = _after_images(image)
            if rel is not None and rel in by_rel:
                path = by_rel[rel]
            else:
                # A bare name, or a path whose folders differ from the copy on disk (the
                # authors' lists spell one folder "midestern"): look the file name up.
                matches = by_name.get(image.replace("\\", "/").rsplit("/", 1)[-1], [])
                if len(matches) > 1:
                    problems[image] = self._reject(
                        image,
                        "ambiguous_file",
                        f"{where}: {image!r} matches {len(matches)} files: "
                        + ", ".join(relpath(m, self.root) for m in matches),
                    )
                    continue
                path = matches[0] if matches else self.root / (rel or f"images/{image}")
            resolved[image] = path

        for rej in duplicates:
            dup_path = resolved.get(rej.file_name)
            if dup_path is not None:
                rej.file_name = relpath(dup_path, self.root)
                rej.image_path = str(dup_path)
            yield rej
        yield from problems.values()
        df = df[~df["image"].isin(list(problems))]

        lo, hi = self.info.scale
        result = aggregate_mos(
            df,
            ["rating"],
            source=self.info.name,
            scale=(lo, hi),
            min_raters=self.min_raters,
        )
        yield from self._fix_mos_rejections(result.rejections, resolved, where)
        split_of, published = self._split_lists()
        for image, row in result.table.iterrows():
            path = resolved[str(image)]
            if not path.is_file():
                yield self._missing(path, where)
                continue
            rel = relpath(path, self.root)
            key = _after_images(rel) or rel
            metadata: dict[str, object] = {}
            parts = rel.split("/")
            if len(parts) >= 4 and parts[0] == "images":
                metadata["gender"], metadata["ethnicity"] = parts[1], parts[2]
            split = split_of.get(key, split_of.get(path.name))
            if split is not None:
                metadata["official_split"] = split
            score = published.get(key, published.get(path.name))
            if score is not None:
                metadata["published_score"] = score
            std = float(row["rating_std"])
            yield self._record(
                path,
                float(row["rating"]),
                rater_count=int(row["rater_count"]),
                score_std=None if math.isnan(std) else std,
                metadata=metadata,
            )
