"""Data: the data directory, verified downloads, image data sets in memory, augmentation, and in-memory batching.

- :func:`resolve_data_dir`: ``--data-dir``, else ``$CADENCE_DATA``, else the user cache folder.
- :func:`cadence.data.download.download`: mirrors tried in turn, SHA-256 verified, atomic rename
  (not re-exported here: the name would hide the ``cadence.data.download`` module).
- :func:`read_idx`: IDX files (gzip or raw) into tensors, validated by structure.
- :class:`MNIST`, :class:`FashionMNIST`, :class:`KMNIST`: the IDX image family as uint8 tensors
  in memory, downloaded when missing.
- :class:`CIFAR10`, :class:`CIFAR100`: the official Python-pickle batches, read with a
  restricted unpickler (:func:`load_pickle`) from an archive extracted safely (:func:`safe_extract`).
- :class:`RandomCrop`, :class:`RandomHorizontalFlip`, :class:`Compose`: augmentation of whole
  batches, seeded per batch.
- :class:`InMemoryLoader`: whole batches by index, seeded reproducible shuffling and
  augmentation, sharding across ranks, resumable.
- :class:`Vocabulary`: tokens and their ids with reserved padding and unknown tokens, encode/decode,
  built from text or restored from a checkpoint's :meth:`~Vocabulary.state_dict` (no data needed).
- :class:`TextDataset`, :class:`TextFileDataset`: a vocabulary over training and validation text
  and their compact token ids, memory-mapped from a token cache when large;
  :func:`text_file_path`: a corpus's local file, downloaded (verified) into the data directory when missing.
- :class:`CharacterTokenizer`, :class:`WordTokenizer`, :class:`WordEosTokenizer`, :class:`CallableTokenizer`:
  pluggable tokenizers.
- :class:`TokenCache`: the verified, atomically written token cache file of a corpus.
- :class:`SequentialDataLoader`: BPTT batches ``[seq_len, batch]``, sharded by columns, resumable.
- :class:`SequentialUnBatchedDataset`: windows at seeded random offsets, a map-style data set;
  :func:`collate_time_major` batches them ``[seq_len, batch]``.
- :class:`ResumableSampler`, :class:`ResumableDataLoader`: seeded, sharded, resumable sampling of
  any map-style data set through ``torch.utils.data.DataLoader``.
"""

from cadence.data.archive import UnsafeArchiveError, safe_extract
from cadence.data.augment import Compose, RandomCrop, RandomHorizontalFlip
from cadence.data.cifar import CIFAR10, CIFAR100
from cadence.data.dirs import ENV_VAR, default_data_dir, resolve_data_dir
from cadence.data.download import DataNotFoundError, DownloadError
from cadence.data.idx import DataFormatError, read_idx
from cadence.data.loader import InMemoryLoader
from cadence.data.mnist import KMNIST, MNIST, FashionMNIST, MNISTNotFoundError
from cadence.data.sampler import ResumableDataLoader, ResumableSampler
from cadence.data.sequential import SequentialDataLoader, SequentialUnBatchedDataset, collate_time_major
from cadence.data.text import TINY_SHAKESPEARE_URL, TextDataset, TextFileDataset, text_file_path
from cadence.data.token_cache import TokenCache, token_dtype
from cadence.data.tokenizers import (CallableTokenizer, CharacterTokenizer, Tokenizer, WordEosTokenizer, WordTokenizer,
                                     as_tokenizer)
from cadence.data.unpickle import UnsafePickleError, load_pickle
from cadence.data.vocabulary import Vocabulary

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "CallableTokenizer",
    "CharacterTokenizer",
    "Compose",
    "DataFormatError",
    "DataNotFoundError",
    "DownloadError",
    "ENV_VAR",
    "FashionMNIST",
    "InMemoryLoader",
    "KMNIST",
    "MNIST",
    "MNISTNotFoundError",
    "RandomCrop",
    "RandomHorizontalFlip",
    "ResumableDataLoader",
    "ResumableSampler",
    "SequentialDataLoader",
    "SequentialUnBatchedDataset",
    "TINY_SHAKESPEARE_URL",
    "TextDataset",
    "TextFileDataset",
    "TokenCache",
    "Tokenizer",
    "UnsafeArchiveError",
    "UnsafePickleError",
    "Vocabulary",
    "WordEosTokenizer",
    "WordTokenizer",
    "as_tokenizer",
    "collate_time_major",
    "default_data_dir",
    "load_pickle",
    "read_idx",
    "resolve_data_dir",
    "safe_extract",
    "text_file_path",
    "token_dtype",
]
