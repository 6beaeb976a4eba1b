r"""Sequential (BPTT) batches over a token stream, and fixed-length random windows of it.

After labml_nn's ``SequentialDataLoader`` and ``SequentialUnBatchedDataset``.

:class:`SequentialDataLoader` cuts the stream $t_0 t_1 \dots t_{N-1}$ into $C$ equal columns of
$L = \lfloor N / C \rfloor$ tokens (the last $N - CL$ tokens are left out), column $c$ holding
$t_{cL} \dots t_{cL + L - 1}$. Batch $i$ is rows $[iT, iT + T)$ of the columns as input and rows
$[iT + 1, iT + T + 1)$ as target, both ``[seq_len, batch]``, so that a recurrent model can
carry its state from one batch to the next: column $c$ of batch $i + 1$ continues column $c$
of batch $i$. The last batch is shorter when $T$ does not divide $L - 1$.

Sharding: with $W$ ranks there are $C = W B$ columns and rank $r$ takes columns
$r, r + W, \dots, r + (B - 1) W$ (the ``DistributedSampler`` convention), so every rank has
$B$ columns of the same length $L$: the same batches per epoch, disjoint, and together
exactly the columns a single process with batch size $W B$ reads (column $j$ of rank $r$'s
batch is column $jW + r$ of that process's batch).

:class:`SequentialUnBatchedDataset` is a map-style data set of the $\lfloor (N - 1) / T \rfloor$
windows $[kT + o_k, kT + o_k + T)$ with random offsets $o_k$ drawn per epoch from
``(seed, epoch)``; shuffle and shard it with :class:`~cadence.data.sampler.ResumableDataLoader`,
whose default collation stacks the windows batch-major, ``[B, T]``; :func:`collate_time_major`
stacks them time-major, ``[T, B]``, as :class:`SequentialDataLoader` gives its batches, so that
one model reads both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch.utils.data import Dataset

from cadence.checks import check_number
from cadence.data.epochs import ResumableEpochs, check_shard, check_state, chunks, epoch_generator
from cadence.data.token_cache import release_pages
from cadence.data.vocabulary import Vocabulary

__all__ = ["SequentialDataLoader", "SequentialUnBatchedDataset", "collate_time_major"]

_RELEASE_BYTES = 8 * 2**20
"""A memory-mapped stream's pages are handed back each time batches have read this many more bytes."""

_OFFSETS = 1
"""The stream number of the random offsets in :func:`~cadence.data.epochs.epoch_generator`."""


def _token_stream(text: str | torch.Tensor, vocabulary: Vocabulary | None, owner: str) -> torch.Tensor:
    """The 1-D integer ids of ``text``: a tensor of ids as it is, a string encoded by ``vocabulary``."""
    if isinstance(text, torch.Tensor):
        if text.ndim != 1 or text.dtype.is_floating_point or text.dtype.is_complex or text.dtype == torch.bool:
            raise TypeError(
                f"{owner}: text must be a 1-D tensor of token ids, got {text.dtype} of shape {list(text.shape)}"
            )
        return text
    if isinstance(text, str):
        if vocabulary is None:
            raise TypeError(f"{owner}: text is a string, so a vocabulary= is needed to encode it")
        return vocabulary.encode(text)
    raise TypeError(f"{owner}: text must be a string or a tensor of token ids, got {type(text).__name__}")


