"""Where a batch stands in its phase of an epoch, and what its rows are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class BatchIndex:
    """The position ``idx`` (from 0) of a batch among the ``total`` batches of its phase in this epoch; ``padding``:
    its last rows that a data parallel validation loader repeated so that every process runs as many batches
    (:func:`cadence.data.epochs.padding`), to be left out of the loss and the metrics."""

    idx: int
    total: int
    padding: int = 0

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


def loader_padding(loader: Any, batch: int) -> int:
    """The last rows of ``loader``'s batch ``batch`` that repeat other processes' samples (a cadence loader's
    ``padding``; 0 for another loader)."""
    return loader.padding(batch) if hasattr(loader, "padding") else 0


def samples_in(batch: Any) -> int:
    """Samples in ``batch`` (the first dimension of its first tensor), weighting a bare loss."""
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() > 0 else 1


def loss_and_count(result: Any, batch: Any) -> tuple[torch.Tensor, int | torch.Tensor]:
    """What a step returned, ``loss`` or ``(loss, count)``, as ``(loss, count)``: a bare loss weighted by
    :func:`samples_in` ``batch``; anything but a 0-d tensor for the loss is refused, naming what it was."""
    loss, count = result if isinstance(result, tuple) else (result, samples_in(batch))
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        got = f"a tensor of shape {list(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TypeError(f"Trainer.step returned {got}; expected the batch's mean loss as a 0-d tensor, or "
                        f"(loss, count)")
    return loss, count
