"""The HumanBeauty 12-dimension standard, loaded from ``standard.yaml`` into frozen dataclasses.

Everything that needs a dimension name, a level word, a threshold, a question or an answer
template calls :func:`load_standard` (cached) instead of typing it out. The file is validated on
load: the dimensions form a tree with 9 leaves, 2 parents and 1 root, indices run 1..12, keys are
snake_case, and the level thresholds increase to 1.0.

``annotation_row_schema()`` returns the JSON Schema of one per-rater annotation row (SPEC 2.4),
built from the standard; ``annotation_row.schema.json`` next to this file is the same schema as
a file for other tools (a test keeps the two equal).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "SCHEMA_PATH",
    "STANDARD_PATH",
    "Dimension",
    "Standard",
    "StandardError",
    "annotation_row_schema",
    "load_standard",
    "validate_annotation_row",
]

STANDARD_PATH = Path(__file__).with_name("standard.yaml")
SCHEMA_PATH = Path(__file__).with_name("annotation_row.schema.json")

Kind = Literal["leaf", "parent", "root"]
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class StandardError(ValueError):
    """The standard file is malformed or breaks the hierarchy's invariants."""


@dataclass(frozen=True)
class Dimension:
    """One of the 12 dimensions: 1-based ``index`` in vector order, and its place in the tree."""

    index: int
    name: str
    key: str
    kind: Kind
    parent: int | None
    guideline: str


@dataclass(frozen=True)
class Standard:
    """The whole standard: dimensions in vector order, levels, questions and answer templates."""

    version: int
    dimensions: tuple[Dimension, ...]
    level_words: tuple[str, ...]
    level_upper_bounds: tuple[float, ...]
    overall_questions: tuple[str, ...]
    fine_grained_questions: tuple[str, ...]
    overall_prefix: str
    overall_template: str
    fine_grained_line: str
    fine_grained_separator: str

    @property
    def keys(self) -> tuple[str, ...]:
        """Snake_case keys in vector order."""
        return tuple(d.key for d in self.dimensions)

    @property
    def names(self) -> tuple[str, ...]:
        """Display names in vector order."""
        return tuple(d.name for d in self.dimensions)

    def dimension(self, index: int) -> Dimension:
        """The dimension with 1-based ``index``."""
        return self.dimensions[index - 1]

    def children(self, index: int) -> tuple[int, ...]:
        """1-based indices of the direct children of dimension ``index``, in vector order."""
        return tuple(d.index for d in self.dimensions if d.parent == index)

    @property
    def leaves(self) -> tuple[int, ...]:
        """1-based indices of the leaf dimensions, in vector order."""
        return tuple(d.index for d in self.dimensions if d.kind == "leaf")

    @property
    def root(self) -> int:
        """1-based index of the root dimension (Overall Aesthetic)."""
        return next(d.index for d in self.dimensions if d.kind == "root")

    @property
    def inner_nodes(self) -> tuple[int, ...]:
        """Non-leaf dimensions, children before parents (the order to evaluate them in)."""
        parents = [d.index for d in self.dimensions if d.kind == "parent"]
        return (*parents, self.root)

    def overall_answer(self, level: str) -> str:
        """The overall answer sentence for ``level``."""
        return self.overall_template.format(prefix=self.overall_prefix, level=level)

    def fine_grained_answer(self, levels: list[str] | tuple[str, ...]) -> str:
        """The 12-line answer, one ``<Name>: <level>`` line per dimension in vector order."""
        if len(levels) != len(self.dimensions):
            raise ValueError(f"need {len(self.dimensions)} levels, got {len(levels)}")
        return self.fine_grained_separator.join(
            self.fine_grained_line.format(name=d.name, level=lv)
            for d, lv in zip(self.dimensions, levels, strict=True)
        )


def _fail(msg: str) -> None:
    raise StandardError(f"{STANDARD_PATH.name}: {msg}")


