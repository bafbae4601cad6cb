"""Question/answer pairs (SPEC 2.6): a paraphrase chosen by the image id, answers from levels."""

from __future__ import annotations

from annotation_schema import load_standard
from hae_data.hashing import unit_hash
from hae_data.records import Record

__all__ = ["make_qa", "pick_question"]


def pick_question(image_id: str, part: str) -> str:
    """The question paraphrase for ``image_id``: the same id always gets the same question."""
    std = load_standard()
    if part == "overall":
        choices = std.overall_questions
    elif part == "fine_grained":
        choices = std.fine_grained_questions
    else:
        raise ValueError(f"unknown part {part!r}")
    return choices[int(unit_hash(image_id, "question") * len(choices))]


def make_qa(record: Record) -> Record:
    """Fill ``question`` and ``answer`` of a record whose level(s) are set; returns the record."""
    if record.image_id is None:
        raise ValueError(f"{record.file_name}: image_id must be set before QA generation")
    std = load_standard()
    record.question = pick_question(record.image_id, record.part)
    if record.part == "overall":
        if record.level is None:
            raise ValueError(f"{record.file_name}: level must be set before QA generation")
        record.answer = std.overall_answer(record.level)
    else:
        if record.dimension_levels is None:
            raise ValueError(f"{record.file_name}: dimension levels must be set before QA")
        record.answer = std.fine_grained_answer(record.dimension_levels)
    return record
