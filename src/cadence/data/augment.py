"""Augmentation of whole batches: random crops with padding and horizontal flips as tensor operations.

The standard CIFAR augmentation (He et al., 2016, "Deep Residual Learning", section 4.2: "4
pixels are padded on each side, and a 32x32 crop is randomly sampled from the padded image
or its horizontal flip") is usually applied image by image in a ``Dataset``. Here each
operation draws its random numbers for the whole batch at once and applies them with one
gather, so augmenting a batch costs a few tensor operations instead of a
Python loop over its images.

Every operation is a callable ``(images, generator) -> images`` over a batch ``[B, ..., H, W]``
(any dtype; uint8 before normalization keeps the padding black, as torchvision's
``RandomCrop(32, padding=4)`` does). It draws from ``generator`` only, so the same generator
state gives the same augmented batch: :class:`~cadence.data.loader.InMemoryLoader` seeds one
per batch from ``(seed, epoch, rank, batch)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cadence.checks import check_number

__all__ = ["Augment", "Compose", "RandomCrop", "RandomHorizontalFlip"]

Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
"""An augmentation: ``(images [B, ..., H, W], generator) -> images`` of the same shape."""


def _check_batch(images: torch.Tensor, who: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim < 3:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{who} expects a batch of images [B, ..., H, W] (at least 3 dims), got {shape}")


class RandomCrop:
    r"""Pad each image by ``padding`` pixels of ``fill`` on every side, then crop it back to ``H x W`` at random.

    For a batch ``x`` of ``H x W`` images padded to ``x'`` of ``(H + 2p) x (W + 2p)``, image
    $b$ gets an offset $(\delta^y_b, \delta^x_b)$ drawn uniformly from $\{0, \dots, 2p\}^2$ and

    $$y_{b, \dots, i, j} = x'_{b, \dots, \delta^y_b + i, \delta^x_b + j},$$

    so every image moves by up to $p$ pixels in each direction, with ``fill`` in the uncovered
    border; offset $(p, p)$ is the identity. All images are cropped by one gather from a
    strided view of every possible crop (``unfold``), which copies only the output.

    Args:
        padding: ``p``, the pixels added on each side (an integer >= 0).
        fill: the value of the padding pixels.
    """

    def __init__(self, padding: int = 4, fill: float = 0) -> None:
        self.padding = check_number("RandomCrop", "padding", padding, low=0, integer=True)
        self.fill = fill

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding}, fill={self.fill})"

    def offsets(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The offsets $(\delta^y, \delta^x)$ of a batch, each int64 ``[batch_size]`` in ``0 .. 2 * padding``."""
        dy, dx = torch.randint(0, 2 * self.padding + 1, (2, batch_size), generator=generator)
        return dy, dx

    def crop(self, images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """Crop ``images`` (``[B, ..., H, W]``) at the offsets ``dy``, ``dx`` (``[B]`` each) of the padded images."""
        _check_batch(images, "RandomCrop")
        p, (h, w) = self.padding, images.shape[-2:]
        padded = F.pad(images.reshape(len(images), -1, h, w), (p, p, p, p), value=self.fill)
        # windows[b, k, y, x] is the H x W crop of padded image b, channel k, at offset (y, x): a view, no copy.
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)
        batch = torch.arange(len(images), device=images.device)
        return windows[batch, :, dy.to(images.device), dx.to(images.device)].reshape(images.shape)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``images`` randomly cropped, with offsets from :meth:`offsets` (``generator``, else torch's global one)."""
        return self.crop(images, *self.offsets(len(images), generator))


class RandomHorizontalFlip:
    r"""Mirror each image left to right with probability ``p``.

    One uniform draw $u_b$ per image decides: image $b$ is flipped when $u_b < p$, and

    $$y_{b, \dots, i, j} = x_{b, \dots, i, c_b(j)}, \quad c_b(j) = W - 1 - j \text{ if flipped, else } j,$$

    one gather of the columns for the whole batch.

    Args:
        p: the probability of a flip, in [0, 1].
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_number("RandomHorizontalFlip", "p", p, low=0, high=1)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"

    def flips(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Which images of a batch are flipped: bool ``[batch_size]``."""
        return torch.rand(batch_size, generator=generator) < self.p

    def flip(self, images: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """``images`` (``[B, ..., H, W]``) with the images where ``flips`` (``[B]``) is true mirrored."""
        _check_batch(images, "RandomHorizontalFlip")
        w = images.shape[-1]
        j = torch.arange(w, device=images.device)
        columns = torch.where(flips.to(images.device)[:, None], j.flip(0), j)  # c_b(j), [B, W]
        return images.gather(-1, columns.view(len(images), *[1] * (images.ndim - 2), w).expand(images.shape))

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``images`` randomly flipped, with the draws of :meth:`flips` (``generator``, else torch's global one)."""
        return self.flip(images, self.flips(len(images), generator))


class Compose:
    """Apply augmentations in turn, all from one generator: ``Compose(RandomCrop(4), RandomHorizontalFlip())``."""

    def __init__(self, *augments: Augment) -> None:
        for augment in augments:
            if not callable(augment):
                raise TypeError(f"Compose takes augmentations (callables), got {type(augment).__name__}")
        self.augments = augments

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.augments))})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``images`` passed through every augmentation in order."""
        for augment in self.augments:
            images = augment(images, generator)
        return images
