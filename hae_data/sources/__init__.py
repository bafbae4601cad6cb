"""Source loaders: one module per public dataset, listed once in ``ENTRIES``.

Each source's module holds everything about it: the loader class, which reads the dataset
exactly as the authors distribute it and streams :class:`~hae_data.records.Record` and
:class:`~hae_data.records.Rejection` objects; the class's ``info``, its catalogue entry (scale,
raters, licence, citation, homepage); the module docstring, which states the native format and
how to obtain the data; and ``write_fixture``, which writes a miniature copy in that native
format with known answers (``LAYOUTS`` lists the real layouts it can produce). Every registry
here (:data:`SOURCES`, :data:`CATALOG`, :data:`TRAINING_SOURCES`, :data:`ZERO_SHOT_SOURCES`,
:data:`WRITERS`, :data:`LAYOUTS`) is derived from :data:`ENTRIES`. ``python -m hae_data.sources
inspect NAME ROOT`` is what a user runs first on a downloaded dataset; ``python -m
hae_data.sources list`` lists them.

Adding a source: write ``<name>.py`` with a :class:`~hae_data.sources.base.Source` subclass
(:class:`~hae_data.sources.base.RaterSource` when the dataset publishes one rating per rater)
whose ``info`` is its :class:`~hae_data.sources.base.SourceInfo`, whose ``image_folders`` list
the image folders of the layouts its real downloads have (read them from the dataset's own
repository and from public code that reads it, and cite both in the module docstring) and whose
``label_names`` lists the label file's image names, so
:func:`~hae_data.sources.base.discover_image_folder` can find the images anywhere else under the
root; pass ``images_dir`` on to the base constructor. Check every label row's file with
``Source._locate`` (it rejects paths that leave the root). In the same module write
``write_fixture`` (helpers in :mod:`hae_data.sources.fixtures`) with a ``layout`` per real layout
(listed in ``LAYOUTS``) and ``hostile`` rows. Then add one :class:`Entry` to :data:`ENTRIES`
below (explicit: no discovery by import).
"""

# No ``from __future__ import annotations`` here: it would shadow the ``annotations`` module.
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from hae_data.sources import (
    agiqa_3k,
    annotations,
    apddv2,
    ava,
    baid,
    label_jsonl,
    lapis,
    mebeauty,
    scut_fbp5500,
    tad66k,
)
from hae_data.sources.base import (
    RaterSource,
    Source,
    SourceFormatError,
    SourceInfo,
    SourceRootError,
)
from hae_data.sources.fixtures import FixtureManifest, ImageProvider

__all__ = [
    "CATALOG",
    "ENTRIES",
    "LAYOUTS",
    "SOURCES",
    "TRAINING_SOURCES",
    "WRITERS",
    "ZERO_SHOT_SOURCES",
    "Entry",
    "RaterSource",
    "Source",
    "SourceFormatError",
    "SourceInfo",
    "SourceRootError",
    "write_fixture",
]


class Entry(NamedTuple):
    """One source: its loader class and, from the same module, its fixture writer and layouts."""

    loader: type[Source]
    write_fixture: Callable[..., FixtureManifest]
    #: The real layouts ``write_fixture`` can produce (``layout=``), the default first; empty
    #: where the source has one.
    layouts: tuple[str, ...] = ()


#: Every source, in the order ``list`` shows them. The registries below are derived from it.
ENTRIES: tuple[Entry, ...] = (
    Entry(ava.AvaSource, ava.write_fixture, ava.LAYOUTS),
    Entry(tad66k.Tad66kSource, tad66k.write_fixture, tad66k.LAYOUTS),
    Entry(scut_fbp5500.ScutFbp5500Source, scut_fbp5500.write_fixture, scut_fbp5500.LAYOUTS),
    Entry(mebeauty.MebeautySource, mebeauty.write_fixture, mebeauty.LAYOUTS),
    Entry(baid.BaidSource, baid.write_fixture, baid.LAYOUTS),
    Entry(agiqa_3k.Agiqa3kSource, agiqa_3k.write_fixture, agiqa_3k.LAYOUTS),
    Entry(annotations.AnnotationSource, annotations.write_fixture),
    Entry(label_jsonl.ReleaseSource, label_jsonl.write_fixture),
    Entry(apddv2.Apddv2Source, apddv2.write_fixture),
    Entry(lapis.LapisSource, lapis.write_fixture),
)

#: Every loader by catalogue key.
SOURCES: dict[str, type[Source]] = {e.loader.info.name: e.loader for e in ENTRIES}
#: Every source's catalogue entry (its loader's ``info``) by key.
CATALOG: dict[str, SourceInfo] = {name: cls.info for name, cls in SOURCES.items()}
#: The six public sources of HumanBeauty-58K (SPEC 2.1).
TRAINING_SOURCES: tuple[str, ...] = tuple(n for n, i in CATALOG.items() if i.use == "training")
#: Evaluation-only sets (SPEC 3.4).
ZERO_SHOT_SOURCES: tuple[str, ...] = tuple(n for n, i in CATALOG.items() if i.use == "zero_shot")
#: One fixture writer per source, by catalogue key.
WRITERS: dict[str, Callable[..., FixtureManifest]] = {
    e.loader.info.name: e.write_fixture for e in ENTRIES
}
#: The layouts each writer can produce (``layout=``), the default (most common) first, for the
#: sources found in more than one.
LAYOUTS: dict[str, tuple[str, ...]] = {e.loader.info.name: e.layouts for e in ENTRIES if e.layouts}


def write_fixture(
    name: str,
    root: str | Path,
    *,
    n: int | None = None,
    images: ImageProvider = None,
    broken: bool = True,
    **options: Any,
) -> FixtureManifest:
    """Write a miniature copy of source ``name`` under ``root`` and return what to expect.

    ``n`` is the number of good items (each writer has a small default), ``images`` supplies
    their encoded images, ``broken`` adds the deliberately bad rows; ``options`` go to the
    source's writer (for example ``fmt="parquet"`` for ``humanbeauty_50k``). See
    :mod:`hae_data.sources.fixtures`.
    """
    try:
        writer = WRITERS[name]
    except KeyError:
        raise KeyError(f"no fixture writer for {name!r}; known: {', '.join(WRITERS)}") from None
    kwargs: dict[str, Any] = {"images": images, "broken": broken, **options}
    if n is not None:
        kwargs["n"] = n
    manifest = writer(Path(root), **kwargs)
    assert not math.isnan(sum(manifest.scores.values()))
    return manifest
