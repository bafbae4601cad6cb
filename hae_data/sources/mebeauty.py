"""MEBeauty: a multi-ethnic facial beauty dataset in the wild (Lebedeva, Guo, Ying, 2021).

Native format, read from the repository as it stands (github.com/fbplab/MEBeauty-database,
``README.md``: "Generic (average) and personal scores are included in
``/scores/train_2022, test_2022, val_2022.txt`` and ``/scores/generic_scores_all_2022.xlsx``,
respectively"):

- ``original_images/<gender>/<ethnicity>/<file>``: 2,547 faces (2,544 JPEG, 3 PNG); gender
  ``female``/``male``, ethnicity ``asian``, ``black``, ``caucasian``, ``hispanic``,
  ``indian``, ``mideastern``. Eight file names occur in two folders (the same photo filed
  under two ethnicities or genders). ``cropped_images/images_crop_align_{mtcnn,opencv}/``
  hold face crops of the same files, not used here. Earlier copies had the originals in
  ``images/<gender>/<ethnicity>/`` (the authors' own paths, below, still say ``images/``):
  both are accepted, failing them the folder holding the most rated images is searched for
  under the root, and ``images_dir`` overrides;
- ``scores/generic_scores_all_2022.xlsx``, first sheet: 2,607 rows, columns ``mean``,
  ``image`` (the bare file name), ``path`` (the authors' absolute path,
  ``/home/ubuntu/ME-beautydatabase/images/<gender>/<ethnicity>/<file>``, empty on 54 rows),
  then one column per rater (360), a cell per rating, empty where that rater did not rate the
  image. Columns that are not raters (``mean``, ``path``, ``std``, ``count``, ``median``,
  unnamed index columns) are recognised by name and skipped. ``ratings_file`` picks another
  workbook of the same shape (for example ``scores/generic_scores_all.xlsx``); the file is
  looked for where given and at the root;
- ``scores/{train,val,test}_2022.txt``: the official split, lines ``<path> <mean>`` where the
  path names the crop (``./cropped_images/images_crop_align_mtcnn/<gender>/<ethnicity>/<file>``),
  quoted when it holds spaces (``"./cropped_images/.../x (1).jpg" 7.44``). Entries are
  matched on ``<gender>/<ethnicity>/<file>``, else on the file name.

How a workbook row finds its file: the ``path`` cell, cut after its ``images`` folder, names
``<gender>/<ethnicity>/<file>`` inside the image folder; when that file is not there (54 rows
have no path; the authors' lists once spelt a folder ``midestern``) the bare name is looked up
among all image files. A bare name found in several folders is ``ambiguous_file`` only when no
``path`` said which one was rated. Measured on the repository: 2,530 of the 2,607 rows find
their image (2,523 by ``path``, 7 by bare name), 77 name files it does not hold, and one
image is listed four times (``duplicate_id``). This loader, run on a copy of the repository,
keeps 2,278 images and rejects 249 as ``too_few_raters`` (fewer than 9), 77 as
``missing_file`` and 3 as ``duplicate_id``.

Score: 1-10, higher is more attractive. Raters: the README says about 300 raters; the 2022
workbook has 360 rater columns. The MOS is computed here (:func:`hae_data.scores.aggregate_mos`,
``min_raters`` default 9, an option) and the split list's published mean is kept as
``published_score``. An image listed twice in the workbook is a ``duplicate_id`` (the first
row wins). Metadata: ``gender`` and ``ethnicity`` from the folders, ``official_split``.

Licence: "The MEBeauty can be only used for non-commercial research purpose" (README).
Citation: Lebedeva, Guo, Ying. MEBeauty: a multi-ethnic facial beauty dataset in-the-wild.
Neural Computing and Applications, 2021. Homepage / how to obtain:
https://github.com/fbplab/MEBeauty-database (the images are in the repository).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hae_data.defaults import MIN_RATERS
from hae_data.records import Record, Rejection
from hae_data.sources.base import (
    IMAGE_EXTENSIONS,
    DirectoryIndex,
    RaterSource,
    SourceFormatError,
    SourceInfo,
    iter_xlsx_rows,
    log_folder_choice,
    read_text_lines,
    relpath,
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

__all__ = ["LAYOUTS", "MebeautySource", "write_fixture"]

log = logging.getLogger(__name__)

_NON_RATER = {"mean", "path", "std", "count", "median", "score", "index", "id"}
_SPLITS = ("train", "val", "test")
#: Reasons a path cell can give that no bare-name look-up may override.
_FINAL = ("outside_root", "symlink_loop", "undecodable_name")


def _after_images(text: str) -> str | None:
    """The part of a path after its ``images`` folder, or None when it has none."""
    parts = text.replace("\\", "/").split("/")
    if "images" in parts[:-1]:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("images") + 1 :])
    return None


def _tail(text: str, n: int = 3) -> str:
    """The last ``n`` components of a path (``<gender>/<ethnicity>/<file>``)."""
    return "/".join(text.replace("\\", "/").split("/")[-n:])


def _split_line(line: str) -> tuple[str, str | None]:
    """``(path, score text)`` of a split-list line; the path may be double-quoted."""
    line = line.strip()
    if line.startswith('"'):
        end = line.find('"', 1)
        if end > 0:
            return line[1:end], line[end + 1 :].strip() or None
    parts = line.rsplit(maxsplit=1)
    return parts[0].strip('"'), parts[1] if len(parts) > 1 else None


def _walk_files(folder: Path) -> list[str]:
    """Image files under ``folder`` (paths relative to it), symlinked folders not followed.

    Names that are not valid UTF-8 on disk cannot match a workbook entry and are left out.
    """
    out: list[str] = []
    base = len(folder.parts)
    for here, dirs, files in os.walk(folder, followlinks=False, onerror=lambda _: None):
        dirs.sort()
        prefix = Path(here).parts[base:]
        for name in sorted(files):
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = "/".join((*prefix, name))
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                continue
            out.append(rel)
    return out


class MebeautySource(RaterSource):
    """MEBeauty from the per-rater workbook, the split lists and ``original_images/``."""

    info = SourceInfo(
        name="mebeauty",
        title="MEBeauty",
        part="overall",
        scale=(1.0, 10.0),
        raters="per-rater workbook (scores/generic_scores_all_2022.xlsx), 360 rater columns "
        "(the README says about 300 raters); MOS computed here",
        licence="Non-commercial research use only (the repository's README).",
        citation="Lebedeva, Guo, Ying. MEBeauty: a multi-ethnic facial beauty dataset "
        "in-the-wild. Neural Computing and Applications, 2021.",
        homepage="https://github.com/fbplab/MEBeauty-database",
        use="training",
    )
    image_folders = ("original_images", "images", ".")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        min_raters: int = MIN_RATERS,
        ratings_file: str = "scores/generic_scores_all_2022.xlsx",
        images_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(root, min_raters=min_raters, images_dir=images_dir)
        self.ratings_file = self._find(
            [ratings_file, Path(ratings_file).name], what=f"per-rater workbook {ratings_file}"
        )

    def label_names(self) -> list[str]:
        """Where the workbook's rows say their images are (reads the workbook)."""
        return self._names(self.ratings()[2])

    @staticmethod
    def _names(locations: dict[str, str]) -> list[str]:
        """The ``<gender>/<ethnicity>/<file>`` part of each path cell.

        Bare names say nothing about the folder (they are found anywhere below it), so a
        workbook without paths leaves the choice to the known layouts.
        """
        return [rel for loc in locations.values() if (rel := _after_images(loc))]

    def ratings(self) -> tuple[pd.DataFrame, list[Rejection], dict[str, str]]:
        """The wide workbook melted to one row per (image, rater) with a rating.

        Also returns ``duplicate_id`` rejections for image rows listed again, and each image
        key's location: its ``path`` cell, else its ``image`` cell. The key (the ``image``
        column of the table) is the location too, so two files that share a bare name but
        not a folder stay two images.
        """
        path = self.ratings_file
        assert path is not None
        where = relpath(path, self.root)
        rows: list[tuple[str, str, object]] = []
        rejections: list[Rejection] = []
        image_col: int | None = None
        path_col: int | None = None
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
                path_col = lowered.index("path") if "path" in lowered else None
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
            image = _cell(values, image_col)
            location = _cell(values, path_col) if path_col is not None else ""
            key = location or image
            if not key:
                if any(v is not None for v in values):
                    rejections.append(
                        self._reject(
                            f"{where}:{number}", "malformed_row", f"{where}:{number}: no image"
                        )
                    )
                continue
            if key in first_row:
                rejections.append(
                    self._reject(
                        key,
                        "duplicate_id",
                        f"{where}:{number}: image already listed on row {first_row[key]}; "
                        "this row's ratings are ignored",
                    )
                )
                continue
            first_row[key] = number
            for i, rater in raters:
                value = values[i] if i < len(values) else None
                if value is None or (isinstance(value, str) and not value.strip()):
                    continue  # not rated by this rater
                rows.append((key, rater, value))
        df = pd.DataFrame(rows, columns=["image", "rater", "rating"])
        return df, rejections, {k: k for k in first_row}

    def _split_lists(self) -> tuple[dict[str, str], dict[str, float | None]]:
        """Official split and published mean, keyed by ``<gender>/<ethnicity>/<file>`` and name."""
        split_of: dict[str, str] = {}
        published: dict[str, float | None] = {}
        for split in _SPLITS:
            path = self.root / "scores" / f"{split}_2022.txt"
            if not path.is_file():
                continue
            for number, line in read_text_lines(path, title=self.info.title):
                listed, text = _split_line(line)
                try:
                    score: float | None = float(text) if text is not None else None
                except ValueError:
                    log.warning("%s:%d: no score on this line: %r", path, number, line)
                    score = None
                for k in (_tail(listed), _tail(listed, 1)):
                    split_of.setdefault(k, split)
                    published.setdefault(k, score)
        return split_of, published

    def _resolve(
        self,
        key: str,
        index: DirectoryIndex,
        by_name: dict[str, list[str]],
        where: str,
    ) -> tuple[Path, Rejection | None]:
        """The file a workbook row rated: its path cell first, then its bare name."""
        rel = _after_images(key)
        if rel is None and ("/" in key or "\\" in key):
            rel = key  # a path without an images/ folder: taken as relative (checked below)
        if rel is not None:
            found, rejection = self._locate(index, rel, key, where)
            if rejection is None or rejection.reason in _FINAL:
                return Path(found), rejection
        name = _tail(key, 1)
        matches = by_name.get(name, [])
        if len(matches) > 1:
            return self.images / name, self._reject(
                key,
                "ambiguous_file",
                f"{where}: {key!r} matches {len(matches)} files and no path says which: "
                + ", ".join(relpath(self.images / m, self.root) for m in matches),
            )
        if not matches:
            missing = self.images / (rel or name)
            return missing, self._missing(missing, where)
        found, rejection = self._locate(index, matches[0], key, where)
        return Path(found), rejection

    def iter_items(self) -> Iterator[Record | Rejection]:
        """MOS per image from the per-rater workbook."""
        df, duplicates, locations = self.ratings()
        choice = self.discover_images(self._names(locations))
        where = relpath(self.ratings_file, self.root)  # type: ignore[arg-type]
        by_name: dict[str, list[str]] = defaultdict(list)
        for rel in _walk_files(self.images):
            by_name[rel.rsplit("/", 1)[-1]].append(rel)
        index = DirectoryIndex(self.images, self.root)

        # Resolve each workbook image to a file before the MOS, so rejections carry paths.
        resolved: dict[str, Path] = {}
        problems: dict[str, Rejection] = {}
        for key in df["image"].unique():
            path, rejection = self._resolve(str(key), index, by_name, where)
            if rejection is not None:
                if rejection.reason != "outside_root":
                    rejection.file_name = relpath(path, self.root)
                problems[str(key)] = rejection
            else:
                resolved[str(key)] = path

        if len(locations) > len(self._names(locations)):
            # Bare names play no part in choosing the folder; count them now they are found.
            self.image_choice = replace(choice, matched=len(resolved), total=len(locations))
            log_folder_choice(self.image_choice, self.root, self.info.title)

        for rej in duplicates:
            dup_path = resolved.get(rej.file_name)
            if dup_path is not None:
                rej.file_name = relpath(dup_path, self.root)
                rej.image_path = str(dup_path)
            yield rej
        # Images that cannot be used go before the MOS, so their ratings are not judged.
        yield from problems.values()
        df = df[~df["image"].isin(list(problems))]

        result = self._mos(df, ["rating"])
        yield from self._fix_mos_rejections(result.rejections, resolved, where)
        split_of, published = self._split_lists()
        for image, row in result.table.iterrows():
            path = resolved[str(image)]
            rel = relpath(path, self.images)
            metadata: dict[str, object] = {}
            parts = rel.split("/")
            if len(parts) >= 3:
                metadata["gender"], metadata["ethnicity"] = parts[-3], parts[-2]
            key = _tail(rel)
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


def _cell(values: tuple[object, ...], col: int | None) -> str:
    """A workbook cell as stripped text ("" when empty or absent)."""
    if col is None or col >= len(values) or values[col] is None:
        return ""
    return str(values[col]).strip()


# -- fixture: a miniature copy in the native layout (see hae_data.sources.fixtures) ----

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

#: The layouts :func:`write_fixture` can produce (``layout=``), the default first.
LAYOUTS = ("repo", "images")


def write_fixture(
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
    check_n(n, 3 if broken else 1)
    repo = check_layout("mebeauty", layout, LAYOUTS) == "repo"
    image_root = root / ("original_images" if repo else "images")
    rng = seeded_rng("mebeauty")
    files = FixtureImages(images, n)
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
    write_xlsx(root / "scores" / "generic_scores_all_2022.xlsx", {"Sheet1": sheet})
    scores, counts, meta = {}, {}, {}
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, (rel, values) in enumerate(expect.items()):
        key = f"{image_root.name}/{rel}"
        scores[key], _ = mean_std(values)
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
