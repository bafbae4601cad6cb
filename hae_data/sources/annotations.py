"""HumanBeauty-50K: the 12-dimension per-rater annotations (SPEC 2.4).

The paper's own annotation files are unpublished; this is the project's format (**Decision**,
SPEC 2.4), with its JSON Schema in ``annotation_schema/annotation_row.schema.json``:

- one row per (image, rater) with the columns ``image``, ``rater`` and one column per
  dimension, named by the standard's snake_case keys (``load_standard().keys``), each rating in
  [0, 1] (higher is better);
- as CSV (UTF-8, header row) or Parquet: ``<root>/annotations.csv`` or
  ``<root>/annotations.parquet``, or any number of ``*.csv`` / ``*.parquet`` files in
  ``<root>/annotations/`` (read in name order, for example one file per annotation batch);
  ``annotations`` overrides the location;
- ``image`` is the image's path relative to ``<root>/images/``; when ``images/`` does not hold
  them, the folder holding the most is searched for under the root, and ``images_dir``
  overrides.

Score: 12 MOS values per image, the mean of its raters' ratings per dimension, computed by
:func:`hae_data.scores.aggregate_mos`; an image needs ``min_raters`` (default
:data:`hae_data.defaults.MIN_RATERS`) valid ratings (``too_few_raters`` otherwise). A rating
row is rejected with a reason when it has the wrong number of fields (``malformed_row``), an
empty image or rater id (``malformed_rating_row``), a value that is not a number
(``non_numeric_rating``) or outside [0, 1] (``rating_out_of_range``); the detail of each of
these quotes the JSON Schema's own messages (:func:`annotation_schema.validate_annotation_row`).
The same rater rating the same image twice drops both rows (``duplicate_rating``). Extra
columns are ignored with a warning; a missing dimension column is a
:class:`~hae_data.sources.base.SourceFormatError` naming it.

Rater reliability (:mod:`hae_data.reliability`): every pass computes Krippendorff's alpha per
dimension and each rater's correlation with the others' leave-one-out mean on the valid rows,
kept as :attr:`AnnotationSource.reliability` (``inspect`` shows it). With
``min_rater_correlation`` set, raters below it (judged once they share ``min_rater_images``
images with others) are screened out before the MOS: each of their rows becomes an
``unreliable_rater`` rejection whose detail says why.

Records are ``part="fine_grained"``: ``dimension_scores`` (12 MOS in the standard's vector
order), ``dimension_std``, ``rater_count``, and ``raw_score`` = the Overall Aesthetic MOS.

Licence: as distributed by the HumanAesExpert authors (research use); files written in this
format by other annotators carry their own terms. Citation: Liao et al. HumanAesExpert:
Advancing a Multi-Modality Foundation Model for Human Image Aesthetic Assessment. arXiv
2503.23907, 2025. Homepage: https://humanaesexpert.github.io/HumanAesExpert/. How to obtain:
annotate with the standard in ``annotation_schema/standard.yaml`` (the released 50K labels
are read by :mod:`hae_data.sources.label_jsonl` instead).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotation_schema import load_standard, validate_annotation_row
from hae_data.defaults import MIN_RATERS
from hae_data.records import RATING_STAGE, Record, Rejection
from hae_data.reliability import (
    DEFAULT_MIN_IMAGES,
    SCREEN_REASON,
    ReliabilityReport,
    assess_reliability,
)
from hae_data.sources.base import (
    DirectoryIndex,
    RaterSource,
    SourceFormatError,
    SourceInfo,
    csv_rows,
    open_text,
    relpath,
)
from hae_data.sources.fixtures import (
    FixtureImages,
    FixtureManifest,
    ImageProvider,
    check_n,
    seeded_rng,
    write_csv,
)

__all__ = ["AnnotationSource", "write_fixture"]

log = logging.getLogger(__name__)

_ID_COLUMNS = ("image", "rater")


def _image_names(df: pd.DataFrame) -> list[str]:
    """The distinct non-empty ``image`` values of the rows read, in file order."""
    if not len(df):
        return []
    return [n for n in dict.fromkeys(str(i).strip() for i in df["image"].dropna()) if n]


class AnnotationSource(RaterSource):
    """Per-rater 12-dimension annotations (CSV or Parquet) and ``images/``."""

    info = SourceInfo(
        name="humanbeauty_50k",
        title="HumanBeauty-50K (12-dimension annotations)",
        part="fine_grained",
        scale=(0.0, 1.0),
        raters=f"at least {MIN_RATERS} raters per image, 12 dimensions each",
        licence="As distributed by the HumanAesExpert authors; research use.",
        citation="Liao et al. HumanAesExpert: Advancing a Multi-Modality Foundation Model for "
        "Human Image Aesthetic Assessment. arXiv 2503.23907, 2025.",
        homepage="https://humanaesexpert.github.io/HumanAesExpert/",
        use="annotations",
    )
    image_folders = ("images",)

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        min_raters: int = MIN_RATERS,
        annotations: str | None = None,
        images_dir: str | os.PathLike[str] | None = None,
        min_rater_correlation: float | None = None,
        min_rater_images: int = DEFAULT_MIN_IMAGES,
    ) -> None:
        super().__init__(root, min_raters=min_raters, images_dir=images_dir)
        if min_rater_correlation is not None and not -1.0 <= min_rater_correlation <= 1.0:
            raise ValueError(
                f"min_rater_correlation must be in [-1, 1], got {min_rater_correlation}"
            )
        if min_rater_images < 3:
            raise ValueError(f"min_rater_images must be >= 3, got {min_rater_images}")
        self.min_rater_correlation = min_rater_correlation
        self.min_rater_images = min_rater_images
        #: Agreement of the last pass's valid rows (set by :meth:`iter_items`).
        self.reliability: ReliabilityReport | None = None
        self.keys = load_standard().keys
        self.files = self._annotation_files(annotations)

    def label_names(self) -> list[str]:
        """The rated images (reads every annotation file; :meth:`iter_items` reads them once)."""
        df, _, _ = self.ratings()
        return _image_names(df)

    def _annotation_files(self, option: str | None) -> list[Path]:
        candidates = (
            [option] if option else ["annotations.csv", "annotations.parquet", "annotations"]
        )
        found = self._find(candidates, what="annotation file(s)")
        assert found is not None
        if found.is_dir():
            files = sorted(
                p
                for p in found.iterdir()
                if p.is_file() and p.suffix.lower() in (".csv", ".parquet")
            )
            if not files:
                raise SourceFormatError(f"HumanBeauty-50K: no .csv or .parquet file in {found}")
            return files
        return [found]

    def _check_columns(self, path: Path, columns: list[str]) -> None:
        missing = [c for c in (*_ID_COLUMNS, *self.keys) if c not in columns]
        if missing:
            raise SourceFormatError(
                f"HumanBeauty-50K: {path} lacks required column(s) {missing}; found {columns}"
            )
        extra = [c for c in columns if c not in (*_ID_COLUMNS, *self.keys)]
        if extra:
            log.warning("HumanBeauty-50K: %s: ignoring extra column(s) %s", path.name, extra)

    def _read(self, path: Path) -> tuple[pd.DataFrame, list[Rejection]]:
        """One annotation file as a frame of (image, rater, 12 values, where)."""
        columns = [*_ID_COLUMNS, *self.keys]
        name = relpath(path, self.root)
        rejections: list[Rejection] = []
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            self._check_columns(path, table.column_names)
            df = table.select(columns).to_pandas()
            df["where"] = [f"{name}:row {i + 1}" for i in range(len(df))]
            return df, rejections
        rows: list[list[Any]] = []
        with open_text(path, title="HumanBeauty-50K") as fh:
            reader = csv.reader(fh)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise SourceFormatError(f"HumanBeauty-50K: {path} is empty") from None
            self._check_columns(path, header)
            pick = [header.index(c) for c in columns]
            for line, fields, error in csv_rows(reader):
                where = f"{name}:{line}"
                if error:
                    rejections.append(self._reject(where, "malformed_row", f"{where}: {error}"))
                    continue
                if not fields:  # a blank line
                    continue
                if len(fields) != len(header):
                    image = fields[pick[0]].strip() if len(fields) > pick[0] else where
                    rejections.append(
                        self._reject(
                            image or where,
                            "malformed_row",
                            f"{where}: {len(fields)} fields, header has {len(header)}",
                        )
                    )
                    continue
                rows.append([fields[i] for i in pick] + [where])
        return pd.DataFrame(rows, columns=[*columns, "where"]), rejections

    def _screen(self, df: pd.DataFrame) -> tuple[pd.DataFrame, list[Rejection]]:
        """Drop rows the schema refuses, with the schema's messages as the detail."""
        keys = list(self.keys)
        numeric = df[keys].apply(pd.to_numeric, errors="coerce")
        ids = df[list(_ID_COLUMNS)].astype(str).apply(lambda s: s.str.strip())
        bad_id = df["image"].isna() | df["rater"].isna() | (ids == "").any(axis=1)
        bad_id |= ids.isin(["nan", "None"]).any(axis=1)
        non_numeric = numeric.isna().any(axis=1) & ~bad_id
        out_of_range = ((numeric < 0.0) | (numeric > 1.0)).any(axis=1) & ~bad_id & ~non_numeric
        bad = bad_id | non_numeric | out_of_range
        rejections: list[Rejection] = []
        for idx in df.index[bad]:
            row = df.loc[idx]
            reason = (
                "malformed_rating_row"
                if bad_id[idx]
                else "non_numeric_rating"
                if non_numeric[idx]
                else "rating_out_of_range"
            )
            candidate: dict[str, Any] = {"image": row["image"], "rater": row["rater"]}
            for key in keys:
                value = numeric.at[idx, key]
                candidate[key] = row[key] if math.isnan(value) else float(value)
            errors = validate_annotation_row(
                {k: v for k, v in candidate.items() if not (isinstance(v, float) and math.isnan(v))}
            )
            image = str(row["image"]).strip() if not bad_id[idx] else str(row["where"])
            rejections.append(
                Rejection(
                    source=self.info.name,
                    file_name=image,
                    reason=reason,
                    stage="ratings",
                    detail=f"{row['where']}: rater {row['rater']}: " + "; ".join(errors)[:400],
                )
            )
        clean = df[~bad].copy()
        clean[keys] = numeric[~bad]
        clean["image"] = clean["image"].astype(str).str.strip()
        clean["rater"] = clean["rater"].astype(str).str.strip()
        return clean, rejections

    def ratings(self) -> tuple[pd.DataFrame, pd.DataFrame, list[Rejection]]:
        """Every row read (``image``, ``rater``, 12 values, ``where``), the valid ones with
        numeric values, and the rejections of the rest; no screen, no MOS."""
        frames: list[pd.DataFrame] = []
        row_rejections: list[Rejection] = []
        for path in self.files:
            df, rejected = self._read(path)
            frames.append(df)
            row_rejections.extend(rejected)
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        clean, screened = self._screen(df)
        row_rejections.extend(screened)
        return df, clean, row_rejections

    def _screen_raters(self, clean: pd.DataFrame) -> tuple[pd.DataFrame, list[Rejection]]:
        """Agreement of the valid rows, and the rows of raters the screen excludes."""
        self.reliability = assess_reliability(
            clean,
            self.keys,
            min_correlation=self.min_rater_correlation,
            min_images=self.min_rater_images,
        )
        reasons = {r.rater: r.reason for r in self.reliability.excluded}
        if not reasons:
            return clean, []
        drop = clean["rater"].isin(list(reasons))
        rejections = [
            Rejection(
                source=self.info.name,
                file_name=str(image),
                reason=SCREEN_REASON,
                stage=RATING_STAGE,
                detail=f"{where}: rater {rater} screened out: {reasons[rater]}",
            )
            for image, rater, where in clean.loc[drop, ["image", "rater", "where"]].itertuples(
                index=False
            )
        ]
        log.info(
            "HumanBeauty-50K: screen excluded %d rater(s) (%d rows): %s",
            len(reasons),
            len(rejections),
            ", ".join(sorted(reasons)),
        )
        return clean[~drop], rejections

    def iter_items(self) -> Iterator[Record | Rejection]:
        """12-dimension MOS per image; row rejections first, then one record per image."""
        df, clean, row_rejections = self.ratings()
        clean, unreliable = self._screen_raters(clean)
        row_rejections.extend(unreliable)
        names = _image_names(df)
        self.discover_images(names)
        images = set(names)
        to_path = {i: self.images / i for i in images if i}
        yield from self._fix_mos_rejections(row_rejections, to_path)
        result = self._mos(clean, self.keys)
        yield from self._fix_mos_rejections(result.rejections, to_path, self.files[0].name)
        # Images whose every row was malformed never reach the MOS: give them a verdict too.
        seen = set(clean["image"])
        for image in sorted(images - seen):
            if image and image in to_path:
                yield Rejection(
                    source=self.info.name,
                    file_name=relpath(to_path[image], self.root),
                    reason="too_few_raters",
                    stage="mos",
                    detail=f"0 valid rating(s), need at least {self.min_raters}",
                    image_path=str(to_path[image]),
                )
        index = DirectoryIndex(self.images, self.root)
        root_col = load_standard().root - 1
        where = ", ".join(relpath(p, self.root) for p in self.files)
        table = result.table
        # Plain arrays: iterrows over 50,000 images x 25 columns costs seconds.
        means = table[list(self.keys)].to_numpy(dtype=float)
        stds = table[[f"{k}_std" for k in self.keys]].to_numpy(dtype=float)
        counts = table["rater_count"].to_numpy()
        for image, mean, std, count in zip(table.index, means, stds, counts, strict=True):
            path = self.images / str(image)
            found, rejection = self._locate(index, str(image), relpath(path, self.root), where)
            if rejection is not None:
                yield rejection
                continue
            known = not np.isnan(std).any()  # NaN only with a single rater
            yield self._record(
                found,
                float(mean[root_col]),
                part="fine_grained",
                rater_count=int(count),
                score_std=float(std[root_col]) if known else None,
                dimension_scores=mean.tolist(),
                dimension_std=std.tolist() if known else None,
            )


# -- fixture: a miniature copy in the native layout (see hae_data.sources.fixtures) ----


def write_fixture(
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
    check_n(n, 3 if broken else 1)
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    keys = list(load_standard().keys)
    rng = seeded_rng("humanbeauty_50k")
    files = FixtureImages(images, n)
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
        write_csv(root / "annotations.csv", [header, *rows])
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
