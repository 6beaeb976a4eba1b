"""Resumable, shardable sampling for map-style data sets read through ``torch.utils.data.DataLoader``.

Epoch $e$'s index order is a pure function of ``(seed, e)``, the same permutation as
:meth:`InMemoryLoader.order <cadence.data.loader.InMemoryLoader.order>` draws, so any epoch can be
replayed on its own and never depends on the global random state. For data parallel training
the order is sharded as :class:`torch.utils.data.DistributedSampler` shards it: padded by
wrapping around to a multiple of ``world_size`` (or truncated to one when ``drop_last``), then
rank $r$ takes positions $r, r + W, r + 2W, \\dots$ So every rank gets the same number of
indices, the shards are disjoint apart from the wrapped padding, and together they cover the epoch.

:class:`ResumableSampler` yields one rank's order of an epoch from a start position;
:class:`ResumableDataLoader` is a ``DataLoader`` over it that counts the batches it hands out,
so its :meth:`~ResumableDataLoader.state_dict` ``(epoch, position, seed)`` says exactly where to
resume, however far ahead the workers have prefetched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cadence.checks import check_number
from cadence.data.epochs import (ResumableEpochs, check_shard, check_state, chunks, epoch_generator, padding,
                                  shard)

__all__ = ["ResumableDataLoader", "ResumableSampler"]


class ResumableSampler(Sampler[int]):
    """The indices of one rank for one epoch, from a start position on: seeded, sharded, resumable.

    Args:
        data_source: the data set (only its ``len`` is used).
        shuffle: a new seeded permutation each epoch (as ``DistributedSampler``, the default);
            otherwise ``0 .. N - 1`` in order.
        seed: the seed of the permutations (an integer >= 0).
        drop_last: truncate each epoch's order to a multiple of ``world_size`` instead of padding it.
        world_size: the number of ranks sharing the data.
        rank: this process's rank, ``0 .. world_size - 1``.

    Like ``DistributedSampler``, it never advances by itself: :meth:`set_epoch` chooses the epoch
    (and, to resume, how many of its indices to skip) before each pass.
    :class:`ResumableDataLoader` does that for you.

    Raises:
        ValueError: an argument is out of range, or ``drop_last`` leaves a rank no index.
    """

    def __init__(
        self,
        data_source: Sized,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        self.size = len(data_source)
        self.shuffle = shuffle
        self.seed = check_number("ResumableSampler", "seed", seed, low=0, integer=True)
        self.drop_last = drop_last
        self.world_size, self.rank = check_shard("ResumableSampler", world_size, rank)
        self.num_samples = chunks(self.size, world_size, drop_last)
        """Indices of one rank per epoch."""
        if self.num_samples == 0:
            raise ValueError(
                f"{self.size} examples shared by world_size {world_size} leave rank {rank} no example"
                + (" with drop_last=True" if drop_last else "")
            )
        self.epoch = 0
        """The epoch the next pass comes from."""
        self.start = 0
        """Indices of :attr:`epoch` to skip: those already consumed."""

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's indices of ``epoch``: the epoch's order (a function of ``(seed, epoch)`` only), sharded."""
        if self.shuffle:
            full = torch.randperm(self.size, generator=epoch_generator(self.seed, epoch))
        else:
            full = torch.arange(self.size)
        return shard(full, self.world_size, self.rank, self.drop_last)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Make the next pass yield the indices of ``epoch`` from its ``start``-th on."""
        self.epoch = check_number("ResumableSampler", "epoch", epoch, low=0, integer=True)
        start = check_number("ResumableSampler", "start", start, low=0, integer=True)
        if start > self.num_samples:
            raise ValueError(f"start {start} is past the end of an epoch of {self.num_samples} indices")
        self.start = start

    def __iter__(self) -> Iterator[int]:
        """The indices of :attr:`epoch` from :attr:`start` on."""
        return iter(self.order(self.epoch)[self.start :].tolist())

    def __len__(self) -> int:
        """How many indices the next pass yields."""
        return self.num_samples - self.start


class ResumableDataLoader(ResumableEpochs, DataLoader):
    """A ``torch.utils.data.DataLoader`` over a :class:`ResumableSampler` that can stop and resume mid-epoch.

    Args:
        dataset: a map-style data set.
        batch_size: examples per batch.
        shuffle: a new seeded permutation each epoch; otherwise the data set's order.
        seed: the seed of the permutations.
        drop_last: drop each epoch's last short batch, and truncate instead of pad when sharding.
        world_size, rank: the shard to read, see :func:`~cadence.data.epochs.shard`.
        **kwargs: passed on to ``DataLoader`` (``num_workers``, ``collate_fn``, ``pin_memory``, ...).

    As :class:`~cadence.data.loader.InMemoryLoader`, every pass consumes one epoch and advances
    :attr:`epoch`; a pass stopped early is continued by the next one. A batch counts as consumed
    once it was yielded, so batches that workers prefetched but nobody received are read again
    after a restore. Before each pass, a data set with a ``set_epoch(epoch)`` method (as
    :class:`~cadence.data.sequential.SequentialUnBatchedDataset`) is told the epoch, so its own
    seeded randomness follows the loader's.

    Raises:
        ValueError: an argument is out of range, or ``persistent_workers`` is asked with a data set
            that has ``set_epoch`` (the workers' copies would not see the epoch change).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        world_size: int = 1,
        rank: int = 0,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("persistent_workers") and callable(getattr(dataset, "set_epoch", None)):
            raise ValueError(
                f"persistent_workers=True with {type(dataset).__name__}, which has set_epoch: the workers' copies "
                "would keep the first epoch's randomness; use persistent_workers=False"
            )
        check_number("ResumableDataLoader", "batch_size", batch_size, low=1, integer=True)
        sampler = ResumableSampler(
            dataset, shuffle=shuffle, seed=seed, drop_last=drop_last, world_size=world_size, rank=rank
        )
        super().__init__(dataset, batch_size, sampler=sampler, drop_last=drop_last, **kwargs)
        if len(self) == 0:
            raise ValueError(
                f"drop_last=True with {sampler.num_samples} examples per rank and batch_size {batch_size} leaves "
                f"no batch: expected batch_size <= {sampler.num_samples}"
            )

    def __len__(self) -> int:
        """Batches per epoch of this rank, the short last one included unless ``drop_last``."""
        return chunks(self.sampler.num_samples, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[Any]:
        """Yield the remaining batches of the current epoch, then advance :attr:`epoch` by one."""
        start = self._remaining().start  # first, as it may move on to the next epoch
        self.sampler.set_epoch(self.epoch, start * self.batch_size)
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        for batch in super().__iter__():
            self.position += 1
            yield batch
        self._next_epoch()

    def padding(self, batch: int) -> int:
        """The last rows of this rank's batch ``batch`` that only repeat examples of other ranks (the wrapped padding of
        :func:`~cadence.data.epochs.shard`), to be left out of a metric: 0 but in a last batch."""
        sampler = self.sampler
        return 0 if sampler.drop_last else padding(sampler.size, sampler.world_size, sampler.rank, self.batch_size,
                                                   batch)

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed"}``: where the next batch comes from and the seed of the orders."""
        return super().state_dict() | {"seed": self.sampler.seed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore a :meth:`state_dict`, the seed included.

        Raises:
            KeyError: ``state`` lacks a key.
            ValueError: a value is out of range for this loader.
        """
        *_, seed = check_state("ResumableDataLoader", state, ("epoch", "position", "seed"))
        super().load_state_dict(state)
        self.sampler.seed = seed