def _validate(raw: dict[str, Any]) -> Standard:
    try:
        dims = tuple(
            Dimension(
                index=int(d["index"]),
                name=str(d["name"]),
                key=str(d["key"]),
                kind=d["kind"],
                parent=None if d["parent"] is None else int(d["parent"]),
                guideline=" ".join(str(d["guideline"]).split()),
            )
            for d in raw["dimensions"]
        )
        levels = raw["levels"]
        questions = raw["questions"]
        answers = raw["answers"]
        std = Standard(
            version=int(raw["version"]),
            dimensions=dims,
            level_words=tuple(str(w) for w in levels["words"]),
            level_upper_bounds=tuple(float(b) for b in levels["upper_bounds"]),
            overall_questions=tuple(questions["overall"]),
            fine_grained_questions=tuple(questions["fine_grained"]),
            overall_prefix=str(answers["overall_prefix"]),
            overall_template=str(answers["overall"]),
            fine_grained_line=str(answers["fine_grained_line"]),
            fine_grained_separator=str(answers["fine_grained_separator"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StandardError(f"{STANDARD_PATH.name}: missing or malformed field: {exc!r}") from exc

    if [d.index for d in dims] != list(range(1, len(dims) + 1)):
        _fail("dimension indices must run 1..N in order")
    if len(dims) != 12:
        _fail(f"expected 12 dimensions, found {len(dims)}")
    by_index = {d.index: d for d in dims}
    for d in dims:
        if not _KEY_RE.match(d.key):
            _fail(f"key {d.key!r} is not snake_case")
        if d.kind not in ("leaf", "parent", "root"):
            _fail(f"dimension {d.index} has unknown kind {d.kind!r}")
        if (d.kind == "root") != (d.parent is None):
            _fail(f"dimension {d.index}: only the root has no parent")
        if d.parent is not None:
            parent = by_index.get(d.parent)
            if parent is None or parent.kind == "leaf":
                _fail(f"dimension {d.index}: parent {d.parent} is not a parent or root")
        has_children = any(c.parent == d.index for c in dims)
        if has_children == (d.kind == "leaf"):
            _fail(f"dimension {d.index}: kind {d.kind!r} disagrees with its children")
        if not d.guideline:
            _fail(f"dimension {d.index} has no guideline")
    kinds = [d.kind for d in dims]
    if (kinds.count("leaf"), kinds.count("parent"), kinds.count("root")) != (9, 2, 1):
        _fail("the hierarchy must have 9 leaves, 2 parents and 1 root")
    # Every node reaches the root without a cycle.
    for d in dims:
        seen, node = set(), d
        while node.parent is not None:
            if node.index in seen:
                _fail(f"cycle through dimension {node.index}")
            seen.add(node.index)
            node = by_index[node.parent]
    if len({d.key for d in dims}) != 12 or len({d.name for d in dims}) != 12:
        _fail("dimension keys and names must be unique")

    words, bounds = std.level_words, std.level_upper_bounds
    if len(words) != 5 or len(set(words)) != 5 or len(bounds) != 5:
        _fail("need five distinct level words and five upper bounds")
    if any(b <= a for a, b in itertools.pairwise(bounds)) or bounds[-1] != 1.0:
        _fail("level upper bounds must increase strictly and end at 1.0")
    if len(std.overall_questions) != 5 or len(std.fine_grained_questions) != 5:
        _fail("need five overall and five 12-dimension question paraphrases")
    return std


@cache
def load_standard(path: Path | None = None) -> Standard:
    """Load and validate the standard (``standard.yaml`` next to this module by default)."""
    with open(path or STANDARD_PATH, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, dict):
        raise StandardError(f"{STANDARD_PATH.name}: top level must be a mapping")
    return _validate(raw)


def annotation_row_schema(standard: Standard | None = None) -> dict[str, Any]:
    """JSON Schema of one per-rater annotation row: ``image``, ``rater`` and 12 scores in [0,1]."""
    std = standard or load_standard()
    score = {"type": "number", "minimum": 0.0, "maximum": 1.0}
    properties: dict[str, Any] = {
        "image": {"type": "string", "minLength": 1, "description": "image file, relative path"},
        "rater": {
            "type": ["string", "integer"],
            "minLength": 1,
            "description": "rater id, unique per image",
        },
    }
    for d in std.dimensions:
        properties[d.key] = {**score, "description": f"{d.index}. {d.name}"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://humanbeauty.local/annotation_row.schema.json",
        "title": "HumanBeauty per-rater 12-dimension annotation row",
        "type": "object",
        "properties": properties,
        "required": ["image", "rater", *std.keys],
        "additionalProperties": False,
    }


@cache
def _validator() -> Any:
    import jsonschema

    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        schema = json.load(fh)
    return jsonschema.Draft202012Validator(schema)


def validate_annotation_row(row: dict[str, Any]) -> list[str]:
    """Validation errors of one annotation row against the shipped JSON Schema (empty if valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<row>'}: {e.message}"
        for e in sorted(_validator().iter_errors(row), key=lambda e: list(e.absolute_path))
    ]
