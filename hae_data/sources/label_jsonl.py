"""The HumanAesExpert public release's ``label.jsonl`` layout (HumanBeauty-58K and -50K).

Native format (confirmed from the release's own scripts, ``dataset_config.py``,
``generate_split.py`` and ``prepare_data_for_swift.py`` in github.com/KwaiVGI/HumanAesExpert)::

    HumanBeauty/
        HumanBeauty-58K/images/...   HumanBeauty-58K/label.jsonl
        HumanBeauty-50K/images/...   HumanBeauty-50K/label.jsonl

One JSON object per line: ``image_name`` (relative to that part's ``images/``), ``source``,
``score`` and ``text_level``. In the 58K part ``score`` is one float (the overall score, already
min-max normalised per source by the authors); in the 50K part it is a list of 12 floats in the
order Facial Brightness, Facial Feature Clarity, Facial Skin Tone, Facial Structure, Facial
Contour Clarity, Facial Aesthetic, Outfit, Body Shape, Looks, Environment, General Appearance
Aesthetic, Overall Aesthetic, which is the standard's vector order. The root may be the
``HumanBeauty`` folder (both parts are read) or one part's folder. The values of ``source``
are not documented; they are matched to this project's catalogue keys ignoring case and
punctuation (``AVA``, ``TAD66K``, ``SCUT-FBP5500``, ``MEBeauty``, ``BAID``, ``AGIQA-3K``), 50K
rows go to ``humanbeauty_50k``, and ``source_map`` adds mappings; an unmatched value is a
rejection (``unknown_source``).

Records keep the catalogue key of their original source as ``source`` (so the stratified split
still sees six sources), ``raw_score`` and ``score`` = the released score (0-1, higher is
better), ``metadata``: ``release_source``, ``text_level``, ``release_part``. A 12-float row is
``part="fine_grained"`` with ``raw_score`` and ``score`` = Overall Aesthetic. Setting ``score``
here is what keeps the released numbers (SPEC 2.4): a record whose score is already set is
never re-normalised, so when some of a source's images drop (a missing file, a face-filter
decision that differs from the authors') the others keep their released value instead of being
stretched over [0, 1] again (a released 0.30 would become 0.00, "bad" instead of "poor").
Malformed JSON and wrong types are ``malformed_row``, a missing key is ``missing_column``, a
score outside [0, 1] ``score_out_of_range``.

Licence: as distributed by the HumanAesExpert authors (research use); images keep their
original sources' terms. Citation: Liao et al., arXiv 2503.23907, 2025. Homepage / how to
obtain: https://huggingface.co/datasets/HumanBeauty/HumanBeauty_Dataset.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from annotation_schema import load_standard
from hae_data.records import Record, Rejection
from hae_data.sources.base import (
    DirectoryIndex,
    Source,
    SourceInfo,
    parse_score,
    read_text_lines,
    relpath,
)
from hae_data.sources.fixtures import (
    FixtureImages,
    FixtureManifest,
    ImageProvider,
    check_n,
    seeded_rng,
)

__all__ = [
    "PARTS_58K_50K",
    "RELEASE_SOURCES",
    "ReleaseSource",
    "release_source_key",
    "write_fixture",
]

#: The release's two part folders.
PARTS_58K_50K = ("HumanBeauty-58K", "HumanBeauty-50K")
#: What the release is made of, by catalogue key: the six public sources of the 58K part and the
#: authors' own 50K part, each with the name the release spells it by (the undocumented
#: ``source`` values are matched ignoring case and punctuation; the fixture writes these).
_RELEASE_NAMES = {
    "ava": "AVA",
    "tad66k": "TAD66K",
    "scut_fbp5500": "SCUT-FBP5500",
    "mebeauty": "MEBeauty",
    "baid": "BAID",
    "agiqa_3k": "AGIQA-3K",
    "humanbeauty_50k": "HumanBeauty-50K",
}
#: The catalogue keys of what the release is made of. Every ``source`` value of a row names one.
RELEASE_SOURCES = tuple(_RELEASE_NAMES)
_REQUIRED = ("image_name", "source", "score")
_KNOWN = {re.sub(r"[^a-z0-9]", "", key): key for key in RELEASE_SOURCES}
_KNOWN.update({"scutfbp": "scut_fbp5500"})


def release_source_key(value: str, extra: Mapping[str, str] | None = None) -> str | None:
    """The catalogue key for a ``source`` value of the release, or None when unknown."""
    if extra and value in extra:
        return extra[value]
    return _KNOWN.get(re.sub(r"[^a-z0-9]", "", value.lower()))


class ReleaseSource(Source):
    """The public release's ``label.jsonl`` files and their ``images/`` folders."""

    info = SourceInfo(
        name="humanbeauty_release",
        title="HumanBeauty public release (label.jsonl)",
        part="overall+fine_grained",
        scale=(0.0, 1.0),
        # The authors' count, a fact of the released data: not this build's MIN_RATERS.
        raters="scores already normalised by the authors; 12-dimension rows are means of "
        "at least 9 raters",
        licence="As distributed by the HumanAesExpert authors; research use. Images keep the "
        "terms of their original sources.",
        citation="Liao et al. HumanAesExpert: Advancing a Multi-Modality Foundation Model for "
        "Human Image Aesthetic Assessment. arXiv 2503.23907, 2025.",
        homepage="https://huggingface.co/datasets/HumanBeauty/HumanBeauty_Dataset",
        use="release",
    )

    def __init__(
        self, root: str | os.PathLike[str], *, source_map: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(root)
        if (self.root / "label.jsonl").is_file():
            self.parts = [self.root]
        else:
            self.parts = [
                self.root / p for p in PARTS_58K_50K if (self.root / p / "label.jsonl").is_file()
            ]
        if not self.parts:
            self._find(
                ["label.jsonl", *(f"{p}/label.jsonl" for p in PARTS_58K_50K)], what="label.jsonl"
            )
        bad = {k: v for k, v in (source_map or {}).items() if v not in RELEASE_SOURCES}
        if bad:
            raise ValueError(
                f"source_map values must be one of the release's sources "
                f"({', '.join(RELEASE_SOURCES)}): {bad}"
            )
        self.source_map = dict(source_map or {})
        std = load_standard()
        self.n_dims = len(std.keys)
        self.overall_index = std.root - 1

    def iter_items(self) -> Iterator[Record | Rejection]:
        """Stream every part's ``label.jsonl``."""
        seen: dict[str, str] = {}
        for part_dir in self.parts:
            images = part_dir / "images"
            index = DirectoryIndex(images)
            labels = part_dir / "label.jsonl"
            label_name = relpath(labels, self.root)
            for number, line in read_text_lines(labels):
                yield from self._item(part_dir, images, index, seen, f"{label_name}:{number}", line)

    def _item(
        self,
        part_dir: Path,
        images: Path,
        index: DirectoryIndex,
        seen: dict[str, str],
        where: str,
        line: str,
    ) -> Iterator[Record | Rejection]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            yield self._reject(where, "malformed_row", f"{where}: not JSON ({exc.msg})")
            return
        if not isinstance(entry, dict):
            yield self._reject(where, "malformed_row", f"{where}: not a JSON object")
            return
        name = entry.get("image_name")
        image = images / name if isinstance(name, str) and name.strip() else None
        file_name = relpath(image, self.root) if image is not None else where
        missing = [k for k in _REQUIRED if k not in entry]
        if missing:
            yield self._reject(
                file_name,
                "missing_column",
                f"{where}: no {missing} in {sorted(entry)}",
                image=image,
            )
            return
        if image is None or not isinstance(entry["source"], str):
            yield self._reject(
                file_name, "malformed_row", f"{where}: image_name and source must be strings"
            )
            return
        raw = entry["score"]
        is_50k = isinstance(raw, list)
        key = (
            "humanbeauty_50k"
            if is_50k and entry["source"] not in self.source_map
            else (release_source_key(entry["source"], self.source_map))
        )
        if key is None:
            yield self._reject(
                file_name,
                "unknown_source",
                f"{where}: source {entry['source']!r} matches no catalogue entry "
                f"(known: {sorted(set(_KNOWN.values()))}; pass source_map to add one)",
                image=image,
            )
            return
        values: list[float] = []
        for value in raw if is_50k else [raw]:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                yield self._reject(
                    file_name,
                    "non_numeric_score",
                    f"{where}: score {raw!r}",
                    image=image,
                    source=key,
                )
                return
            number, reason = parse_score(value, (0.0, 1.0))
            if reason is not None:
                yield self._reject(
                    file_name,
                    reason,
                    f"{where}: score {raw!r} (scale 0-1)",
                    image=image,
                    source=key,
                )
                return
            assert number is not None
            values.append(number)
        if is_50k and len(values) != self.n_dims:
            yield self._reject(
                file_name,
                "malformed_row",
                f"{where}: score has {len(values)} values, expected {self.n_dims}",
                image=image,
                source=key,
            )
            return
        if file_name in seen:
            yield self._reject(
                file_name,
                "duplicate_id",
                f"{where}: already listed at {seen[file_name]}",
                image=image,
                source=key,
            )
            return
        seen[file_name] = where
        if name not in index:
            yield self._missing(image, where, source=key)
            return
        metadata: dict[str, object] = {
            "release_source": entry["source"],
            "text_level": entry.get("text_level"),
            "release_part": part_dir.name,
        }
        if is_50k:
            rec = self._record(
                image,
                values[self.overall_index],
                part="fine_grained",
                source=key,
                dimension_scores=values,
                metadata=metadata,
            )
        else:
            rec = self._record(image, values[0], source=key, metadata=metadata)
        # Already normalised by the authors: passes through normalise_by_source untouched.
        rec.score = rec.raw_score
        yield rec


# -- fixture: a miniature copy in the native layout (see hae_data.sources.fixtures) ----

#: ``(source value, catalogue key)`` of the 58K part's six sources, which its rows cycle through.
_PART_58K_SOURCES = [
    (name, key) for key, name in _RELEASE_NAMES.items() if key != "humanbeauty_50k"
]


def write_fixture(
    root: Path, *, n: int = 8, images: ImageProvider = None, broken: bool = True
) -> FixtureManifest:
    """``HumanBeauty-58K/`` and ``HumanBeauty-50K/``, each with ``label.jsonl`` and ``images/``."""
    check_n(n, 2)
    from hae_data.levels import score_to_level

    rng = seeded_rng("release")
    files = FixtureImages(images, n)
    n50 = max(1, n // 3)
    lines = {"HumanBeauty-58K": [], "HumanBeauty-50K": []}
    scores, dims, meta = {}, {}, {}
    root_index = load_standard().root - 1
    for i in range(n):
        if i < n - n50:
            part = "HumanBeauty-58K"
            label, key = _PART_58K_SOURCES[i % len(_PART_58K_SOURCES)]
            name = f"{label.lower()}_{i:05d}.jpg"
            score = round(float(rng.uniform(0.02, 0.98)), 4)
            entry = {
                "image_name": name,
                "source": label,
                "score": score,
                "text_level": score_to_level(score),
            }
            scores[f"{part}/images/{name}"] = score
        else:
            part = "HumanBeauty-50K"
            key = "humanbeauty_50k"
            name = f"hb50k_{i:05d}.jpg"
            values = [round(float(v), 4) for v in rng.uniform(0.1, 0.95, 12)]
            entry = {
                "image_name": name,
                "source": _RELEASE_NAMES[key],
                "score": values,
                "text_level": None,
            }
            scores[f"{part}/images/{name}"] = values[root_index]
            dims[f"{part}/images/{name}"] = values
        files.good(root / part / "images" / name, i)
        lines[part].append(json.dumps(entry))
        meta[f"{part}/images/{name}"] = {"source": key}
    rejected: Counter[str] = Counter()
    if broken:
        bad = lines["HumanBeauty-58K"]
        bad.append('{"image_name": "broken.jpg", "source": "AVA", "score": ')
        rejected["malformed_row"] += 1
        bad.append(json.dumps({"image_name": "noscore.jpg", "source": "AVA", "text_level": "fair"}))
        rejected["missing_column"] += 1
        bad.append(json.dumps({"image_name": "high.jpg", "source": "AVA", "score": 1.3}))
        rejected["score_out_of_range"] += 1
        bad.append(json.dumps({"image_name": "word.jpg", "source": "AVA", "score": "good"}))
        rejected["non_numeric_score"] += 1
        bad.append(json.dumps({"image_name": "flickr.jpg", "source": "Flickr", "score": 0.5}))
        rejected["unknown_source"] += 1
        bad.append(json.dumps({"image_name": "gone.jpg", "source": "BAID", "score": 0.5}))
        rejected["missing_file"] += 1
        bad.append(lines["HumanBeauty-58K"][0])
        rejected["duplicate_id"] += 1
        lines["HumanBeauty-50K"].append(
            json.dumps(
                {"image_name": "eleven.jpg", "source": "HumanBeauty-50K", "score": [0.5] * 11}
            )
        )
        rejected["malformed_row"] += 1
    for part, content in lines.items():
        (root / part).mkdir(parents=True, exist_ok=True)
        (root / part / "label.jsonl").write_text("\n".join(content) + "\n")
    return FixtureManifest(
        "humanbeauty_release", root, n, dict(rejected), scores, dimension_scores=dims, metadata=meta
    )
