"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009): 32x32 colour images, read from the official Python-pickle batches.

The official ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/`` with five training
batches ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``;
``cifar-100-python.tar.gz`` holds ``cifar-100-python/`` with ``train``, ``test`` and ``meta``.
Each batch is a Python 2 pickle of a dict:

| key | value |
| --- | --- |
| ``data`` | uint8 numpy array ``[n, 3072]``: per image the red, green and blue 32x32 planes, each row-major |
| ``labels`` (CIFAR-10) | list of n ints, 0 .. 9 |
| ``fine_labels``, ``coarse_labels`` (CIFAR-100) | lists of n ints, 0 .. 99 and 0 .. 19 (the 20 superclasses) |
| ``filenames``, ``batch_label`` | names, unused |

and the meta file a dict with the class names (``label_names``; ``fine_label_names`` and
``coarse_label_names``). So row ``i`` of ``data`` reshaped to ``[3, 32, 32]`` is image ``i``
in channels-first order, and the whole split is one reshape of the concatenated arrays.

Files live in ``<data dir>/<FOLDER>/``: the extracted folder is read if present, else the
archive there is extracted (with :func:`~cadence.data.archive.safe_extract`, into a temporary
folder renamed into place when complete), else the archive is downloaded from ``MIRRORS``
and checked against its SHA-256. Pickles are untrusted input: they are read with
:func:`~cadence.data.unpickle.load_pickle`, which admits numpy arrays and plain data only.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from cadence.data.archive import safe_extract
from cadence.data.download import fetch_missing
from cadence.data.idx import DataFormatError
from cadence.data.images import ImageDataset
from cadence.data.unpickle import load_pickle
from cadence.data.partial import partial_path

__all__ = ["CIFAR10", "CIFAR100", "CIFARDataset"]

_PIXELS = 3 * 32 * 32


