"""Seeded, sharded, resumable epochs: what every cadence loader shares.

* **Seeded.** Each random draw of an epoch (its order, a batch's augmentation, random
  offsets) comes from :func:`epoch_generator`, a pure function of ``(seed, epoch, *stream)``,
  never from the global random state, so any epoch, or any batch of it, can be replayed alone.
* **Sharded.** For data parallel training an epoch's order, identical on every rank, is split
  as :class:`torch.utils.data.DistributedSampler` splits it (:func:`shard`): padded by wrapping
  around to a multiple of the world size $W$ (or truncated to one with ``drop_last``), then
  rank $r$ takes positions $r, r + W, r + 2W, \\dots$ Every rank gets the same number of
  examples, the shards are disjoint apart from the wrapped padding, and together they cover
  the epoch. The padding is the last entry of a shard (at most one per rank), so it is the
  last row of a rank's last batch: :func:`padding` counts it, and validation leaves it out,
  counting every example exactly once.
* **Resumable.** A loader's position is ``(epoch, batches of it already yielded)``
  (:class:`ResumableEpochs`); restored, it yields exactly the batches the saved loader had
  left, then the same next epochs as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from cadence.checks import check_number

__all__ = ["ResumableEpochs", "check_shard", "check_state", "chunks", "epoch_generator", "padding", "shard"]


def chunks(n: int, size: int, drop_last: bool) -> int:
    r"""How many pieces of ``size`` items ``n`` items make: $\lceil n / size \rceil$, the short last one
    included, or $\lfloor n / size \rfloor$ with ``drop_last`` (batches of an epoch, a rank's share of it)."""
    return n // size if drop_last else -(-n // size)


def check_shard(where: str, world_size: int, rank: int) -> tuple[int, int]:
    """``(world_size, rank)`` if ``world_size >= 1`` and ``0 <= rank < world_size``, else an error naming them."""
    world_size = check_number(where, "world_size", world_size, low=1, integer=True)
    return world_size, check_number(where, "rank", rank, low=0, high=world_size, high_open=True, integer=True)


def check_state(owner: str, state: Mapping[str, int], keys: tuple[str, ...]) -> list[int]:
    """The values of ``keys`` in ``state``, each an integer >= 0, or an error naming the key and the value."""
    missing = [key for key in keys if key not in state]
    if missing:
        expected = ", ".join(repr(key) for key in keys)
        raise KeyError(f"{owner} state {dict(state)!r} lacks {missing}: expected keys {expected}")
    return [check_number(f"{owner} state", key, state[key], low=0, integer=True) for key in keys]


def epoch_generator(seed: int, epoch: int, *stream: int) -> torch.Generator:
    """A CPU ``torch.Generator`` whose state is a pure function of ``(seed, epoch, *stream)``.

    The words are hashed by :class:`numpy.random.SeedSequence` into a 64-bit seed, so nearby
    seeds and epochs give unrelated streams. ``stream`` tells apart the draws of one epoch
    (``()`` for the order; ``(rank, batch)`` for a batch's augmentation); it is the sequence's
    ``spawn_key``, not more entropy, because numpy pads entropy with zeros: ``[seed, epoch, 0]``
    would seed exactly as ``[seed, epoch]``.
    """
    state = np.random.SeedSequence([seed, epoch], spawn_key=stream).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


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


def padding(n: int, world_size: int, rank: int, batch_size: int, batch: int) -> int:
    """The rows of rank ``rank``'s batch ``batch`` (of ``batch_size``) that :func:`shard`'s wrapping added to an epoch
    of ``n`` examples: they repeat examples of other ranks, and come last in the batch."""
    real = len(range(rank, n, world_size))  # this rank's positions before the padding
    start, end = batch * batch_size, min((batch + 1) * batch_size, -(-n // world_size))
    return max(0, end - max(start, real))


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
        self.epoch, self.position = check_number(type(self).__name__, "epoch", epoch, low=0, integer=True), 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position"}``: where the next batch comes from."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore a :meth:`state_dict`: the next passes yield exactly what the saved loader had left.

        Raises:
            KeyError: ``state`` lacks a key.
            ValueError: a value is out of range for this loader (``position`` above ``len(self)``).
        """
        epoch, position = check_state(type(self).__name__, state, ("epoch", "position"))
        if position > len(self):
            raise ValueError(f"loader state position {position} is past the end of an epoch of {len(self)} batches")
        self.epoch, self.position = epoch, position
