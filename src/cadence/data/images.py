"""What every image data set in memory shares: its folder of the data directory, its length, and normalization."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch

from cadence.data.dirs import resolve_data_dir

__all__ = ["ImageDataset"]


class ImageDataset:
    """One split of an image data set held in memory as uint8 ``images`` and int64 ``labels``.

    The base of :class:`~cadence.data.mnist.IDXImageDataset` and
    :class:`~cadence.data.cifar.CIFARDataset`; subclasses read the files and set
    :attr:`images`, :attr:`labels` and :attr:`classes`.

    Args:
        data_dir: the data directory (``--data-dir``); ``None`` means ``$CADENCE_DATA``, else
            the user cache folder (see :func:`~cadence.data.dirs.resolve_data_dir`).
        train: the training split if true, else the test split.

    Attributes:
        root: the data set's folder, ``<data_dir>/<FOLDER>``.
    """

    NAME: ClassVar[str]
    """The data set's name in messages."""
    FOLDER: ClassVar[str]
    """The folder of the data directory that holds the files."""
    MEAN: ClassVar[float | tuple[float, ...]]
    """Mean of the training pixels scaled to [0, 1]: one number, or one per channel."""
    STD: ClassVar[float | tuple[float, ...]]
    """Standard deviation of the training pixels (over all pixels, not per image), scaled like :attr:`MEAN`."""

    images: torch.Tensor
    """uint8 ``[N, H, W]`` (one channel) or ``[N, C, H, W]``, contiguous, in memory."""
    labels: torch.Tensor
    """int64 ``[N]``."""
    classes: tuple[str, ...]
    """The name of each label."""

    def __init__(self, data_dir: str | os.PathLike[str] | None, train: bool) -> None:
        self.train = train
        self.root: Path = resolve_data_dir(data_dir) / self.FOLDER

    def __len__(self) -> int:
        """The number of images."""
        return len(self.labels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, train={self.train}, size={len(self)})"

    @classmethod
    def normalize(cls, images: torch.Tensor) -> torch.Tensor:
        r"""Map a uint8 batch to float32 ``[B, C, H, W]``: $\hat x_c = (x_c / 255 - \mu_c) / \sigma_c$ per channel $c$.

        $\mu$ = :attr:`MEAN` and $\sigma$ = :attr:`STD`, the statistics of the training pixels,
        so each channel of the normalized training images has mean about 0 and standard
        deviation about 1. One-channel data sets take ``[B, H, W]`` and add the channel dim;
        others take ``[B, C, H, W]``.

        Raises:
            TypeError: ``images`` is not uint8.
            ValueError: ``images`` does not have that shape.
        """
        mean = torch.tensor(cls.MEAN, dtype=torch.float32, device=images.device).reshape(-1, 1, 1)
        std = torch.tensor(cls.STD, dtype=torch.float32, device=images.device).reshape(-1, 1, 1)
        channels = len(mean)
        if images.dtype != torch.uint8:
            raise TypeError(
                f"{cls.__name__}.normalize expects uint8 images (pixels 0 .. 255), got dtype {images.dtype}"
            )
        if channels == 1 and images.ndim == 3:
            images = images.unsqueeze(1)
        if images.ndim != 4 or images.shape[1] != channels:
            expected = "[B, H, W]" if channels == 1 else f"[B, {channels}, H, W]"
            raise ValueError(f"{cls.__name__}.normalize expects a batch {expected}, got shape {list(images.shape)}")
        return (images.to(torch.float32) / 255 - mean) / std
