"""ImageDataset: the folder rule, len and repr, and normalization for one and several channels."""

from __future__ import annotations

import pytest
import torch

from cadence.data.dirs import ENV_VAR
from cadence.data.images import ImageDataset


class Gray(ImageDataset):
    NAME, FOLDER, MEAN, STD = "Gray", "gray", 0.25, 0.5


class TwoChannels(ImageDataset):
    NAME, FOLDER, MEAN, STD = "Two", "two", (0.2, 0.6), (0.1, 0.3)


def batch(*shape: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_folder_len_and_repr(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    dataset = Gray(None, train=False)
    dataset.labels = torch.arange(7)
    assert dataset.root == tmp_path.resolve() / "gray" and len(dataset) == 7
    assert repr(dataset) == f"Gray(root={str(tmp_path.resolve() / 'gray')!r}, train=False, size=7)"


def test_one_channel_takes_b_h_w_or_b_1_h_w():
    x = batch(3, 5, 4)
    expected = ((x.double() / 255 - 0.25) / 0.5).float().unsqueeze(1)
    torch.testing.assert_close(Gray.normalize(x), expected)
    torch.testing.assert_close(Gray.normalize(x.unsqueeze(1)), expected)


def test_each_channel_has_its_own_statistics():
    x = batch(3, 2, 5, 4)
    mean, std = torch.tensor([0.2, 0.6]).view(1, 2, 1, 1), torch.tensor([0.1, 0.3]).view(1, 2, 1, 1)
    torch.testing.assert_close(TwoChannels.normalize(x), ((x.double() / 255 - mean) / std).float())


@pytest.mark.parametrize(
    ("dataset", "x", "error", "match"),
    [
        (Gray, batch(3, 5, 4).float(), TypeError, r"Gray.normalize expects uint8 images .* got dtype torch.float32"),
        (Gray, batch(5, 4), ValueError, r"Gray.normalize expects a batch \[B, H, W\], got shape \[5, 4\]"),
        (Gray, batch(3, 2, 5, 4), ValueError, r"expects a batch \[B, H, W\], got shape \[3, 2, 5, 4\]"),
        (TwoChannels, batch(3, 5, 4), ValueError, r"TwoChannels.normalize expects a batch \[B, 2, H, W\]"),
    ],
)
def test_bad_batches(dataset, x, error, match):
    with pytest.raises(error, match=match):
        dataset.normalize(x)
