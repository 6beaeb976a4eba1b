"""A batched loader over tensors held in memory: one gather per batch, seeded shuffling and augmentation,
sharding across ranks, resumable.

For data that fits in memory (MNIST, CIFAR), per-item ``Dataset.__getitem__`` calls and
collation cost more than the model; this loader instead cuts a permutation of the indices
into slices and gathers each batch with one ``index_select``.

Epochs are seeded, sharded and resumable as :mod:`cadence.data.epochs` describes: epoch $e$'s
order is a permutation drawn from a generator seeded by ``(seed, e)``, split across
``world_size`` ranks as ``torch.utils.data.DistributedSampler`` splits it, and batch $b$ of
epoch $e$ on rank $r$ is augmented with a generator seeded by ``(seed, e, r, b)``, so any
epoch or batch can be replayed on its own. The loader's position is ``(epoch, batches
consumed in that epoch)``, saved with the seed by :meth:`InMemoryLoader.state_dict`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch

from cadence.checks import check_number
from cadence.data.epochs import (ResumableEpochs, check_shard, check_state, chunks, epoch_generator, padding,
                                  shard)

__all__ = ["InMemoryLoader"]


class InMemoryLoader(ResumableEpochs):
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
        self.batch_size = check_number("InMemoryLoader", "batch_size", batch_size, low=1, integer=True)
        self.seed = check_number("InMemoryLoader", "seed", seed, low=0, integer=True)
        self.world_size, self.rank = check_shard("InMemoryLoader", world_size, rank)
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

    def padding(self, batch: int) -> int:
        """The last rows of this rank's batch ``batch`` that only repeat examples of other ranks (the wrapped padding of
        :func:`~cadence.data.epochs.shard`), to be left out of a metric: 0 but in a last batch."""
        return 0 if self.drop_last else padding(len(self.inputs), self.world_size, self.rank, self.batch_size, batch)

    @property
    def shard_size(self) -> int:
        """Examples per rank and epoch: ``ceil(N / world_size)``, or ``floor`` with ``drop_last``."""
        return chunks(len(self.inputs), self.world_size, self.drop_last)

    def __len__(self) -> int:
        """Batches per epoch (on this rank), the short last one included unless ``drop_last``."""
        return chunks(self.shard_size, self.batch_size, self.drop_last)

    @property
    def num_samples(self) -> int:
        """Samples in this rank's batches per epoch: its shard, :attr:`shard_size` (the wrapped padding included,
        as ``DistributedSampler.num_samples`` counts it), less the short last batch with ``drop_last``; the loader's
        length in samples where ``len()`` gives it in batches."""
        return len(self) * self.batch_size if self.drop_last else self.shard_size

    def order(self, epoch: int) -> torch.Tensor:
        """The index order of ``epoch`` over all ranks: ``arange(N)``, or when shuffling a permutation that depends
        only on ``(seed, epoch)``, drawn from a generator seeded with a hash of the pair."""
        n = len(self.inputs)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=epoch_generator(self.seed, epoch))

    def shard(self, epoch: int) -> torch.Tensor:
        """This rank's indices of ``epoch`` in order: :meth:`order` split by :func:`~cadence.data.epochs.shard`."""
        return shard(self.order(epoch), self.world_size, self.rank, self.drop_last)

    def generator(self, epoch: int, batch: int) -> torch.Generator:
        """The generator that augments batch ``batch`` of ``epoch`` on this rank: seeded from ``(seed, epoch, rank,
        batch)`` only."""
        return epoch_generator(self.seed, epoch, self.rank, batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the remaining batches of the current epoch, then advance :attr:`epoch` by one."""
        remaining = self._remaining()  # first, as it may move on to the next epoch
        shard = self.shard(self.epoch).to(self.inputs.device)
        for b in remaining:
            idx = shard[b * self.batch_size : (b + 1) * self.batch_size]
            # index_select gathers whole rows: about 10x faster than inputs[idx] for small batches.
            x, y = self.inputs.index_select(0, idx), self.targets.index_select(0, idx)
            if self.augment is not None:
                x = self.augment(x, self.generator(self.epoch, b))
            self.position = b + 1
            yield (x if self.transform is None else self.transform(x)), y
        self._next_epoch()

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed"}``: where the next batch comes from (a batch counts once it was
        yielded) and the seed of every permutation and augmentation."""
        return super().state_dict() | {"seed": self.seed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore a :meth:`state_dict`: the next pass yields exactly the batches the saved loader had left,
        shuffled and augmented alike, and the epochs after it are the same too.

        Raises:
            KeyError: ``state`` lacks ``"epoch"``, ``"position"`` or ``"seed"``.
            ValueError: a value is out of range for this loader (``position`` above ``len(self)``).
        """
        *_, seed = check_state("InMemoryLoader", state, ("epoch", "position", "seed"))
        super().load_state_dict(state)
        self.seed = seed
