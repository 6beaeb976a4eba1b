"""Data: the data directory, verified downloads, IDX reading, MNIST in memory, and in-memory batching.

- :func:`resolve_data_dir`: ``--data-dir``, else ``$CADENCE_DATA``, else the user cache folder.
- :func:`cadence.data.download.download`: mirrors tried in turn, SHA-256 verified, atomic rename
  (not re-exported here: the name would hide the ``cadence.data.download`` module).
- :func:`read_idx`: IDX files (gzip or raw) into tensors, validated by structure.
- :class:`MNIST`: the digits as uint8 tensors in memory, downloaded when missing.
- :class:`InMemoryLoader`: whole batches by index, seeded reproducible shuffling, resumable.
"""

from cadence.data.dirs import ENV_VAR, default_data_dir, resolve_data_dir
from cadence.data.download import DownloadError
from cadence.data.idx import DataFormatError, read_idx
from cadence.data.loader import InMemoryLoader
from cadence.data.mnist import MNIST, MNISTNotFoundError

__all__ = [
    "ENV_VAR",
    "MNIST",
    "DataFormatError",
    "DownloadError",
    "InMemoryLoader",
    "MNISTNotFoundError",
    "default_data_dir",
    "read_idx",
    "resolve_data_dir",
]
