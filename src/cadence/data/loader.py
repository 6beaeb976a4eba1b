"""A batched loader over tensors held in memory: one fancy-index per batch, seeded shuffling and augmentation,
sharding across ranks, resumable.

For data that fits in memory (MNIST, CIFAR), per-item ``Dataset.__getitem__`` calls and
collation cost more than the model; this loader instead cuts a permutation of the indices
into slices and gathers each batch with one indexing operation.

Epoch $e$'s order is a pure function of ``(seed, e)``: a permutation drawn from a
``torch.Generator`` seeded with a hash of the pair, so any epoch can be replayed on its own.
With ``world_size`` ranks, as ``torch.utils.data.DistributedSampler`` does, that order (the
same on every rank) is padded by wrapping around to a multiple of ``world_size`` (truncated
instead with ``drop_last``) and rank ``r`` takes positions ``r, r + world_size, ...``:
every rank gets the same number of batches, the shards are disjoint apart from the padding,
and together they cover the epoch. Batch $b$ of epoch $e$ on rank $r$ is augmented with a
generator seeded from ``(seed, e, r, b)``, so it too can be replayed on its own.

The loader's position is ``(epoch, batches consumed in that epoch)``, saved with the seed by
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


def _generator(seed: int, epoch: int, spawn_key: tuple[int, ...] = ()) -> torch.Generator:
    """A CPU generator seeded with a hash of ``(seed, epoch)`` and ``spawn_key`` (numpy's ``SeedSequence``).

    ``spawn_key`` tells streams of one epoch apart: ``()`` for the order, ``(rank, batch)`` for
    a batch's augmentation. (Appending ``rank, batch`` to the entropy instead would not: numpy
    pads entropy with zeros, so ``[seed, epoch, 0, 0]`` seeds exactly as ``[seed, epoch]``.)
    """
    state = np.random.SeedSequence([seed, epoch], spawn_key=spawn_key).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class InMemoryLoader:
    """Iterate over ``(transform(augment(inputs[idx])), targets[idx])`` for consecutive slices ``idx`` of an order.

    Args:
        inputs: the examples, indexed along the first dimension.
        targets: the targets, as many as ``inputs``.
        batch_size: examples per batch; the last batch of an epoch is shorter unless ``drop_last``.
        shuffle: a new seeded permutation each epoch; otherwise the stored order.
        seed: the seed of the permutations and augmentations (an integer >= 0).
        drop_last: leave out the last batch of an epoch when it is short (and, when sharding,
            the examples past the last multiple of ``world_size`` instead of padding).
        transform: applied to each whole batch of inputs (e.g. :meth:`MNIST.normalize
            <cadence.data.images.ImageDataset.normalize>`); ``None`` yields the inputs as they are.
        augment: applied to each whole batch of gathered inputs *before* ``transform`` (so to
            uint8 images, whose padding then stays black), as ``augment(x, generator)`` with a
            generator seeded from ``(seed, epoch, rank, batch)``: e.g.
            ``Compose(RandomCrop(4), RandomHorizontalFlip())`` from :mod:`cadence.data.augment`.
            Use it on the training loader only.
        world_size: the number of ranks the epoch is split across (an integer >= 1).
        rank: this loader's rank, ``0 .. world_size - 1``.

    Every pass over the loader consumes one epoch and advances :attr:`epoch`. A pass stopped
    early is continued by the next one (the state is ``(epoch, position)``); call
    :meth:`set_epoch` to start an epoch from its beginning. Batches are fresh tensors, never
    views of ``inputs``. One pass at a time: iterators share the loader's state.

    Raises:
        TypeError: ``inputs`` or ``targets`` is not a tensor, or ``transform`` or ``augment`` is not
            callable.
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
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        world_size: int = 1,
        rank: int = 0,
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
                f"inputs and targets must be on one device, got inputs on {inputs.device} "
                f"and targets on {targets.device}"
            )
        if len(inputs) == 0:
            raise ValueError(f"inputs are empty (shape {list(inputs.shape)}): expected at least one example")
        for name, function in (("transform", transform), ("augment", augment)):
            if function is not None and not callable(function):
                raise TypeError(f"{name} must be callable or None, got {type(function).__name__}")
        self.inputs = inputs
        self.targets = targets
        self.batch_size = _check_count("batch_size", batch_size, 1)
        self.seed = _check_count("seed", seed, 0)
        self.world_size = _check_count("world_size", world_size, 1)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(
                f"rank must be an integer in 0 .. {world_size - 1} (world_size {world_size}), got {rank!r}"
            )
        self.rank = rank
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        self.augment = augment
        if len(self) == 0:
            n = len(inputs)
            if self.shard_size == 0:
                raise ValueError(
                    f"drop_last=True with {n} examples and world_size {world_size} leaves no example per rank: "
                    f"expected world_size <= {n}"
                )
            shards = f" split across world_size {world_size} ({self.shard_size} each)" if world_size > 1 else ""
            raise ValueError(
                f"drop_last=True with {n} examples{shards} and batch_size {batch_size} leaves no batch: "
                f"expected batch_size <= {self.shard_size}"
            )
        self.epoch = 0
        """The epoch the next batch comes from."""
        self.position = 0
        """Batches of :attr:`epoch` already yielded."""

    @property
    def shard_size(self) -> int:
        """Examples per rank and epoch: ``ceil(N / world_size)``, or ``floor`` with ``drop_last``."""
        n = len(self.inputs)
        return n // self.world_size if self.drop_last else -(-n // self.world_size)

    def __len__(self) -> int:
        """Batches per epoch (on this rank), the short last one included unless ``drop_last``."""
        n = self.shard_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The index order of ``epoch`` over all ranks: ``arange(N)``, or when shuffling a permutation that depends
        only on ``(seed, epoch)``, drawn from a generator seeded with a hash of the pair."""
        n = len(self.inputs)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=_generator(self.seed, _check_count("epoch", epoch, 0)))

    def shard(self, epoch: int) -> torch.Tensor:
        """This rank's indices of ``epoch`` in order: positions ``rank, rank + world_size, ...`` of :meth:`order`
        wrapped around to ``world_size * shard_size`` entries (or cut to it with ``drop_last``)."""
        order = self.order(epoch)
        total = self.world_size * self.shard_size
        if total > len(order):
            order = order.repeat(-(-total // len(order)))
        return order[:total][self.rank :: self.world_size]

    def generator(self, epoch: int, batch: int) -> torch.Generator:
        """The generator that augments batch ``batch`` of ``epoch`` on this rank: seeded from ``(seed, epoch, rank,
        batch)`` only."""
        return _generator(self.seed, _check_count("epoch", epoch, 0), (self.rank, _check_count("batch", batch, 0)))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the remaining batches of the current epoch, then advance :attr:`epoch` by one."""
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        shard = self.shard(self.epoch).to(self.inputs.device)
        for b in range(self.position, len(self)):
            idx = shard[b * self.batch_size : (b + 1) * self.batch_size]
            x, y = self.inputs[idx], self.targets[idx]
            if self.augment is not None:
                x = self.augment(x, self.generator(self.epoch, b))
            self.position = b + 1
            yield (x if self.transform is None else self.transform(x)), y
        self.epoch, self.position = self.epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (an integer >= 0) from its first batch on the next pass."""
        self.epoch, self.position = _check_count("epoch", epoch, 0), 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed"}``: where the next batch comes from (a batch counts once it was
        yielded) and the seed of every permutation and augmentation."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a :meth:`state_dict`: the next pass yields exactly the batches the saved loader had left,
        shuffled and augmented alike, and the epochs after it are the same too.

        Raises:
            KeyError: ``state`` lacks ``"epoch"``, ``"position"`` or ``"seed"``.
            ValueError: a value is out of range for this loader (``position`` above ``len(self)``).
        """
        missing = {"epoch", "position", "seed"} - state.keys()
        if missing:
            raise KeyError(
                f"loader state {state!r} lacks {sorted(missing)}: expected keys 'epoch', 'position' and 'seed'"
            )
        epoch = _check_count("loader state epoch", state["epoch"], 0)
        position = _check_count("loader state position", state["position"], 0)
        seed = _check_count("loader state seed", state["seed"], 0)
        if position > len(self):
            raise ValueError(
                f"loader state position {position} is past the end of an epoch of {len(self)} batches "
                f"(batch_size {self.batch_size}, world_size {self.world_size})"
            )
        self.epoch, self.position, self.seed = epoch, position, seed
