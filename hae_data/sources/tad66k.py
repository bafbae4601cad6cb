"""TAD66K: the Theme and Aesthetics Dataset (He et al., IJCAI 2022).

Native format. The authors' README (github.com/woshidandan/TANet-image-aesthetics-and-quality-
assessment, ``README.md``) links a Google Drive / Baidu folder holding "images with the largest
side scaled to 800, and labels categorized by different themes". The labels as the authors
ship them (read from ``code/TAD66K/dataset.zip`` in that repository): ``merge/train.csv``
(52,248 rows) and ``merge/test.csv`` (14,079 rows), the official split, columns ``image,score``
with CRLF line ends; and ``unmerge/{train,test}/<theme>.csv`` (47 themes, same columns), one
file per theme. The authors' loader (``code/TAD66K/dataset.py``) reads ``image`` and
``score`` and divides the score by 10. Accepted layouts:

- ``labels/merge`` + ``labels/unmerge`` (the Drive folder's ``labels/``), the images in
  ``TAD66K/`` beside ``labels/`` (the Drive folder's image folder), ``imgs/`` (a third-party
  converter found by code search reads ``TAD66K/imgs/<image>`` beside
  ``TAD66K/labels/merge/``), ``images/``, ``img/`` or the root itself (Ry3nG/SSIRA,
  ``code/TAD66K/utils/dataset.py`` with ``code/TAD66K/utils/constants.py``, reads the
  images directly from the folder holding ``labels/merge/``);
- ``dataset/merge`` + ``dataset/unmerge`` (the repository's ``dataset.zip`` unpacked);
- ``merge/`` + ``unmerge/`` at the root.

Failing the known image folders, the folder holding the most of the label names is searched
for under the root; ``images_dir`` overrides. Each image's ``theme`` is the name of the
per-theme file that lists it (older copies with one folder per theme under ``labels/`` give
the file's name too). Run on the repository's own label files (with an empty placeholder file
per image in ``TAD66K/``), the loader keeps all 66,327 rows and gives every image one of the
47 themes.

Score: 0-10, higher is better (the merged files span 1.13-9.46); each image's score is the
mean of at least 1,200 ratings from the authors' annotators (no per-rater data is released).
Licence: no dataset licence is stated; the repository (code and labels) is under Apache-2.0
(its ``LICENSE`` and README badge) and the images come from the web: treat them as research
use only. Citation: He, Zhang, Xie, Jiang, Ming. Rethinking Image Aesthetics Assessment:
Models, Datasets and Benchmarks. IJCAI 2022. Homepage / how to obtain:
https://github.com/woshidandan/TANet-image-aesthetics-and-quality-assessment (README links the
folder).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from hae_data.records import Record, Rejection
from hae_data.sources.base import Source, SourceInfo, csv_column, iter_scored_csv
from hae_data.sources.fixtures import (
    FixtureManifest,
    ImageProvider,
    check_layout,
    check_n,
    write_csv,
    write_scored_csv,
)

__all__ = ["LAYOUTS", "Tad66kSource", "write_fixture"]

log = logging.getLogger(__name__)


#: Where the label folders ``merge/`` and ``unmerge/`` sit, relative to the root.
_LABEL_DIRS = ("labels", "dataset", ".")


class Tad66kSource(Source):
    """TAD66K from ``merge/{train,test}.csv`` (under ``labels/`` or ``dataset/``) and its images."""

    info = SourceInfo(
        name="tad66k",
        title="TAD66K",
        part="overall",
        scale=(0.0, 10.0),
        raters="mean of at least 1,200 ratings per image; no per-rater data released",
        licence="No dataset licence stated; the authors' repository (code and labels) is "
        "Apache-2.0 and the images come from the web: research use only.",
        citation="He, Zhang, Xie, Jiang, Ming. Rethinking Image Aesthetics Assessment: "
        "Models, Datasets and Benchmarks. IJCAI 2022.",
        homepage="https://github.com/woshidandan/TANet-image-aesthetics-and-quality-assessment",
        use="training",
    )
    image_folders = ("TAD66K", "imgs", "images", "img", ".")

    def __init__(
        self, root: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(root, images_dir=images_dir)
        merge = self._find(
            [f"{d}/merge" if d != "." else "merge" for d in _LABEL_DIRS],
            what="labels/merge folder",
        )
        assert merge is not None
        self.label_files: list[tuple[Path, str | None]] = [
            (merge / f"{split}.csv", split)
            for split in ("train", "test")
            if (merge / f"{split}.csv").is_file()
        ]
        if not self.label_files:
            self._find(["labels/merge/train.csv", "labels/merge/test.csv"], what="label CSV")
        self.labels_dir = merge.parent

    def label_names(self) -> Iterator[str]:
        """The ``image`` column of the merged train and test files."""
        return csv_column([p for p, _ in self.label_files], "image", title=self.info.title)

    def theme_files(self) -> list[tuple[Path, str]]:
        """``(CSV, theme)``: ``unmerge/{train,test}/<theme>.csv`` or an older layout."""
        found = sorted(self.labels_dir.glob("unmerge/*/*.csv"))
        found += sorted(
            p for p in self.labels_dir.glob("*/*.csv") if p.parent.name not in ("merge", "unmerge")
        )
        out = []
        for path in found:
            legacy = path.parent.parent == self.labels_dir and path.parent.name != "unmerge"
            out.append((path, path.parent.name if legacy else path.stem))
        return out

    def _themes(self) -> dict[str, str]:
        """Image name -> theme, from the per-theme CSVs (best effort: metadata only)."""
        themes: dict[str, str] = {}
        for path, theme in self.theme_files():
            try:
                for name in csv_column([path], "image", title=self.info.title):
                    themes.setdefault(name, theme)
            except (OSError, csv.Error) as exc:
                log.warning("TAD66K: cannot read theme labels %s: %s", path, exc)
        return themes

    def iter_items(self) -> Iterator[Record | Rejection]:
        """Stream the merged train and test label files."""
        themes = self._themes()

        def hook(row: dict[str, str]) -> dict[str, object]:
            theme = themes.get(row["image"].strip())
            return {"theme": theme} if theme else {}

        yield from iter_scored_csv(
            self,
            self.label_files,
            image_col="image",
            score_col="score",
            images=self.images,
            row_hook=hook,
        )


# -- fixture: a miniature copy in the native layout (see hae_data.sources.fixtures) ----

#: TAD66K layouts: (folder holding ``merge/`` and ``unmerge/``, image folder).
_TAD_LAYOUTS = {
    "imgs": ("labels", "imgs"),
    "drive": ("labels", "TAD66K"),
    "repo": ("dataset", "."),
    "images": ("labels", "images"),
}

#: The layouts :func:`write_fixture` can produce (``layout=``), the default first.
LAYOUTS = tuple(_TAD_LAYOUTS)


def write_fixture(
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
    check_n(n)
    labels_dir, image_dir = (
        root / d for d in _TAD_LAYOUTS[check_layout("tad66k", layout, LAYOUTS)]
    )
    merge = labels_dir / "merge"
    manifest = write_scored_csv(
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
        write_csv(
            labels_dir / "unmerge" / split / f"{theme}.csv",
            [["image", "score"], [key.rsplit("/", 1)[-1], manifest.scores[key]]],
        )
        manifest.metadata[key]["theme"] = theme
    return manifest
