"""BAID: the Boldbrush Artistic Image Dataset (Yi et al., CVPR 2023).

Native format (confirmed in github.com/Dreemurr-T/BAID): ``dataset/train_set.csv``,
``dataset/val_set.csv`` and ``dataset/test_set.csv`` with columns ``image,score`` (for example
``241705.jpg,9.999043``); the images are downloaded by ``downloading_script/download.py`` into
``images/`` (or fetched from the authors' Baidu Netdisk copy): the README says "The images will
be saved to ``images/`` folder" and "Ground-truth labels of the dataset can be found in the
``dataset`` folder". The three files are the official split (``official_split`` =
``train``/``val``/``test``). Accepted layouts: that one, and images at the root; elsewhere they
are searched for under the root, and ``images_dir`` overrides. Run on the repository's three
files (with an empty placeholder file per image) the loader keeps all 60,337 rows (50,737 /
3,200 / 6,400).

Score: 0-10, higher is better, derived by the authors from the votes each artwork received on
Boldbrush; no per-rater data is released (the authors' own loader divides by 10). Licence:
CC BY-NC-ND 4.0 (the repository's README); the artworks remain the copyright of their artists.
Citation: Yi, Tian, Gu, Lai, Rosin. Towards Artistic Image Aesthetics Assessment: a Large-scale
Dataset and a New Method. CVPR 2023. Homepage / how to obtain:
https://github.com/Dreemurr-T/BAID (clone, then run its download script).
"""

from __future__ import annotations

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
    write_scored_csv,
)

__all__ = ["LAYOUTS", "BaidSource", "write_fixture"]

_SPLITS = (("train_set.csv", "train"), ("val_set.csv", "val"), ("test_set.csv", "test"))


class BaidSource(Source):
    """BAID from ``dataset/{train,val,test}_set.csv`` and ``images/``."""

    info = SourceInfo(
        name="baid",
        title="BAID",
        part="overall",
        scale=(0.0, 10.0),
        raters="vote-derived mean; no per-rater data",
        licence="CC BY-NC-ND 4.0 (authors' README); artworks remain the copyright of their "
        "artists.",
        citation="Yi, Tian, Gu, Lai, Rosin. Towards Artistic Image Aesthetics Assessment: a "
        "Large-scale Dataset and a New Method. CVPR 2023.",
        homepage="https://github.com/Dreemurr-T/BAID",
        use="training",
    )
    image_folders = ("images", ".")

    def __init__(
        self, root: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(root, images_dir=images_dir)
        folder = self._find(["dataset"], what="dataset/ folder with the label CSVs")
        assert folder is not None
        self.label_files: list[tuple[Path, str | None]] = [
            (folder / name, split) for name, split in _SPLITS if (folder / name).is_file()
        ]
        if not self.label_files:
            self._find([f"dataset/{name}" for name, _ in _SPLITS], what="label CSV")

    def label_names(self) -> Iterator[str]:
        """The ``image`` column of the three split files."""
        return csv_column([p for p, _ in self.label_files], "image", title=self.info.title)

    def iter_items(self) -> Iterator[Record | Rejection]:
        """Stream the three split files in train, val, test order."""
        yield from iter_scored_csv(
            self, self.label_files, image_col="image", score_col="score", images=self.images
        )


# -- fixture: a miniature copy in the native layout (see hae_data.sources.fixtures) ----

#: The layouts :func:`write_fixture` can produce (``layout=``), the default first.
LAYOUTS = ("images", "flat")


def write_fixture(
    root: Path,
    *,
    n: int = 6,
    images: ImageProvider = None,
    broken: bool = True,
    layout: str = "images",
    hostile: bool = False,
) -> FixtureManifest:
    """``dataset/{train,val,test}_set.csv`` (``image,score``) and ``images/`` (or the root)."""
    check_n(n)
    data = root / "dataset"
    return write_scored_csv(
        "baid",
        root,
        [
            (data / "train_set.csv", "train"),
            (data / "val_set.csv", "val"),
            (data / "test_set.csv", "test"),
        ],
        root / ("images" if check_layout("baid", layout, LAYOUTS) == "images" else "."),
        n=n,
        images=images,
        broken=broken,
        hostile=hostile,
        scale=(0.0, 10.0),
        stem=lambda i: str(241_700 + i),
    )
