"""MNIST handwritten digits (LeCun, Cortes and Burges), read from the standard IDX files into memory.

The files live in ``<data dir>/mnist/`` under their official names, gzip-compressed
(``train-images-idx3-ubyte.gz``) or raw (``train-images-idx3-ubyte``). Missing files are
downloaded from the mirrors in :attr:`MNIST.MIRRORS` and checked against the official
SHA-256 in :attr:`MNIST.SHA256`. Files already on disk are validated by structure only
(magic number, dims, data length, matching counts, label range), so a subset of MNIST kept
in the same format reads just as well.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch

from cadence.data.dirs import resolve_data_dir
from cadence.data.download import DownloadError
from cadence.data.download import download as download_file
from cadence.data.idx import DataFormatError, read_idx

__all__ = ["MNIST", "MNISTNotFoundError"]


class MNISTNotFoundError(FileNotFoundError):
    """MNIST files are missing from the data directory and could not be downloaded.

    The message names the directory, the file names to place there and, when downloads were
    tried, each mirror with its error.
    """


class MNIST:
    """One split of MNIST held in memory: ``images`` (uint8, ``[N, 28, 28]``) and ``labels`` (int64, ``[N]``).

    Args:
        data_dir: the data directory (``--data-dir``); ``None`` means ``$CADENCE_DATA``, else
            the user cache folder (see :func:`~cadence.data.dirs.resolve_data_dir`). Files are
            read from ``<data_dir>/mnist/``.
        train: the training split (``train-*`` files) if true, else the test split (``t10k-*``).
        download: download missing files from :attr:`MIRRORS`; if false, a missing file is an error.

    Attributes:
        root: the folder read, ``<data_dir>/mnist``.
        images: uint8 ``[N, 28, 28]``, contiguous, in memory.
        labels: int64 ``[N]``, the digits 0 .. 9.
        image_path, label_path: the files read (``.gz`` preferred when both forms exist).

    Raises:
        MNISTNotFoundError: a file is missing and could not be downloaded.
        DataFormatError: a file is not a valid MNIST IDX file, or images and labels disagree.
    """

    MEAN: ClassVar[float] = 0.1307
    """Mean pixel value of the MNIST training images, scaled to [0, 1]."""
    STD: ClassVar[float] = 0.3081
    """Standard deviation of the MNIST training pixels, scaled to [0, 1]."""

    IMAGE_SIZE: ClassVar[int] = 28
    """Images are ``IMAGE_SIZE x IMAGE_SIZE`` pixels."""
    NUM_CLASSES: ClassVar[int] = 10
    """Labels are the digits ``0 .. NUM_CLASSES - 1``."""
    IMAGES_MAGIC: ClassVar[int] = 2051
    """IDX magic number of the image files: uint8, 3 dims."""
    LABELS_MAGIC: ClassVar[int] = 2049
    """IDX magic number of the label files: uint8, 1 dim."""

    MIRRORS: ClassVar[tuple[str, ...]] = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    """Base URLs tried in turn for a missing file: torchvision's two mirrors and TensorFlow's."""

    SHA256: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }
    """SHA-256 of the official gzip files (as in TensorFlow Datasets' ``url_checksums/mnist.txt``),
    checked on download only."""

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, train: bool = True, download: bool = True
    ) -> None:
        self.train = train
        self.root: Path = resolve_data_dir(data_dir) / "mnist"
        split = "train" if train else "t10k"
        stems = (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte")
        image_path, label_path = self._find_or_download(stems, download)

        dims = (None, self.IMAGE_SIZE, self.IMAGE_SIZE)
        self.images: torch.Tensor = read_idx(image_path, expected_magic=self.IMAGES_MAGIC, expected_dims=dims)
        labels = read_idx(label_path, expected_magic=self.LABELS_MAGIC)
        if len(self.images) != len(labels):
            raise DataFormatError(
                label_path,
                f"{len(labels)} labels, but {image_path} holds {len(self.images)} images: expected one label per image",
            )
        if len(labels) and int(labels.max()) >= self.NUM_CLASSES:
            index = int(labels.argmax())
            raise DataFormatError(
                label_path, f"label {int(labels[index])} at index {index}, expected 0 .. {self.NUM_CLASSES - 1}"
            )
        self.labels: torch.Tensor = labels.long()
        self.image_path = image_path
        self.label_path = label_path

    def __len__(self) -> int:
        """The number of digits."""
        return len(self.labels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, train={self.train}, size={len(self)})"

    @classmethod
    def normalize(cls, images: torch.Tensor) -> torch.Tensor:
        r"""Map a uint8 batch ``[B, 28, 28]`` to float32 ``[B, 1, 28, 28]``: $\hat x = (x / 255 - \mu) / \sigma$.

        $\mu$ = :attr:`MEAN` and $\sigma$ = :attr:`STD`, the statistics of the training pixels,
        so normalized training images have mean about 0 and standard deviation about 1.

        Raises:
            TypeError: ``images`` is not uint8.
            ValueError: ``images`` is not 3-D.
        """
        if images.dtype != torch.uint8:
            raise TypeError(f"MNIST.normalize expects uint8 images (pixels 0 .. 255), got dtype {images.dtype}")
        if images.ndim != 3:
            raise ValueError(f"MNIST.normalize expects a batch [B, H, W], got shape {list(images.shape)}")
        x = images.unsqueeze(1).to(torch.float32)
        return (x / 255 - cls.MEAN) / cls.STD

    def _find_or_download(self, stems: tuple[str, ...], download: bool) -> list[Path]:
        """The path of each file ``<stem>.gz`` or ``<stem>`` in :attr:`root`, downloading missing ones."""
        found = {stem: self._find(stem) for stem in stems}
        missing = [stem for stem, path in found.items() if path is None]
        how = "download=False, so no download was tried"
        if missing and download:
            for stem in missing:
                name = f"{stem}.gz"
                urls = [mirror + name for mirror in self.MIRRORS]
                try:
                    found[stem] = download_file(urls, self.root / name, self.SHA256[name])
                except DownloadError as error:
                    how = str(error)
                    break
        still_missing = [stem for stem in stems if found[stem] is None]
        if still_missing:
            names = ", ".join(f"{stem}.gz" for stem in still_missing)
            raw = ", ".join(still_missing)
            raise MNISTNotFoundError(
                f"MNIST files missing from {self.root}: place {names} there (or the uncompressed {raw}), "
                f"or point the data directory (--data-dir or $CADENCE_DATA) at a folder whose mnist/ holds them; {how}"
            )
        return [path for path in found.values() if path is not None]

    def _find(self, stem: str) -> Path | None:
        """``<root>/<stem>.gz`` if it exists, else ``<root>/<stem>`` if it exists, else ``None``."""
        for path in (self.root / f"{stem}.gz", self.root / stem):
            if path.is_file():
                return path
        return None
