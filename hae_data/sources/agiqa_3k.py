"""AGIQA-3K: an open database for AI-generated image quality assessment (Li et al., 2023).

Native format (confirmed in github.com/lcysyzxdxc/AGIQA-3k-Database, ``README.md`` and
``data.csv``): ``data.csv`` with the columns
``name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align``, one row per image
(2,982 rows, file names such as ``AttnGAN_normal_000.jpg`` or ``sd1.5_highcorr_207.jpg``:
generator, prompt group, index). The images come as a separate archive, ``AGIQA-3K.zip``
(Google Drive / Quark links in the README); the folder it unpacks to is not named there.
Public loaders found by a code search (the search did not name their repositories) read
``images/`` or ``Images/`` beside ``data.csv`` (``AGIQA-3k/AGIQA-3k/Images/`` next to
``AGIQA-3k/AGIQA-3k/data.csv``; ``agiqa-3k/images`` next to ``agiqa-3k/data.csv``). Those,
``AGIQA-3K/`` (the archive's name, so its likely top folder), ``AGIQA-3k/``, ``AGIQA3K/``,
``image/`` and the root itself are tried in that order; failing them the folder holding the
most of ``data.csv``'s names is searched for under the root; ``images_dir`` overrides. Run
on the repository's ``data.csv`` (with an empty placeholder file per image), the loader keeps
all 2,982 rows.

Score: the subjective MOS and its standard deviation, for perceptual quality and for
text-image alignment; higher is better. The README calls them "Normalized MOS and STD"; the
released ``mos_quality`` values lie in 0-4.49 (the whole file read), so the declared scale is
0-5. **Decision** (SPEC 2.1): ``raw_score`` is ``mos_quality`` and ``score_std``
is ``std_quality``; ``mos_align``/``std_align``, the prompt, its adjectives, the style and the
generator (the file-name prefix) are kept as metadata. No per-rater scores are released.

Licence: MIT (the README's "License" section: "The database is distributed under the MIT
license", and the repository's ``LICENSE``); the images were produced by public text-to-image
models. Citation: Li, Zhang, Wu, Sun, Min, Liu, Zhai, Lin.
AGIQA-3K: An Open Database for AI-Generated Image Quality Assessment. IEEE TCSVT 2023.
Homepage / how to obtain: https://github.com/lcysyzxdxc/AGIQA-3k-Database.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

from hae_data.records import Record, Rejection
from hae_data.sources.base import RowError, Source, csv_column, iter_scored_csv, parse_score
from hae_data.sources.catalog import CATALOG

__all__ = ["Agiqa3kSource"]

_OPTIONAL_SCORES = ("std_quality", "mos_align", "std_align")


class Agiqa3kSource(Source):
    """AGIQA-3K from ``data.csv`` and the image folder."""

    info = CATALOG["agiqa_3k"]
    image_folders = ("images", "Images", "AGIQA-3K", "AGIQA-3k", "AGIQA3K", "image", ".")

    def __init__(
        self, root: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(root, images_dir=images_dir)
        self.labels = self._find(["data.csv"], what="data.csv")
        assert self.labels is not None

    def label_names(self) -> Iterator[str]:
        """The ``name`` column of ``data.csv``."""
        return csv_column([self.labels], "name", title=self.info.title)

    def iter_items(self) -> Iterator[Record | Rejection]:
        """Stream ``data.csv``."""
        lo, hi = self.info.scale

        def hook(row: dict[str, str]) -> dict[str, object]:
            meta: dict[str, object] = {
                "prompt": row.get("prompt", ""),
                "adj1": row.get("adj1") or None,
                "adj2": row.get("adj2") or None,
                "style": row.get("style") or None,
                "generator": row["name"].split("_", 1)[0],
            }
            for col in _OPTIONAL_SCORES:
                text = (row.get(col) or "").strip()
                if not text:
                    meta[col] = None
                    continue
                scale = (lo, hi) if col == "mos_align" else (0.0, math.inf)
                value, reason = parse_score(text, scale)
                if reason is not None:
                    raise RowError(reason, f"{col}={text!r}")
                meta[col] = value
            return meta

        for item in iter_scored_csv(
            self,
            [(self.labels, None)],
            image_col="name",
            score_col="mos_quality",
            images=self.images,
            row_hook=hook,
        ):
            if isinstance(item, Record):
                item.score_std = item.metadata.pop("std_quality", None)  # type: ignore[assignment]
            yield item
