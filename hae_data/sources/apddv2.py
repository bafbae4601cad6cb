"""APDDv2: Aesthetics of Paintings and Drawings Dataset (Jin et al., NeurIPS 2024 D&B).

Zero-shot evaluation set (SPEC 3.4): it goes through the same loader interface and face filter
as the training sources, but it is evaluation-only: a build refuses it beside a training source,
and on its own every row goes to ``test``, never split (:mod:`hae_data.protocol`). The paper
evaluates on all of it: 907 of 10,022 images after its face filter.

Native format: ``APDDv2-10023.csv`` (confirmed: the header in the authors' repository is
``filename,Artistic Categories,Total aesthetic score,Theme and logic,Creativity,Layout and
composition,Space and perspective,The sense of order,Light and shadow,Color,Details and
texture,The overall,Mood,Language Comment``; attribute cells are empty where an attribute does
not apply to the category; ``Artistic Categories`` reads ``medium*style*subject``). Some users
read the file as ISO-8859-1, so it is decoded as UTF-8 when valid and as Latin-1 otherwise.
``filesource.csv`` (source URLs) is not needed.

**Not confirmed** (``layout_confirmed=False``): the image folder inside the downloaded archive.
A public mirror names it ``APDDv2images/``; ``APDDv2images``, ``images`` and ``APDDv2-images``
are tried (the one holding the most of the CSV's file names wins, the earlier on a tie),
failing those the folder holding the most is searched for under the root, and ``images_dir``
overrides. File names are the CSV's ``filename`` (32 hex characters plus ``.jpg``/``.png``).

Score: ``Total aesthetic score``, 0-100, higher is better; each is the mean of the scores of
several artists (85,191 score labels over 10,023 images in all, attributes included); the ten
attribute scores (0-10) are kept as metadata. No per-rater data is released. Licence:
CC BY-NC-ND 4.0 (the repository's README); the artworks remain the copyright of their artists.
Citation: Jin, Qiao, Lu, Wang, Huang, Gao, Liu, Li. APDDv2: Aesthetics of Paintings and
Drawings Dataset with Artist Labeled Scores and Comments. NeurIPS 2024 Datasets and Benchmarks.
Homepage / how to obtain: https://github.com/BestiVictory/APDDv2 (Google Drive / Baidu links).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hae_data.records import Record, Rejection
from hae_data.sources.base import (
    RowError,
    Source,
    SourceInfo,
    csv_column,
    iter_scored_csv,
    parse_score,
)
from hae_data.sources.fixtures import (
    FixtureImages,
    FixtureManifest,
    ImageProvider,
    check_n,
    seeded_rng,
    write_csv,
)

__all__ = ["ATTRIBUTES", "Apddv2Source", "write_fixture"]

#: The ten aesthetic attribute columns of ``APDDv2-10023.csv`` (each 0-10, empty if n/a).
ATTRIBUTES = (
    "Theme and logic",
    "Creativity",
    "Layout and composition",
    "Space and perspective",
    "The sense of order",
    "Light and shadow",
    "Color",
    "Details and texture",
    "The overall",
    "Mood",
)
_ATTRIBUTE_SCALE = (0.0, 10.0)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class Apddv2Source(Source):
    """APDDv2 from ``APDDv2-10023.csv`` and the image folder (layout partly unconfirmed)."""

    info = SourceInfo(
        name="apddv2",
        title="APDDv2 (zero-shot evaluation)",
        part="overall",
        scale=(0.0, 100.0),
        raters="total aesthetic score 0-100, mean of several artists' scores (85,191 score "
        "labels over 10,023 images); no per-rater data released",
        licence="CC BY-NC-ND 4.0 (authors' README); artworks remain the copyright of their "
        "artists.",
        citation="Jin, Qiao, Lu, Wang, Huang, Gao, Liu, Li. APDDv2: Aesthetics of Paintings "
        "and Drawings Dataset with Artist Labeled Scores and Comments. NeurIPS 2024 Datasets "
        "and Benchmarks.",
        homepage="https://github.com/BestiVictory/APDDv2",
        use="zero_shot",
        layout_confirmed=False,
    )

    image_folders = ("APDDv2images", "images", "APDDv2-images")

    def __init__(
        self, root: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(root, images_dir=images_dir)
        found = self._find(["APDDv2-10023.csv"], what="APDDv2-10023.csv", required=False)
        if found is None:
            others = sorted(self.root.glob("APDDv2*.csv"))
            found = others[0] if others else None
        if found is None:
            self._find(["APDDv2-10023.csv"], what="the APDDv2 label CSV")
        assert found is not None
        self.labels = found

    def label_names(self) -> Iterator[str]:
        """The ``filename`` column of the label CSV."""
        return csv_column([self.labels], "filename", title=self.info.title, text=_decode)

    def iter_items(self) -> Iterator[Record | Rejection]:
        """Stream the label CSV."""

        def hook(row: dict[str, str]) -> dict[str, object]:
            attributes: dict[str, float] = {}
            for col in ATTRIBUTES:
                text = (row.get(col) or "").strip()
                if not text:
                    continue
                value, reason = parse_score(text, _ATTRIBUTE_SCALE)
                if reason is not None:
                    raise RowError(reason, f"{col}={text!r}")
                assert value is not None
                attributes[col] = value
            categories = (row.get("Artistic Categories") or "").split("*")
            meta: dict[str, object] = {"attributes": attributes}
            for key, value in zip(("medium", "style", "subject"), categories, strict=False):
                if value.strip():
                    meta[key] = value.strip()
            comment = (row.get("Language Comment") or "").strip()
            if comment:
                meta["comment"] = comment
            return meta

        yield from iter_scored_csv(
            self,
            [(self.labels, None)],
            image_col="filename",
            score_col="Total aesthetic score",
            images=self.images,
            row_hook=hook,
            text=_decode,
        )


# -- fixture: a miniature copy in the native layout (see hae_data.sources.fixtures) ----

_APDD_HEADER = [
    "filename",
    "Artistic Categories",
    "Total aesthetic score",
    *ATTRIBUTES,
    "Language Comment",
]


def write_fixture(
    root: Path, *, n: int = 6, images: ImageProvider = None, broken: bool = True
) -> FixtureManifest:
    """``APDDv2-10023.csv`` (Latin-1, like some copies) and ``APDDv2images/``."""
    check_n(n)
    rng = seeded_rng("apddv2")
    files = FixtureImages(images, n)
    rows: list[list[Any]] = [_APDD_HEADER]
    scores, meta = {}, {}
    for i in range(n):
        name = f"{rng.integers(0, 2**63):016x}{i:016x}.jpg"
        total = round(float(rng.uniform(15, 92)), 2)
        attrs = [round(total / 10 + float(rng.normal(0, 0.3)), 2) for _ in range(10)]
        attrs[1] = ""  # Creativity does not apply to this category
        comment = "Portrait très réussi" if i == 0 else ""
        rows.append([name, "oil painting*classicism*portraiture", total, *attrs, comment])
        files.good(root / "APDDv2images" / name, i)
        scores[f"APDDv2images/{name}"] = total
        meta[f"APDDv2images/{name}"] = {
            "medium": "oil painting",
            "style": "classicism",
            "subject": "portraiture",
        }
    rejected: Counter[str] = Counter()
    if broken:
        filler = [5.0] * 10
        rows.append(
            ["bad900.jpg", "sketching*romanticism*landscapes", 50.0, *filler]
        )  # no comment field
        rejected["malformed_row"] += 1
        rows.append(["bad901.jpg", "sketching*romanticism*landscapes", "n/a", *filler, ""])
        rejected["non_numeric_score"] += 1
        rows.append(["bad902.jpg", "sketching*romanticism*landscapes", 104.5, *filler, ""])
        rejected["score_out_of_range"] += 1
        rows.append(["bad903.jpg", "sketching*romanticism*landscapes", 40.0, *filler, ""])
        rejected["missing_file"] += 1
        rows.append([rows[1][0], "oil painting*classicism*portraiture", 10.0, *filler, ""])
        rejected["duplicate_id"] += 1
    write_csv(root / "APDDv2-10023.csv", rows, encoding="latin-1")
    return FixtureManifest("apddv2", root, n, dict(rejected), scores, metadata=meta)
