"""The MNIST family: MNIST, Fashion-MNIST and Kuzushiji-MNIST, read from their standard IDX files into memory.

The three share one format (28x28 uint8 images and labels 0 .. 9 in IDX files named
``{train,t10k}-{images-idx3,labels-idx1}-ubyte``) and so one code path,
:class:`IDXImageDataset`; each subclass holds only its constants: folder, mirrors,
checksums, normalization statistics and class names.

The files live in ``<data dir>/<FOLDER>/`` under their official names, gzip-compressed
(``train-images-idx3-ubyte.gz``) or raw (``train-images-idx3-ubyte``). Missing files are
downloaded from the data set's ``MIRRORS`` and checked against the official SHA-256 in
``SHA256``. Files already on disk are validated by structure only (magic number, dims, data
length, matching counts, label range), so a subset kept in the same format reads just as well.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch

from cadence.data.download import DataNotFoundError, fetch_missing
from cadence.data.idx import DataFormatError, read_idx
from cadence.data.images import ImageDataset

__all__ = ["FashionMNIST", "IDXImageDataset", "KMNIST", "MNIST", "MNISTNotFoundError"]


class MNISTNotFoundError(DataNotFoundError):
    """Files of MNIST, or of its family (Fashion-MNIST, KMNIST), are missing and could not be downloaded.

    The message names the directory, the file names to place there and, when downloads were
    tried, each mirror with its error.
    """


class IDXImageDataset(ImageDataset):
    """One split of an MNIST-format data set held in memory: ``images`` (uint8, ``[N, 28, 28]``) and ``labels``.

    Subclasses set the class constants (:attr:`NAME`, :attr:`FOLDER`, :attr:`MIRRORS`,
    :attr:`SHA256`, :attr:`MEAN`, :attr:`STD`, :attr:`CLASSES`).

    Args:
        data_dir: the data directory (``--data-dir``); ``None`` means ``$CADENCE_DATA``, else
            the user cache folder (see :func:`~cadence.data.dirs.resolve_data_dir`). Files are
            read from ``<data_dir>/<FOLDER>/``.
        train: the training split (``train-*`` files) if true, else the test split (``t10k-*``).
        download: download missing files from :attr:`MIRRORS`; if false, a missing file is an error.

    Attributes:
        root: the folder read, ``<data_dir>/<FOLDER>``.
        images: uint8 ``[N, 28, 28]``, contiguous, in memory.
        labels: int64 ``[N]``, the classes ``0 .. NUM_CLASSES - 1``.
        classes: :attr:`CLASSES`, the name of each label.
        image_path, label_path: the files read (``.gz`` preferred when both forms exist).

    Raises:
        MNISTNotFoundError: a file is missing and could not be downloaded.
        DataFormatError: a file is not a valid IDX file of the data set, or images and labels disagree.
    """

    MEAN: ClassVar[float]
    STD: ClassVar[float]
    MIRRORS: ClassVar[tuple[str, ...]]
    """Base URLs tried in turn for a missing file."""
    SHA256: ClassVar[dict[str, str]]
    """SHA-256 of each official gzip file, checked on download only."""
    CLASSES: ClassVar[tuple[str, ...]]
    """The name of each label."""

    IMAGE_SIZE: ClassVar[int] = 28
    """Images are ``IMAGE_SIZE x IMAGE_SIZE`` pixels."""
    NUM_CLASSES: ClassVar[int] = 10
    """Labels are ``0 .. NUM_CLASSES - 1``."""
    IMAGES_MAGIC: ClassVar[int] = 2051
    """IDX magic number of the image files: uint8, 3 dims."""
    LABELS_MAGIC: ClassVar[int] = 2049
    """IDX magic number of the label files: uint8, 1 dim."""

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, train: bool = True, download: bool = True
    ) -> None:
        super().__init__(data_dir, train)
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
        self.classes = self.CLASSES
        self.image_path = image_path
        self.label_path = label_path

    def _find_or_download(self, stems: tuple[str, str], download: bool) -> tuple[Path, Path]:
        """The path of each file ``<stem>.gz`` or ``<stem>`` in :attr:`root`, downloading missing ones as ``.gz``."""
        found = [self._find(stem) for stem in stems]
        missing = [f"{stem}.gz" for stem, path in zip(stems, found) if path is None]
        if missing:
            fetch_missing(
                self.NAME, self.root, missing, self.MIRRORS, self.SHA256,
                allowed=download, also=" (or uncompressed, without .gz)", error=MNISTNotFoundError,
            )
        images, labels = (path or self.root / f"{stem}.gz" for stem, path in zip(stems, found))
        return images, labels

    def _find(self, stem: str) -> Path | None:
        """``<root>/<stem>.gz`` if it exists, else ``<root>/<stem>`` if it exists, else ``None``."""
        for path in (self.root / f"{stem}.gz", self.root / stem):
            if path.is_file():
                return path
        return None


class MNIST(IDXImageDataset):
    """MNIST handwritten digits (LeCun, Cortes and Burges, 1998): 60,000 training and 10,000 test images.

    Read from ``<data_dir>/mnist/``; see :class:`IDXImageDataset` for the arguments and attributes.
    """

    NAME = "MNIST"
    FOLDER = "mnist"
    MEAN = 0.1307
    """Mean pixel value of the MNIST training images, scaled to [0, 1]."""
    STD = 0.3081
    """Standard deviation of the MNIST training pixels, scaled to [0, 1]."""
    MIRRORS = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    """Base URLs tried in turn for a missing file: torchvision's two mirrors and TensorFlow's."""
    SHA256 = {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }
    """SHA-256 of the official gzip files (as in TensorFlow Datasets' ``url_checksums/mnist.txt``),
    checked on download only."""
    CLASSES = tuple(str(digit) for digit in range(10))


class FashionMNIST(IDXImageDataset):
    """Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): Zalando's article images in MNIST's format and sizes.

    Read from ``<data_dir>/fashion_mnist/``; see :class:`IDXImageDataset` for the arguments and attributes.
    """

    NAME = "Fashion-MNIST"
    FOLDER = "fashion_mnist"
    MEAN = 0.2860
    """Mean pixel value of the Fashion-MNIST training images, scaled to [0, 1]."""
    STD = 0.3530
    """Standard deviation of the Fashion-MNIST training pixels, scaled to [0, 1]."""
    MIRRORS = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    )
    """Base URLs tried in turn: the authors' bucket (used by torchvision and TensorFlow Datasets), then Keras's copy."""
    SHA256 = {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    }
    """SHA-256 of the official gzip files (TensorFlow Datasets' ``url_checksums/fashion_mnist.txt``;
    Keras's ``fashion_mnist.py`` lists the same), checked on download only."""
    CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class KMNIST(IDXImageDataset):
    """Kuzushiji-MNIST (Clanuwat et al., 2018): ten cursive Japanese (Hiragana) characters in MNIST's format.

    Read from ``<data_dir>/kmnist/``; see :class:`IDXImageDataset` for the arguments and attributes.
    """

    NAME = "KMNIST"
    FOLDER = "kmnist"
    MEAN = 0.1918
    """Mean pixel value of the KMNIST training images, scaled to [0, 1]."""
    STD = 0.3483
    """Standard deviation of the KMNIST training pixels, scaled to [0, 1]."""
    MIRRORS = ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
    """The authors' (ROIS-DS CODH) server, the one mirror torchvision and TensorFlow Datasets use."""
    SHA256 = {
        "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
        "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
        "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
        "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    }
    """SHA-256 of the official gzip files (TensorFlow Datasets' ``url_checksums/kmnist.txt``), checked on
    download only."""
    CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