class CIFARDataset(ImageDataset):
    """One split of a CIFAR data set held in memory: ``images`` (uint8, ``[N, 3, 32, 32]``) and ``labels`` (int64).

    Subclasses set the class constants: where the files are (:attr:`FOLDER`, :attr:`ARCHIVE`,
    :attr:`EXTRACTED`, the batch files), where they come from (:attr:`MIRRORS`,
    :attr:`SHA256`), what the batches hold (:attr:`LABELS`, :attr:`NAMES`) and the
    normalization statistics (:attr:`MEAN`, :attr:`STD`).

    Args:
        data_dir: the data directory (``--data-dir``); ``None`` means ``$CADENCE_DATA``, else
            the user cache folder. Files are read from ``<data_dir>/<FOLDER>/``.
        train: the training split if true, else the test split.
        download: download the archive when neither it nor its extracted folder is there.

    Attributes:
        root: ``<data_dir>/<FOLDER>``.
        folder: the extracted folder read, ``<root>/<EXTRACTED>``.
        images: uint8 ``[N, 3, 32, 32]`` (channels R, G, B), contiguous, in memory.
        labels: int64 ``[N]``.
        classes: the name of each label.

    Raises:
        DataNotFoundError: the files are missing and could not be downloaded.
        UnsafeArchiveError: the archive holds a link, a device or a path leading out of its folder.
        UnsafePickleError: a batch's pickle refers to anything but numpy's array reconstruction.
        DataFormatError: a batch is not a valid CIFAR batch (the message names the file and
            what was wrong).
    """

    ARCHIVE: ClassVar[str]
    """The official archive's file name."""
    EXTRACTED: ClassVar[str]
    """The folder inside the archive that holds the batches."""
    MIRRORS: ClassVar[tuple[str, ...]] = ("https://www.cs.toronto.edu/~kriz/",)
    """Base URLs of the archive: the authors' page, the one source torchvision, Keras and TensorFlow Datasets use."""
    SHA256: ClassVar[str]
    """SHA-256 of the official archive, checked on download only."""
    TRAIN_FILES: ClassVar[tuple[str, ...]]
    """The training split's batch files, in order."""
    TEST_FILES: ClassVar[tuple[str, ...]]
    """The test split's batch files."""
    META_FILE: ClassVar[str]
    """The file of class names."""
    LABELS: ClassVar[dict[str, tuple[str, int]]]
    """Batch key -> (attribute it becomes, number of classes)."""
    NAMES: ClassVar[dict[str, tuple[str, int]]]
    """Meta key -> (attribute it becomes, number of names)."""
    MEAN: ClassVar[tuple[float, float, float]]
    STD: ClassVar[tuple[float, float, float]]

    IMAGE_SIZE: ClassVar[int] = 32
    """Images are ``3 x IMAGE_SIZE x IMAGE_SIZE``."""

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, train: bool = True, download: bool = True
    ) -> None:
        super().__init__(data_dir, train)
        self.folder: Path = self._find_or_extract(download)

        batches = [self._read_batch(self.folder / name) for name in (self.TRAIN_FILES if train else self.TEST_FILES)]
        data = np.concatenate([data for data, _ in batches])
        self.images = torch.from_numpy(data).reshape(-1, 3, self.IMAGE_SIZE, self.IMAGE_SIZE)
        for key, (attribute, _) in self.LABELS.items():
            setattr(self, attribute, torch.cat([labels[key] for _, labels in batches]))
        for attribute, names in self._read_names(self.folder / self.META_FILE).items():
            setattr(self, attribute, names)

    def _find_or_extract(self, download: bool) -> Path:
        """``<root>/<EXTRACTED>``, extracting (and first downloading) the archive when it is not there."""
        folder = self.root / self.EXTRACTED
        if folder.is_dir():
            return folder
        archive = self.root / self.ARCHIVE
        if not archive.is_file():
            fetch_missing(
                self.NAME, self.root, [self.ARCHIVE], self.MIRRORS, {self.ARCHIVE: self.SHA256},
                allowed=download, also=f" (or the folder {self.EXTRACTED}/ extracted from it)",
            )
        # Extract beside the final folder and rename it into place: a folder under the final
        # name is always complete, whatever interrupts the extraction. When several processes
        # (ranks) extract at once, the first rename wins and the others find the folder there.
        temp = partial_path(folder)
        try:
            safe_extract(archive, temp)
            if not (temp / self.EXTRACTED).is_dir():
                found = ", ".join(sorted(path.name for path in temp.iterdir())) or "nothing"
                raise DataFormatError(archive, f"holds {found}, expected a folder {self.EXTRACTED}/")
            try:
                os.replace(temp / self.EXTRACTED, folder)
            except OSError:
                if not folder.is_dir():
                    raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        return folder

    def _read_batch(self, path: Path) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """The ``data`` array and the label tensors of one batch file, validated."""
        batch = self._load_dict(path, ("data", *self.LABELS))
        data = batch["data"]
        if not isinstance(data, np.ndarray):
            raise DataFormatError(path, f"'data' is a {type(data).__name__}, expected a uint8 array [n, {_PIXELS}]")
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
            raise DataFormatError(
                path,
                f"'data' is a {data.dtype} array of shape {list(data.shape)}, "
                f"expected a uint8 array [n, {_PIXELS}] (3 x 32 x 32 per image)",
            )
        labels = {}
        for key, (_, count) in self.LABELS.items():
            values = batch[key]
            if not (isinstance(values, list) and all(type(v) is int for v in values)):
                raise DataFormatError(path, f"{key!r} is a {type(values).__name__}, expected a list of ints")
            if len(values) != len(data):
                raise DataFormatError(
                    path, f"{len(values)} {key}, but 'data' holds {len(data)} images: expected one each"
                )
            tensor = torch.tensor(values, dtype=torch.int64)
            bad = ((tensor < 0) | (tensor >= count)).nonzero()
            if len(bad):
                index = int(bad[0])
                raise DataFormatError(path, f"{key} {values[index]} at index {index}, expected 0 .. {count - 1}")
            labels[key] = tensor
        return data, labels

    def _read_names(self, path: Path) -> dict[str, tuple[str, ...]]:
        """The class names in the meta file, by attribute, validated."""
        meta = self._load_dict(path, tuple(self.NAMES))
        names = {}
        for key, (attribute, count) in self.NAMES.items():
            values = meta[key]
            if not (isinstance(values, list) and len(values) == count and all(isinstance(v, str) for v in values)):
                raise DataFormatError(path, f"{key!r} is {values!r:.80}, expected a list of {count} names")
            names[attribute] = tuple(values)
        return names

    def _load_dict(self, path: Path, keys: Sequence[str]) -> dict[str, object]:
        """The dict unpickled from ``path``, which must hold ``keys``."""
        if not path.is_file():
            expected = ", ".join((*self.TRAIN_FILES, *self.TEST_FILES, self.META_FILE))
            raise DataFormatError(
                path.parent,
                f"{path.name} is missing: a complete {self.EXTRACTED}/ holds {expected} "
                f"(delete the folder to extract it again from {self.ARCHIVE})",
            )
        content = load_pickle(path)
        if not isinstance(content, dict):
            raise DataFormatError(
                path, f"holds a {type(content).__name__}, expected a dict with keys {', '.join(keys)}"
            )
        missing = [key for key in keys if key not in content]
        if missing:
            raise DataFormatError(path, f"lacks the keys {', '.join(missing)}; it has {', '.join(map(str, content))}")
        return content


