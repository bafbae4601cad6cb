"""What every stage of the build returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from hae_data.records import Record, Rejection

__all__ = ["StageResult"]


@dataclass
class StageResult:
    """Records that went on and rejections that did not, from one stage."""

    records: list[Record] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def extend(self, other: StageResult) -> StageResult:
        """Append another result's records and rejections; returns self."""
        self.records.extend(other.records)
        self.rejections.extend(other.rejections)
        return self
