"""The labeling config is the standard, and the scale maps exactly onto [0, 1]."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest

from annotation_schema import load_standard
from hae_data.annotate.__main__ import main
from hae_data.annotate.labeling import (
    SCALE_MAX,
    dimension_order,
    labeling_config,
    rating_to_score,
    scale_points,
)
from hae_data.levels import score_to_level


def _controls(xml: str) -> list[ET.Element]:
    return list(ET.fromstring(xml).iter("Choices"))


def test_config_has_every_dimension_in_the_standards_hierarchy():
    std = load_standard()
    root = ET.fromstring(labeling_config())
    assert root.tag == "View"
    image = root.find("Image")
    assert image is not None and image.get("value") == "$image" and image.get("name") == "image"
    controls = _controls(labeling_config())
    names = [c.get("name") for c in controls]
    assert sorted(names) == sorted(std.keys)
    # Leaves before their parent, groups contiguous, the root last.
    position = {name: i for i, name in enumerate(names)}
    for d in std.dimensions:
        if d.parent is not None:
            assert position[d.key] < position[std.dimension(d.parent).key]
    assert names[-1] == std.dimension(std.root).key
    assert names == [d.key for section in dimension_order() for d in section]
    assert names[:6] == list(std.keys[:6])  # the facial group first, in vector order


def test_every_dimension_is_required_with_its_guideline_and_the_scale():
    std = load_standard()
    root = ET.fromstring(labeling_config())
    texts = {t.get("name"): t.get("value") for t in root.iter("Text")}
    headers = [h.get("value") for h in root.iter("Header")]
    for control in root.iter("Choices"):
        dim = next(d for d in std.dimensions if d.key == control.get("name"))
        assert control.get("toName") == "image"
        assert control.get("required") == "true"
        assert control.get("choice") == "single-radio"
        assert texts[f"{dim.key}_guideline"] == dim.guideline
        assert f"{dim.index}. {dim.name}" in headers
        points = [(c.get("value"), c.get("hint")) for c in control.iter("Choice")]
        assert points == scale_points()
        assert [v for v, _ in points] == [str(k) for k in range(SCALE_MAX + 1)]


def test_config_follows_an_edited_standard():
    """Nothing is typed twice: renaming a dimension in the standard renames it in the config."""
    std = load_standard()
    dims = list(std.dimensions)
    dims[0] = dataclasses.replace(dims[0], name="Face Lighting", guideline="Is the face lit?")
    edited = dataclasses.replace(std, dimensions=tuple(dims))
    root = ET.fromstring(labeling_config(edited))
    assert "1. Face Lighting" in [h.get("value") for h in root.iter("Header")]
    assert "1. Facial Brightness" not in [h.get("value") for h in root.iter("Header")]
    texts = {t.get("name"): t.get("value") for t in root.iter("Text")}
    assert texts["facial_brightness_guideline"] == "Is the face lit?"


def test_guideline_text_with_markup_characters_stays_valid_xml():
    std = load_standard()
    dims = list(std.dimensions)
    dims[1] = dataclasses.replace(dims[1], guideline='Eyes & brows "sharp" <not blurred>')
    root = ET.fromstring(labeling_config(dataclasses.replace(std, dimensions=tuple(dims))))
    texts = {t.get("name"): t.get("value") for t in root.iter("Text")}
    assert texts["facial_feature_clarity_guideline"] == 'Eyes & brows "sharp" <not blurred>'


def test_scale_maps_exactly_onto_zero_one_and_onto_the_level_words():
    assert rating_to_score("0") == 0.0 and rating_to_score("10") == 1.0
    assert [rating_to_score(str(k)) for k in range(11)] == [k / 10 for k in range(11)]
    assert rating_to_score(["7"]) == rating_to_score(7) == rating_to_score(7.0) == 0.7
    for value, word in scale_points():
        assert word == score_to_level(rating_to_score(value))
    assert [w for _, w in scale_points()].count("excellent") == 2


@pytest.mark.parametrize(
    "bad", ["11", "-1", "7.5", "seven", "", None, True, ["1", "2"], [], {"choices": ["1"]}]
)
def test_values_off_the_scale_are_refused_with_a_reason(bad):
    with pytest.raises(ValueError, match=r"not|expected one"):
        rating_to_score(bad)


def test_config_command_writes_the_file(tmp_path, capsys):
    out = tmp_path / "config.xml"
    assert main(["-q", "config", "-o", str(out)]) == 0
    assert out.read_text() == labeling_config()
    assert main(["-q", "config"]) == 0
    assert capsys.readouterr().out == labeling_config()
