"""The Label Studio labeling config, generated from the 12-dimension standard.

Nothing here names a dimension: titles, order, hierarchy, guidelines and control names all
come from :func:`annotation_schema.load_standard`, so editing ``standard.yaml`` changes the
annotation interface with it.

**Decision** (SPEC 2.4 says only "each in [0, 1]"): every dimension is rated on an 11-point
scale, the integers 0 to 10, and a rating ``k`` becomes ``k / 10`` in the annotation rows: the
scale's ends are exactly 0 and 1, its steps are exact decimals (0.7, not 0.7000000001), and
nine raters give a MOS on a 1/90 grid, finer than the 0.02 bins the paper plots. Each point
carries the standard's level word as its hover hint (0-2 bad, 3-4 poor, 5-6 fair, 7-8 good,
9-10 excellent under the right-closed bins of SPEC 2.5), so the annotator sees the same
words the model is trained on. A single-choice radio row (``Choices``) rather than ``Rating``
(stars start at 1, there is no 0) or ``Number`` (a typed field invites 7.5).

Layout (Label Studio tags, https://labelstud.io/tags/ : ``View``, ``Header``, ``Image``,
``Text``, ``Choices``/``Choice``): the image, then one section per child of the root (a parent
with its leaves indented under it, or a lone leaf), the root last. Inside a section the leaves
come before their parent, so an annotator scores the parts before the whole; sections are in
the order of their first dimension, which is the vector order with Environment placed after the
appearance group (the paper's Figure 5 order). Every ``Choices`` is ``required``, so Label
Studio refuses to submit an annotation with a dimension left out. Each control's ``name`` is
the dimension's snake_case key, so an export names its fields by the same keys as the
annotation rows; the image object is ``image`` and reads the task field ``$image``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from annotation_schema import Dimension, Standard, load_standard
from hae_data.levels import score_to_level

__all__ = [
    "IMAGE_FIELD",
    "IMAGE_OBJECT",
    "SCALE_MAX",
    "dimension_order",
    "labeling_config",
    "rating_to_score",
    "scale_points",
]

#: Ratings are the integers 0..SCALE_MAX; rating k is the score k / SCALE_MAX in [0, 1].
SCALE_MAX = 10
#: Name of the image object tag and of the task data field it shows.
IMAGE_OBJECT = "image"
IMAGE_FIELD = "image"


def scale_points() -> list[tuple[str, str]]:
    """``(value, level word)`` for every point of the scale, lowest first."""
    return [(str(k), score_to_level(k / SCALE_MAX)) for k in range(SCALE_MAX + 1)]


def rating_to_score(value: object) -> float:
    """The [0, 1] score of one exported rating (``"7"``, ``7`` or ``["7"]``); ``ValueError``
    saying why for anything that is not one point of the scale."""
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"expected one choice, got {len(value)}: {value!r}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"not a rating: {value!r}")
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_integer() or not 0 <= number <= SCALE_MAX:
        raise ValueError(f"{value!r} is not one of the integers 0..{SCALE_MAX}")
    return int(number) / SCALE_MAX


def dimension_order(standard: Standard | None = None) -> list[list[Dimension]]:
    """Sections of the interface: for each child of the root, its leaves then itself; the root
    alone last. Sections are sorted by their first dimension's index."""
    std = standard or load_standard()
    sections = []
    for head in std.children(std.root):
        members = [std.dimension(i) for i in std.children(head)] + [std.dimension(head)]
        sections.append(members)
    sections.sort(key=lambda sec: min(d.index for d in sec))
    sections.append([std.dimension(std.root)])
    return sections


def _dimension_block(parent: ET.Element, dim: Dimension, *, indent: bool) -> None:
    block = ET.SubElement(
        parent, "View", style="margin-left: 2em" if indent else "margin-top: 0.5em"
    )
    ET.SubElement(block, "Header", value=f"{dim.index}. {dim.name}", size="5")
    ET.SubElement(block, "Text", name=f"{dim.key}_guideline", value=dim.guideline)
    choices = ET.SubElement(
        block,
        "Choices",
        name=dim.key,
        toName=IMAGE_OBJECT,
        choice="single-radio",
        showInline="true",
        required="true",
        requiredMessage=f"Rate {dim.index}. {dim.name} (0-{SCALE_MAX}).",
    )
    for value, word in scale_points():
        ET.SubElement(choices, "Choice", value=value, hint=word)


def labeling_config(standard: Standard | None = None, *, title: str | None = None) -> str:
    """The labeling config XML (a ``<View>``) for the standard, as text."""
    std = standard or load_standard()
    root = ET.Element("View")
    words = ", ".join(f"{lo}-{hi} {w}" if lo != hi else f"{lo} {w}" for w, lo, hi in _word_ranges())
    ET.SubElement(
        root,
        "Header",
        value=title
        or f"HumanBeauty 12-dimension standard (version {std.version}): rate every dimension",
    )
    ET.SubElement(
        root,
        "Text",
        name="scale_guideline",
        value=f"Rate each dimension from 0 (worst) to {SCALE_MAX} (best): {words}. "
        "Rate the parts of a group before the group itself. Skip an image only when it "
        "cannot be judged (no person, broken file).",
    )
    ET.SubElement(root, "Image", name=IMAGE_OBJECT, value=f"${IMAGE_FIELD}", zoom="true")
    for section in dimension_order(std):
        *leaves, head = section
        box = ET.SubElement(root, "View", style="border-top: 1px solid #ccc; padding: 0.5em 0")
        if leaves:
            ET.SubElement(box, "Header", value=f"{head.name} and its parts", size="4")
        for leaf in leaves:
            _dimension_block(box, leaf, indent=True)
        _dimension_block(box, head, indent=False)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _word_ranges() -> Sequence[tuple[str, int, int]]:
    """``(word, lowest point, highest point)`` for each level word the scale reaches."""
    out: list[tuple[str, int, int]] = []
    for value, word in scale_points():
        k = int(value)
        if out and out[-1][0] == word:
            out[-1] = (word, out[-1][1], k)
        else:
            out.append((word, k, k))
    return out
