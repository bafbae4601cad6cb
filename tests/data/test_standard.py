import json

import pytest
import yaml

import annotation_schema as schema_mod
from annotation_schema import (
    SCHEMA_PATH,
    STANDARD_PATH,
    StandardError,
    annotation_row_schema,
    load_standard,
    validate_annotation_row,
)


def test_standard_has_the_tree_of_spec_2_4():
    std = load_standard()
    assert len(std.dimensions) == 12
    assert std.leaves == (1, 2, 3, 4, 5, 7, 8, 9, 10)
    assert std.children(6) == (1, 2, 3, 4, 5)
    assert std.children(11) == (7, 8, 9)
    assert std.children(12) == (6, 10, 11)
    assert std.root == 12
    assert std.inner_nodes == (6, 11, 12)
    assert std.dimension(10).key == "environment"
    assert std.dimension(11).key == "general_appearance_aesthetic"
    assert all(d.guideline and len(d.guideline.split()) >= 20 for d in std.dimensions)
    assert std.level_words == ("bad", "poor", "fair", "good", "excellent")
    assert std.level_upper_bounds == (0.2, 0.4, 0.6, 0.8, 1.0)
    assert len(std.overall_questions) == len(std.fine_grained_questions) == 5


def test_answers_follow_the_templates():
    std = load_standard()
    assert std.overall_answer("good") == "The aesthetics of the image is good."
    lines = std.fine_grained_answer(["fair"] * 12).split("\n")
    assert lines[0] == "Facial Brightness: fair"
    assert [ln.split(": ")[0] for ln in lines] == list(std.names)
    with pytest.raises(ValueError):
        std.fine_grained_answer(["fair"] * 11)


def test_dataclasses_are_frozen():
    std = load_standard()
    with pytest.raises(AttributeError):
        std.dimensions[0].name = "x"  # type: ignore[misc]


def _broken(tmp_path, mutate):
    raw = yaml.safe_load(STANDARD_PATH.read_text())
    mutate(raw)
    path = tmp_path / "standard.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["dimensions"][5].update(parent=1), "dimension 1: kind .leaf. disagrees"),
        (lambda r: r["dimensions"][11].update(kind="parent", parent=6), "root"),
        (lambda r: r["dimensions"].pop(), "12 dimensions"),
        (lambda r: r["dimensions"][0].update(key="Facial Brightness"), "snake_case"),
        (lambda r: r["dimensions"][1].update(parent=1), "dimension 1: kind .leaf. disagrees"),
        (lambda r: r["dimensions"][6].update(kind="parent"), "disagrees with its children"),
        (lambda r: r["levels"].update(upper_bounds=[0.2, 0.4, 0.3, 0.8, 1.0]), "increase"),
        (lambda r: r["questions"]["overall"].pop(), "paraphrases"),
        (lambda r: r.pop("answers"), "missing"),
    ],
)
def test_broken_standard_is_rejected_on_load(tmp_path, mutate, message):
    path = _broken(tmp_path, mutate)
    with pytest.raises(StandardError, match=message):
        schema_mod.load_standard(path)


def test_shipped_json_schema_is_generated_from_the_standard():
    assert json.loads(SCHEMA_PATH.read_text()) == annotation_row_schema()


def test_annotation_rows_are_validated():
    keys = load_standard().keys
    good = {"image": "a.jpg", "rater": "r01", **dict.fromkeys(keys, 0.5)}
    assert validate_annotation_row(good) == []
    assert validate_annotation_row({**good, "rater": 7}) == []
    errors = validate_annotation_row({**good, "outfit": 1.5, "extra": 1})
    assert any(e.startswith("outfit") for e in errors)
    assert any("extra" in e for e in errors)
    missing = dict(good)
    del missing["looks"]
    assert any("looks" in e for e in validate_annotation_row(missing))