class CIFAR10(CIFARDataset):
    """CIFAR-10: 50,000 training and 10,000 test images of 10 classes (airplane .. truck).

    Read from ``<data_dir>/cifar10/``; see :class:`CIFARDataset` for the arguments and attributes.
    """

    NAME = "CIFAR-10"
    FOLDER = "cifar10"
    ARCHIVE = "cifar-10-python.tar.gz"
    EXTRACTED = "cifar-10-batches-py"
    SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    """SHA-256 of ``cifar-10-python.tar.gz`` (as in Keras's ``cifar10.py``; torchvision checks its MD5
    ``c58f30108f718f92721af3b95e74349a``)."""
    TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
    TEST_FILES = ("test_batch",)
    META_FILE = "batches.meta"
    LABELS = {"labels": ("labels", 10)}
    NAMES = {"label_names": ("classes", 10)}
    MEAN = (0.4914, 0.4822, 0.4465)
    STD = (0.2470, 0.2435, 0.2616)


class CIFAR100(CIFARDataset):
    """CIFAR-100: 50,000 training and 10,000 test images of 100 classes grouped in 20 superclasses.

    Read from ``<data_dir>/cifar100/``; see :class:`CIFARDataset` for the arguments and attributes.
    ``labels`` and ``classes`` are the 100 fine classes; ``coarse_labels`` (int64 ``[N]``,
    0 .. 19) and ``coarse_classes`` the superclasses.
    """

    NAME = "CIFAR-100"
    FOLDER = "cifar100"
    ARCHIVE = "cifar-100-python.tar.gz"
    EXTRACTED = "cifar-100-python"
    SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
    """SHA-256 of ``cifar-100-python.tar.gz`` (as in Keras's ``cifar100.py``; torchvision checks its MD5
    ``eb9058c3a382ffc7106e4002c42a8d85``)."""
    TRAIN_FILES = ("train",)
    TEST_FILES = ("test",)
    META_FILE = "meta"
    LABELS = {"fine_labels": ("labels", 100), "coarse_labels": ("coarse_labels", 20)}
    NAMES = {"fine_label_names": ("classes", 100), "coarse_label_names": ("coarse_classes", 20)}
    MEAN = (0.5071, 0.4865, 0.4409)
    STD = (0.2673, 0.2564, 0.2762)

    coarse_labels: torch.Tensor
    """int64 ``[N]``: the superclass (0 .. 19) of each image."""
    coarse_classes: tuple[str, ...]
    """The 20 superclass names."""
