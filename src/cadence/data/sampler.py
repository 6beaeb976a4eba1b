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

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cadence.data.loader import _check_count

__all__ = ["ResumableDataLoader", "ResumableEpochs", "ResumableSampler", "check_shard", "epoch_generator", "shard"]


def epoch_generator(seed: int, epoch: int, *stream: int) -> torch.Generator:
    """A ``torch.Generator`` whose state is a pure function of ``(seed, epoch, *stream)``.

    The words are hashed with :class:`numpy.random.SeedSequence` into a 64-bit seed, so nearby
    seeds and epochs give unrelated streams; ``stream`` tells apart the several random draws
    of one epoch (e.g. the order and the random offsets).
    """
    state = np.random.SeedSequence([seed, epoch, *stream]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def check_shard(world_size: int, rank: int) -> tuple[int, int]:
    """``(world_size, rank)`` if ``world_size >= 1`` and ``0 <= rank < world_size``, else a ``ValueError`` naming them."""
    _check_count("world_size", world_size, 1)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in 0 .. {world_size - 1} (world_size {world_size}), got {rank!r}")
    return world_size, rank


def shard(order: torch.Tensor, world_size: int, rank: int, drop_last: bool = False) -> torch.Tensor:
    r"""Rank ``rank``'s share of ``order``: positions $r, r + W, \dots$ of ``order`` padded to a multiple of $W$.

    The padding repeats ``order`` from its start (as often as needed), so each of the $W$ shards
    has $\lceil N / W \rceil$ entries; with ``drop_last`` the order is instead truncated to
    $\lfloor N / W \rfloor W$ entries.
    """
    n = len(order)
    if drop_last:
        return order[: n - n % world_size][rank::world_size]
    total = -(-n // world_size) * world_size
    return order.repeat(-(-total // n))[:total][rank::world_size]


def check_state(state: Mapping[str, int], keys: tuple[str, ...], owner: str) -> list[int]:
    """The values of ``keys`` in ``state``, each an integer >= 0, or an error naming the key and the value."""
    missing = [key for key in keys if key not in state]
    if missing:
        expected = ", ".join(repr(key) for key in keys)
        raise KeyError(f"{owner} state {dict(state)!r} lacks {missing}: expected keys {expected}")
    return [_check_count(f"{owner} state {key!r}", state[key], 0) for key in keys]


class ResumableEpochs:
    """The ``(epoch, position)`` state of a loader whose every pass reads one epoch.

    A pass yields the batches of :attr:`epoch` from :attr:`position` on, then moves to the next
    epoch; a pass stopped early is continued by the next one. A batch counts once it was
    yielded. Subclasses define ``__len__`` (batches per epoch) and iterate over
    :meth:`_remaining`, setting :attr:`position` as they yield and calling :meth:`_next_epoch`
    at the end.
    """

    epoch: int = 0
    """The epoch the next batch comes from."""
    position: int = 0
    """Batches of :attr:`epoch` already yielded."""

    def _remaining(self) -> range:
        """The indices of the batches left in the epoch, moving on to the next epoch when none is left."""
        if self.position >= len(self):
            self._next_epoch()
        return range(self.position, len(self))

    def _next_epoch(self) -> None:
        self.epoch, self.position = self.epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (an integer >= 0) from its first batch on the next pass."""
        self.epoch, self.position = _check_count("epoch", epoch, 0), 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position"}``: where the next batch comes from."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore a :meth:`state_dict`: the next passes yield exactly what the saved loader had left.

        Raises:
            KeyError: ``state`` lacks a key.
            ValueError: a value is out of range for this loader (``position`` above ``len(self)``).
        """
        epoch, position = check_state(state, ("epoch", "position"), "loader")
        if position > len(self):
            raise ValueError(f"loader state position {position} is past the end of an epoch of {len(self)} batches")
        self.epoch, self.position = epoch, position


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
        self.seed = _check_count("seed", seed, 0)
        self.drop_last = drop_last
        self.world_size, self.rank = check_shard(world_size, rank)
        self.num_samples = self.size // world_size if drop_last else -(-self.size // world_size)
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
        _check_count("epoch", epoch, 0)
        if self.shuffle:
            full = torch.randperm(self.size, generator=epoch_generator(self.seed, epoch))
        else:
            full = torch.arange(self.size)
        return shard(full, self.world_size, self.rank, self.drop_last)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Make the next pass yield the indices of ``epoch`` from its ``start``-th on."""
        self.epoch = _check_count("epoch", epoch, 0)
        start = _check_count("start", start, 0)
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
        world_size, rank: the shard to read, see :func:`shard`.
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
        _check_count("batch_size", batch_size, 1)
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
        n = self.sampler.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

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

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed"}``: where the next batch comes from and the seed of the orders."""
        return super().state_dict() | {"seed": self.sampler.seed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore a :meth:`state_dict`, the seed included.

        Raises:
            KeyError: ``state`` lacks a key.
            ValueError: a value is out of range for this loader.
        """
        *_, seed = check_state(state, ("epoch", "position", "seed"), "loader")
        super().load_state_dict(state)
        self.sampler.seed = seed
