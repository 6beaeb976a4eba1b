"""Where a batch stands in its phase of an epoch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchIndex:
    """The position ``idx`` (from 0) of a batch among the ``total`` batches of its phase in this epoch."""

    idx: int
    total: int

    def __post_init__(self) -> None:
        if not 0 <= self.idx < self.total:
            raise ValueError(f"BatchIndex: idx={self.idx} is outside [0, total={self.total})")

    @property
    def is_last(self) -> bool:
        """Whether this is the last batch of the phase in this epoch."""
        return self.idx == self.total - 1

    def is_interval(self, interval: int) -> bool:
        """Whether this batch closes a run of ``interval`` batches (or is the last one).

        ``interval <= 0`` never fires.
        """
        if interval <= 0:
            return False
        return self.is_last or (self.idx + 1) % interval == 0
