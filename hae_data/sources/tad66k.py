"""TAD66K: the Theme and Aesthetics Dataset (He et al., IJCAI 2022).

Native format: a Google Drive folder with the images and ``labels/``. The merged labels are
``labels/merge/train.csv`` and ``labels/merge/test.csv`` (the official split), columns
``image,score``; the authors' own loader (``code/TAD66K/dataset.py`` in
woshidandan/TANet-image-aesthetics-and-quality-assessment) reads exactly these two columns and
divides the score by 10. The per-theme label files sit in one folder per theme under
``labels/`` (47 themes); when they have the same ``image`` column this loader records the
folder name as the image's ``theme``.

Confirmed: ``labels/merge/{train,test}.csv`` with ``image,score`` (the authors' code and several
third-party loaders). Not confirmed against a real copy: the image folder's name (third-party
code uses both ``imgs/`` and ``images/``; both are tried, ``images_dir`` overrides) and the
per-theme files' names (any ``*.csv`` in a theme folder is read; ``theme`` is metadata only).
Images were resized by the authors so the long side is 800 px.

Score: 0-10, higher is better; each image's score is the mean of at least 1,200 ratings from
the authors' annotators (no per-rater data is released). Licence: non-commercial research
use (authors' terms). Citation: He, Zhang, Xie, Jiang, Ming. Rethinking Image Aesthetics
Assessment: Models, Datasets and Benchmarks. IJCAI 2022. Homepage / how to obtain:
https://github.com/woshidandan/TANet (README links the Google Drive folder).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from hae_data.records import Record, Rejection
from hae_data.sources.base import Source, iter_scored_csv
from hae_data.sources.catalog import CATALOG

__all__ = ["Tad66kSource"]

log = logging.getLogger(__name__)


class Tad66kSource(Source):
    """TAD66K from ``labels/merge/{train,test}.csv`` and the image folder."""

    info = CATALOG["tad66k"]

    def __init__(self, root: str | os.PathLike[str], *, images_dir: str | None = None) -> None:
        super().__init__(root)
        merge = self._find(["labels/merge", "merge"], what="labels/merge folder")
        assert merge is not None
        self.label_files: list[tuple[Path, str | None]] = [
            (merge / f"{split}.csv", split)
            for split in ("train", "test")
            if (merge / f"{split}.csv").is_file()
        ]
        if not self.label_files:
            self._find(["labels/merge/train.csv", "labels/merge/test.csv"], what="label CSV")
        self.images = self._images_dir(images_dir, ["imgs", "images", "img"])
        self.labels_dir = merge.parent

    def _themes(self) -> dict[str, str]:
        """Image name -> theme folder, from the per-theme CSVs (best effort, metadata only)."""
        themes: dict[str, str] = {}
        for folder in sorted(p for p in self.labels_dir.iterdir() if p.is_dir()):
            if folder.name == "merge":
                continue
            for path in sorted(folder.glob("*.csv")):
                try:
                    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
                        for row in csv.DictReader(fh):
                            name = (row.get("image") or "").strip()
                            if name:
                                themes.setdefault(name, folder.name)
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
