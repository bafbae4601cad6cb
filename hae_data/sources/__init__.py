"""Source loaders: one module and one class per public dataset, listed in ``SOURCES``.

Each class reads its dataset exactly as the authors distribute it and streams
:class:`~hae_data.records.Record` and :class:`~hae_data.records.Rejection` objects; its module
docstring states the native format, score scale and direction, raters, licence, citation,
homepage and how to obtain the data (also summarised in
:data:`~hae_data.sources.catalog.CATALOG`). ``python -m hae_data.sources inspect NAME ROOT`` is
what a user runs first on a downloaded dataset; ``python -m hae_data.sources list`` lists them.

Adding a source: write ``<name>.py`` with a :class:`~hae_data.sources.base.Source` subclass whose
``info`` is a new catalogue entry, whose ``image_folders`` list the image folders of the
layouts its real downloads have (read them from the dataset's own repository and from public
code that reads it, and cite both in the module docstring) and whose ``label_names`` lists the
label file's image names, so :func:`~hae_data.sources.base.discover_image_folder` can find the
images anywhere else under the root; pass ``images_dir`` on to the base constructor. Check every
label row's file with ``Source._locate`` (it rejects paths that leave the root). Then add a
fixture writer in :mod:`hae_data.sources.fixtures` with a ``layout`` per real layout (listed in
``LAYOUTS``) and ``hostile`` rows, and an entry in ``SOURCES`` below (explicit: no discovery by
import).
"""

from __future__ import annotations

from hae_data.sources.agiqa_3k import Agiqa3kSource
from hae_data.sources.annotations import AnnotationSource
from hae_data.sources.apddv2 import Apddv2Source
from hae_data.sources.ava import AvaSource
from hae_data.sources.baid import BaidSource
from hae_data.sources.base import Source, SourceFormatError, SourceRootError
from hae_data.sources.catalog import CATALOG, SourceInfo
from hae_data.sources.label_jsonl import ReleaseSource
from hae_data.sources.lapis import LapisSource
from hae_data.sources.mebeauty import MebeautySource
from hae_data.sources.scut_fbp5500 import ScutFbp5500Source
from hae_data.sources.tad66k import Tad66kSource

__all__ = [
    "CATALOG",
    "SOURCES",
    "TRAINING_SOURCES",
    "ZERO_SHOT_SOURCES",
    "Source",
    "SourceFormatError",
    "SourceInfo",
    "SourceRootError",
    "get_source",
]

#: Every loader by catalogue key.
SOURCES: dict[str, type[Source]] = {
    "ava": AvaSource,
    "tad66k": Tad66kSource,
    "scut_fbp5500": ScutFbp5500Source,
    "mebeauty": MebeautySource,
    "baid": BaidSource,
    "agiqa_3k": Agiqa3kSource,
    "humanbeauty_50k": AnnotationSource,
    "humanbeauty_release": ReleaseSource,
    "apddv2": Apddv2Source,
    "lapis": LapisSource,
}
#: The six public sources of HumanBeauty-58K (SPEC 2.1).
TRAINING_SOURCES = ("ava", "tad66k", "scut_fbp5500", "mebeauty", "baid", "agiqa_3k")
#: Evaluation-only sets (SPEC 3.4).
ZERO_SHOT_SOURCES = ("apddv2", "lapis")


def get_source(name: str) -> type[Source]:
    """The loader class for ``name``; a ``KeyError`` listing the known names otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None
