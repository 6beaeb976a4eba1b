"""Batched augmentation: RandomCrop and RandomHorizontalFlip equal a per-image reference, seeded, and validated."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cadence.data import Compose, RandomCrop, RandomHorizontalFlip


def images(shape: tuple[int, ...], dtype: torch.dtype = torch.uint8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=generator).to(dtype)


def crop_reference(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, padding: int, fill: float) -> torch.Tensor:
    """One image at a time: pad it, then slice the H x W window at its offset."""
    h, w = x.shape[-2:]
    out = []
    for image, y0, x0 in zip(x, dy.tolist(), dx.tolist()):
        padded = F.pad(image, (padding,) * 4, value=fill)
        out.append(padded[..., y0 : y0 + h, x0 : x0 + w])
    return torch.stack(out)


@pytest.mark.parametrize(
    ("shape", "dtype", "padding", "fill"),
    [
        ((64, 3, 32, 32), torch.uint8, 4, 0),
        ((64, 28, 28), torch.float32, 2, 0.5),
        ((16, 2, 3, 9, 13), torch.float64, 3, -1.0),
        ((8, 1, 5, 5), torch.uint8, 0, 0),
    ],
    ids=["cifar-uint8", "mnist-3d-float", "5d-non-square", "no-padding"],
)
def test_random_crop_equals_per_image_reference(shape, dtype, padding, fill):
    x = images(shape, dtype)
    crop = RandomCrop(padding, fill=fill)
    dy, dx = crop.offsets(len(x), torch.Generator().manual_seed(1))
    out = crop(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    assert torch.equal(out, crop_reference(x, dy, dx, padding, fill))
    if padding == 0:
        assert torch.equal(out, x)


def test_random_crop_offsets_cover_every_shift_and_centre_is_identity():
    crop = RandomCrop(4)
    dy, dx = crop.offsets(20_000, torch.Generator().manual_seed(0))
    assert dy.min() == dx.min() == 0 and dy.max() == dx.max() == 8
    assert len(set(zip(dy.tolist(), dx.tolist()))) == 81
    assert abs(dy.float().mean().item() - 4) < 0.1 and abs(dx.float().mean().item() - 4) < 0.1
    x = images((5, 3, 32, 32))
    centre = torch.full((5,), 4)
    assert torch.equal(crop.crop(x, centre, centre), x)
    shifted = crop.crop(x, torch.full((5,), 6), torch.full((5,), 3))  # down 2, left 1
    assert torch.equal(shifted[..., :-2, 1:], x[..., 2:, :-1]) and (shifted[..., -2:, :] == 0).all()


def flip_reference(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    return torch.stack([image.flip(-1) if flip else image for image, flip in zip(x, flips.tolist())])


@pytest.mark.parametrize("shape", [(64, 3, 32, 32), (64, 28, 28)], ids=["4d", "3d"])
def test_horizontal_flip_equals_per_image_reference(shape):
    x = images(shape)
    flip = RandomHorizontalFlip()
    flips = flip.flips(len(x), torch.Generator().manual_seed(2))
    out = flip(x, torch.Generator().manual_seed(2))
    assert torch.equal(out, flip_reference(x, flips))
    assert 0 < flips.sum() < len(x)


def test_flip_probability():
    x = images((2000, 1, 2, 2))
    assert torch.equal(RandomHorizontalFlip(0)(x), x)
    assert torch.equal(RandomHorizontalFlip(1)(x), x.flip(-1))
    flips = RandomHorizontalFlip(0.3).flips(20_000, torch.Generator().manual_seed(0))
    assert abs(flips.float().mean().item() - 0.3) < 0.02


def test_same_generator_seed_same_batch_and_global_rng_when_none():
    augment = Compose(RandomCrop(4), RandomHorizontalFlip())
    x = images((32, 3, 32, 32))
    a = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(4)))
    torch.manual_seed(5)
    b = augment(x)
    torch.manual_seed(5)
    assert torch.equal(b, augment(x))


def test_compose_applies_in_order_from_one_generator():
    crop, flip = RandomCrop(2), RandomHorizontalFlip()
    x = images((16, 3, 8, 8))
    generator = torch.Generator().manual_seed(6)
    dy, dx = crop.offsets(16, generator)
    expected = flip_reference(crop_reference(x, dy, dx, 2, 0), flip.flips(16, generator))
    assert torch.equal(Compose(crop, flip)(x, torch.Generator().manual_seed(6)), expected)
    assert repr(Compose(crop, flip)) == "Compose(RandomCrop(padding=2, fill=0), RandomHorizontalFlip(p=0.5))"


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: RandomCrop(-1), ValueError, "padding=-1 is out of range; expected padding >= 0"),
        (lambda: RandomCrop(2.5), TypeError, "padding=2.5 is a float; expected an integer"),
        (lambda: RandomCrop(True), TypeError, "padding=True is a bool; expected an integer"),
        (lambda: RandomHorizontalFlip(1.5), ValueError, r"p=1.5 is out of range; expected p in \[0, 1\]"),
        (lambda: Compose(RandomCrop(), "flip"), TypeError, "Compose takes augmentations .* got str"),
        (lambda: RandomCrop()(torch.zeros(28, 28)), ValueError, r"RandomCrop expects a batch .* got \[28, 28\]"),
        (lambda: RandomHorizontalFlip()(torch.zeros(3)), ValueError, r"RandomHorizontalFlip expects .* got \[3\]"),
    ],
)
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()
