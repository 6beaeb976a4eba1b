"""A batched loader over tensors held in memory: one fancy-index per batch, seeded shuffling, resumable.

For data that fits in memory (MNIST, CIFAR), per-item ``Dataset.__getitem__`` calls and
collation cost more than the model; this loader instead cuts a permutation of the indices
into slices and gathers each batch with one indexing operation.

Epoch $e$'s order is a pure function of ``(seed, e)``: a permutation drawn from a
``torch.Generator`` seeded with a hash of the pair, so any epoch can be replayed on its own.
The loader's position is ``(epoch, batches consumed in that epoch)``, saved by
:meth:`InMemoryLoader.state_dict` and restored by :meth:`InMemoryLoader.load_state_dict`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import numpy as np
import torch

__all__ = ["InMemoryLoader"]


def _check_count(name: str, value: object, minimum: int) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``, else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class InMemoryLoader:
    """Iterate over ``(transform(inputs[idx]), targets[idx])`` for consecutive slices ``idx`` of an index order.

    Args:
        inputs: the examples, indexed along the first dimension.
        targets: the targets, as many as ``inputs``.
        batch_size: examples per batch; the last batch of an epoch is shorter unless ``drop_last``.
        shuffle: a new seeded permutation each epoch; otherwise the stored order.
        seed: the seed of the permutations (an integer >= 0).
        drop_last: leave out the last batch of an epoch when it is short.
        transform: applied to each whole batch of inputs (e.g. :meth:`MNIST.normalize
            <cadence.data.mnist.MNIST.normalize>`); ``None`` yields the gathered inputs as they are.

    Every pass over the loader consumes one epoch and advances :attr:`epoch`. A pass stopped
    early is continued by the next one (the state is ``(epoch, position)``); call
    :meth:`set_epoch` to start an epoch from its beginning. Batches are fresh tensors, never
    views of ``inputs``. One pass at a time: iterators share the loader's state.

    Raises:
        TypeError: ``inputs`` or ``targets`` is not a tensor, or ``transform`` is not callable.
        ValueError: an argument is out of range, the lengths differ, or there is no batch.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        for name, value in (("inputs", inputs), ("targets", targets)):
            if not isinstance(value, torch.Tensor) or value.ndim == 0:
                shape = "a 0-d tensor" if isinstance(value, torch.Tensor) else type(value).__name__
                raise TypeError(f"{name} must be a tensor indexed along its first dimension, got {shape}")
        if len(inputs) != len(targets):
            raise ValueError(
                f"inputs and targets must have the same length, got {len(inputs)} inputs and {len(targets)} targets"
            )
        if inputs.device != targets.device:
            raise ValueError(
                f"inputs and targets must be on one device, got inputs on {inputs.device} and targets on {targets.device}"
            )
        if len(inputs) == 0:
            raise ValueError(f"inputs are empty (shape {list(inputs.shape)}): expected at least one example")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.inputs = inputs
        self.targets = targets
        self.batch_size = _check_count("batch_size", batch_size, 1)
        self.seed = _check_count("seed", seed, 0)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        if len(self) == 0:
            raise ValueError(
                f"drop_last=True with {len(inputs)} examples and batch_size {batch_size} leaves no batch: "
                f"expected batch_size <= {len(inputs)}"
            )
        self.epoch = 0
        """The epoch the next batch comes from."""
        self.position = 0
        """Batches of :attr:`epoch` already yielded."""

    def __len__(self) -> int:
        """Batches per epoch, the short last one included unless ``drop_last``."""
        n = len(self.inputs)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The index order of ``epoch``: ``arange(N)``, or when shuffling a permutation that depends only on
        ``(seed, epoch)``, drawn from a generator seeded with a hash of the pair."""
        n = len(self.inputs)
        if not self.shuffle:
            return torch.arange(n)
        state = np.random.SeedSequence([self.seed, _check_count("epoch", epoch, 0)]).generate_state(2, np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        return torch.randperm(n, generator=generator)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the remaining batches of the current epoch, then advance :attr:`epoch` by one."""
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        order = self.order(self.epoch).to(self.inputs.device)
        for b in range(self.position, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x, y = self.inputs[idx], self.targets[idx]
            self.position = b + 1
            yield (x if self.transform is None else self.transform(x)), y
        self.epoch, self.position = self.epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (an integer >= 0) from its first batch on the next pass."""
        self.epoch, self.position = _check_count("epoch", epoch, 0), 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position"}``: where the next batch comes from (a batch counts once it was yielded)."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a :meth:`state_dict`: the next pass yields exactly the batches the saved loader had left.

        Raises:
            KeyError: ``state`` lacks ``"epoch"`` or ``"position"``.
            ValueError: a value is out of range for this loader (``position`` above ``len(self)``).
        """
        missing = {"epoch", "position"} - state.keys()
        if missing:
            raise KeyError(f"loader state {state!r} lacks {sorted(missing)}: expected keys 'epoch' and 'position'")
        epoch = _check_count("epoch", state["epoch"], 0)
        position = _check_count("position", state["position"], 0)
        if position > len(self):
            raise ValueError(f"loader state position {position} is past the end of an epoch of {len(self)} batches")
        self.epoch, self.position = epoch, position
