"""Data: the data directory, verified downloads, IDX reading, MNIST in memory, and in-memory batching.

- :func:`resolve_data_dir`: ``--data-dir``, else ``$CADENCE_DATA``, else the user cache folder.
- :func:`cadence.data.download.download`: mirrors tried in turn, SHA-256 verified, atomic rename
  (not re-exported here: the name would hide the ``cadence.data.download`` module).
- :func:`read_idx`: IDX files (gzip or raw) into tensors, validated by structure.
- :class:`MNIST`: the digits as uint8 tensors in memory, downloaded when missing.
- :class:`InMemoryLoader`: whole batches by index, seeded reproducible shuffling, resumable.
- :class:`TextDataset`, :class:`TextFileDataset`: a vocabulary over training and validation text
  with reserved tokens, encode/decode, compact token ids, memory-mapped from a token cache when large.
- :class:`CharacterTokenizer`, :class:`WordTokenizer`, :class:`CallableTokenizer`: pluggable tokenizers.
- :class:`TokenCache`: the verified, atomically written token cache file of a corpus.
- :class:`SequentialDataLoader`: BPTT batches ``[seq_len, batch]``, sharded by columns, resumable.
- :class:`SequentialUnBatchedDataset`: windows at seeded random offsets, a map-style data set.
- :class:`ResumableSampler`, :class:`ResumableDataLoader`: seeded, sharded, resumable sampling of
  any map-style data set through ``torch.utils.data.DataLoader``.
"""

from cadence.data.dirs import ENV_VAR, default_data_dir, resolve_data_dir
from cadence.data.download import DownloadError
from cadence.data.idx import DataFormatError, read_idx
from cadence.data.loader import InMemoryLoader
from cadence.data.mnist import MNIST, MNISTNotFoundError
from cadence.data.sampler import ResumableDataLoader, ResumableSampler
from cadence.data.sequential import SequentialDataLoader, SequentialUnBatchedDataset
from cadence.data.text import TINY_SHAKESPEARE_URL, TextDataset, TextFileDataset
from cadence.data.token_cache import TokenCache, token_dtype
from cadence.data.tokenizers import CallableTokenizer, CharacterTokenizer, Tokenizer, WordTokenizer, as_tokenizer

__all__ = [
    "ENV_VAR",
    "MNIST",
    "TINY_SHAKESPEARE_URL",
    "CallableTokenizer",
    "CharacterTokenizer",
    "DataFormatError",
    "DownloadError",
    "InMemoryLoader",
    "MNISTNotFoundError",
    "ResumableDataLoader",
    "ResumableSampler",
    "SequentialDataLoader",
    "SequentialUnBatchedDataset",
    "TextDataset",
    "TextFileDataset",
    "TokenCache",
    "Tokenizer",
    "WordTokenizer",
    "as_tokenizer",
    "default_data_dir",
    "read_idx",
    "resolve_data_dir",
    "token_dtype",
]
