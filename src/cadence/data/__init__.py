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
"""

from cadence.data.archive import UnsafeArchiveError, safe_extract
from cadence.data.augment import Compose, RandomCrop, RandomHorizontalFlip
from cadence.data.cifar import CIFAR10, CIFAR100
from cadence.data.dirs import ENV_VAR, default_data_dir, resolve_data_dir
from cadence.data.download import DataNotFoundError, DownloadError
from cadence.data.idx import DataFormatError, read_idx
from cadence.data.loader import InMemoryLoader
from cadence.data.mnist import KMNIST, MNIST, FashionMNIST, MNISTNotFoundError
from cadence.data.unpickle import UnsafePickleError, load_pickle

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "ENV_VAR",
    "KMNIST",
    "MNIST",
    "Compose",
    "DataFormatError",
    "DataNotFoundError",
    "DownloadError",
    "FashionMNIST",
    "InMemoryLoader",
    "MNISTNotFoundError",
    "RandomCrop",
    "RandomHorizontalFlip",
    "UnsafeArchiveError",
    "UnsafePickleError",
    "default_data_dir",
    "load_pickle",
    "read_idx",
    "resolve_data_dir",
    "safe_extract",
]
