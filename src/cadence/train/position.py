"""Where the training loop is within its run: one small stateful object, saved in every checkpoint."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["TRAIN", "VALID", "LoopPosition"]

#: The two phases of an epoch.
TRAIN, VALID = "train", "valid"


class LoopPosition:
    """The epoch in progress, the batches of each phase done in it, whether a validation pass is in progress.

    * :attr:`epoch`: the epoch in progress, from 0 (the epochs done, between epochs);
    * :attr:`done`: per phase, the batches taken from its loader in this epoch (a batch counts
      once taken, as a loader's own position counts it);
    * :attr:`in_epoch`: whether :attr:`epoch` has started and not ended (a checkpoint taken
      mid-epoch resumes within it, without starting it again);
    * :attr:`validating`: whether a whole validation pass (``valid_every``) is in progress;
    * :attr:`phase`: the phase in progress (``"train"``, ``"valid"``, or an :meth:`~cadence.train.Trainer.evaluate`
      pass's, ``"test"``), or :data:`TRAIN` between phases: what a step carrying state per phase reads.

    A checkpoint holds it (:meth:`state_dict`); the resumed loop continues from it.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.done = {TRAIN: 0, VALID: 0}
        self.in_epoch = False
        self.validating = False
        self.phase = TRAIN

    def start_epoch(self) -> bool:
        """Enter :attr:`epoch`; return whether it starts afresh (``False`` when a resumed run is within it)."""
        if self.in_epoch:
            return False
        self.in_epoch = True
        self.done = {TRAIN: 0, VALID: 0}
        return True

    def end_epoch(self) -> None:
        """Leave :attr:`epoch` for the next."""
        self.in_epoch = False
        self.epoch += 1

    def start_validation(self) -> bool:
        """Enter a whole validation pass; return whether it starts afresh (``False`` when resumed within it)."""
        if self.validating:
            return False
        self.validating = True
        self.done[VALID] = 0
        return True

    def batches(self, loader: Iterable, phase: str) -> Iterator:
        """An iterator of ``loader`` at the batch of ``phase`` the epoch is at: a resumable loader restored from a
        checkpoint starts there; another is advanced past the batches done."""
        batches, done = iter(loader), self.done[phase]
        if done and not hasattr(loader, "load_state_dict"):
            for _ in range(done):
                next(batches)
        return batches

    def state_dict(self) -> dict[str, Any]:
        """The position, as plain numbers."""
        return {"epoch": self.epoch, "done": dict(self.done), "in_epoch": self.in_epoch,
                "validating": self.validating}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.epoch, self.done = int(state["epoch"]), {phase: int(n) for phase, n in state["done"].items()}
        self.in_epoch, self.validating = bool(state["in_epoch"]), bool(state["validating"])
        self.phase = TRAIN