class SequentialDataLoader(ResumableEpochs):
    """BPTT batches ``(input, target)`` of int64 ``[seq_len, batch_size]``, the target shifted one token ahead.

    Args:
        text: the text (a string, encoded with ``vocabulary``) or its token ids (a 1-D integer
            tensor, e.g. :attr:`TextDataset.train_tokens <cadence.data.text.TextDataset.train_tokens>`,
            memory-mapped or not).
        vocabulary: the :class:`~cadence.data.vocabulary.Vocabulary` that encodes a string ``text``.
        batch_size: columns per batch (per rank).
        seq_len: tokens per column per batch (the BPTT length).
        drop_last: leave out the short last batch of an epoch.
        world_size, rank: read rank ``rank``'s shard of the columns (see the module docstring).

    Each batch is a fresh int64 ``[T + 1, batch_size]`` copy of the stream, never a view of it;
    input and target are its first and last ``T`` rows, views that share it. The order is the same
    every epoch; the state is ``(epoch, position)`` as for
    :class:`~cadence.data.loader.InMemoryLoader`. Iterating a memory-mapped stream hands its
    pages back every few megabytes read (:func:`~cadence.data.token_cache.release_pages`),
    so resident memory stays small however large the corpus.

    Raises:
        TypeError: ``text`` is neither a string nor a 1-D integer tensor, or a string without ``vocabulary``.
        ValueError: an argument is out of range, or the stream is too short for one batch.
    """

    def __init__(
        self,
        *,
        text: str | torch.Tensor,
        vocabulary: Vocabulary | None = None,
        batch_size: int,
        seq_len: int,
        drop_last: bool = False,
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        self.batch_size = check_number("SequentialDataLoader", "batch_size", batch_size, low=1, integer=True)
        self.seq_len = check_number("SequentialDataLoader", "seq_len", seq_len, low=1, integer=True)
        self.world_size, self.rank = check_shard("SequentialDataLoader", world_size, rank)
        self.drop_last = drop_last
        self.tokens = _token_stream(text, vocabulary, type(self).__name__)
        columns = batch_size * world_size
        self.length = len(self.tokens) // columns
        """Tokens per column, $L$."""
        if self.length < 2 or len(self) == 0:
            raise ValueError(
                f"{len(self.tokens)} tokens in {columns} columns (batch_size {batch_size} x world_size {world_size}) "
                f"give {self.length} tokens per column: expected at least "
                f"{seq_len + 1 if drop_last else 2} for one (input, target) batch"
            )
        self.data = self.tokens[: columns * self.length].view(columns, self.length)[rank::world_size]
        """This rank's columns, ``[batch_size, L]``, a view of the stream."""

    def __len__(self) -> int:
        r"""Batches per epoch: $\lceil (L - 1) / T \rceil$, or $\lfloor (L - 1) / T \rfloor$ with ``drop_last``."""
        return chunks(self.length - 1, self.seq_len, self.drop_last)

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``index`` of an epoch: the input and the target, int64 ``[T, batch_size]`` (shorter last)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} is out of range for an epoch of {len(self)} batches")
        start = index * self.seq_len
        stop = min(start + self.seq_len, self.length - 1)
        window = self.data[:, start : stop + 1].t().to(torch.int64, memory_format=torch.contiguous_format, copy=True)
        return window[:-1], window[1:]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the remaining batches of the current epoch, then advance :attr:`epoch` by one."""
        batch_bytes = self.batch_size * self.seq_len * self.tokens.element_size()
        read = 0
        for b in self._remaining():
            x, y = self.batch(b)
            read += batch_bytes
            if read >= _RELEASE_BYTES:
                release_pages(self.tokens)
                read = 0
            self.position = b + 1
            yield x, y
        self._next_epoch()


class SequentialUnBatchedDataset(Dataset):
    r"""Windows of ``seq_len`` tokens as ``(input, target)`` int64 ``[seq_len]`` pairs, the target shifted by one.

    Args:
        text: the text (a string, encoded with ``vocabulary``) or its token ids (1-D integer tensor).
        vocabulary: the :class:`~cadence.data.vocabulary.Vocabulary` that encodes a string ``text``.
        seq_len: tokens per window, $T$.
        is_random_offset: start window $k$ at $kT + o_k$ with $o_k$ uniform in
            $[0, \min(T - 1, N - kT - T - 1)]$ (as labml_nn), drawn anew each epoch;
            otherwise at $kT$.
        seed: the seed of the offsets: epoch $e$'s offsets depend only on ``(seed, e)``.

    :meth:`set_epoch` selects the epoch whose offsets ``__getitem__`` uses;
    :class:`~cadence.data.sampler.ResumableDataLoader` calls it before each pass, so a restored
    loader reproduces the offsets too.

    Raises:
        TypeError: as for :class:`SequentialDataLoader`.
        ValueError: ``seq_len`` or ``seed`` out of range, or fewer than ``seq_len + 1`` tokens.
    """

    def __init__(
        self,
        *,
        text: str | torch.Tensor,
        vocabulary: Vocabulary | None = None,
        seq_len: int,
        is_random_offset: bool = True,
        seed: int = 0,
    ) -> None:
        self.seq_len = check_number("SequentialUnBatchedDataset", "seq_len", seq_len, low=1, integer=True)
        self.seed = check_number("SequentialUnBatchedDataset", "seed", seed, low=0, integer=True)
        self.is_random_offset = is_random_offset
        self.data = _token_stream(text, vocabulary, type(self).__name__)
        if len(self) == 0:
            raise ValueError(f"{len(self.data)} tokens hold no window of seq_len {seq_len} plus a target token")
        self.epoch = 0
        """The epoch whose offsets are used."""
        self._offsets: tuple[int, int, torch.Tensor] | None = None

    def __len__(self) -> int:
        r"""The number of windows, $\lfloor (N - 1) / T \rfloor$."""
        return (len(self.data) - 1) // self.seq_len

    def offsets(self, epoch: int) -> torch.Tensor:
        """The offset of every window in ``epoch`` (int64, zeros without ``is_random_offset``)."""
        n = len(self)
        if not self.is_random_offset:
            return torch.zeros(n, dtype=torch.int64)
        starts = torch.arange(n) * self.seq_len
        high = (len(self.data) - starts - self.seq_len - 1).clamp(max=self.seq_len - 1)
        generator = epoch_generator(self.seed, epoch, _OFFSETS)
        uniform = torch.rand(n, generator=generator, dtype=torch.float64)
        return (uniform * (high + 1)).long()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window ``index`` of the current :attr:`epoch`."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} is out of range for {len(self)} windows")
        if self._offsets is None or self._offsets[:2] != (self.epoch, self.seed):
            self._offsets = (self.epoch, self.seed, self.offsets(self.epoch))
        start = index * self.seq_len + int(self._offsets[2][index])
        window = self.data[start : start + self.seq_len + 1].to(torch.int64, copy=True)
        return window[:-1], window[1:]

    def set_epoch(self, epoch: int) -> None:
        """Use the offsets of ``epoch`` (an integer >= 0) from now on."""
        self.epoch = check_number("SequentialUnBatchedDataset", "epoch", epoch, low=0, integer=True)

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "seed"}``: what the offsets are drawn from."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore a :meth:`state_dict`.

        Raises:
            KeyError: ``state`` lacks ``"epoch"`` or ``"seed"``.
            ValueError: a value is not an integer >= 0.
        """
        self.epoch, self.seed = check_state("SequentialUnBatchedDataset", state, ("epoch", "seed"))


def collate_time_major(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate windows ``(input [T], target [T])`` into time-major ``(input [T, B], target [T, B])``.

    A ``collate_fn`` for :class:`SequentialUnBatchedDataset`'s windows: column $b$ is window $b$
    of the batch, as in :class:`SequentialDataLoader`'s batches.
    """
    inputs, targets = zip(*batch)
    return torch.stack(inputs, dim=1), torch.stack(targets, dim=1)
