"""Tests of :mod:`cadence.nn.norm.batch_channel_norm` against the paper's equations written here in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.nn.norm import BatchChannelNorm, ChannelNorm, EstimatedBatchNorm

from .conftest import PATHS, lockstep, pair

F64 = torch.float64
#: Inputs of 12 channels: 2 groups of 6 hold enough values for well-conditioned statistics in float32.
SHAPES = {"features": (16, 12), "sequence": (4, 12, 10), "images": (4, 12, 5, 7)}
R = 0.3


def per_channel(t: torch.Tensor, rank: int) -> torch.Tensor:
    return t.view(1, -1, *([1] * (rank - 2)))


class PaperEstimatedBatchNorm(nn.Module):
    """Estimated batch normalization, Section 5 of Qiao et al. (as labml_nn implements it), in float64."""

    def __init__(self, C: int, r: float = R, eps: float = 1e-5):
        super().__init__()
        self.r, self.eps = r, eps
        self.weight = nn.Parameter(torch.ones(C, dtype=F64))
        self.bias = nn.Parameter(torch.zeros(C, dtype=F64))
        self.register_buffer("running_mean", torch.zeros(C, dtype=F64))
        self.register_buffer("running_var", torch.ones(C, dtype=F64))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        X, dims, n = x.double(), [0, *range(2, x.dim())], x.dim()
        if self.training:
            self.num_batches_tracked += 1
            with torch.no_grad():
                mu = X.mean(dim=dims)
                sigma2 = ((X - per_channel(mu, n)) ** 2).mean(dim=dims)
                self.running_mean.copy_((1 - self.r) * self.running_mean + self.r * mu)
                self.running_var.copy_((1 - self.r) * self.running_var + self.r * sigma2)
        x_hat = (X - per_channel(self.running_mean, n)) / torch.sqrt(per_channel(self.running_var, n) + self.eps)
        return (per_channel(self.weight, n) * x_hat + per_channel(self.bias, n)).to(x.dtype)


class PaperChannelNorm(nn.Module):
    """Group normalization with a scale and shift per group, in float64."""

    def __init__(self, C: int, G: int, eps: float = 1e-5):
        super().__init__()
        self.G, self.eps = G, eps
        self.weight = nn.Parameter(torch.ones(G, dtype=F64))
        self.bias = nn.Parameter(torch.zeros(G, dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        X = x.double().reshape(x.shape[0], self.G, -1)
        mu = X.mean(dim=-1, keepdim=True)
        sigma2 = ((X - mu) ** 2).mean(dim=-1, keepdim=True)
        y = self.weight.view(1, -1, 1) * (X - mu) / torch.sqrt(sigma2 + self.eps) + self.bias.view(1, -1, 1)
        return y.reshape(x.shape).to(x.dtype)


class PaperBatchChannelNorm(nn.Module):
    """$\\mathrm{CN}(\\mathrm{BN}(x))$, with torch's own batch normalization (in float64) when not estimated."""

    def __init__(self, C: int, G: int, estimate: bool, rank: int):
        super().__init__()
        if estimate:
            self.batch_norm = PaperEstimatedBatchNorm(C)
        else:
            self.batch_norm = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(C, momentum=R, dtype=F64)
        self.channel_norm = PaperChannelNorm(C, G)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_norm(self.batch_norm(x.double())).to(x.dtype)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_estimated_batch_norm_is_the_papers(shape, path):
    ours, theirs = pair(EstimatedBatchNorm(12, momentum=R, reference=PATHS[path]), PaperEstimatedBatchNorm(12))
    lockstep(ours, theirs, lambda i: torch.randn(SHAPES[shape]), buffers=("running_mean", "running_var",
                                                                          "num_batches_tracked"))


@pytest.mark.parametrize("path", PATHS)
def test_estimated_batch_norm_normalizes_with_its_estimates_in_training(path):
    ebn = EstimatedBatchNorm(3, momentum=0.5, affine=False, reference=PATHS[path])
    x = torch.randn(64, 3, 4) * 2 + 6
    y = ebn(x)
    # The estimates moved halfway from (0, 1) to the batch's (about 6 and 4), and the output's mean is
    # not 0 (as with the batch's statistics) but about (6 - 3) / sqrt(2.5).
    torch.testing.assert_close(ebn.running_mean, x.mean(dim=(0, 2)) / 2)
    torch.testing.assert_close(ebn.running_var, (1 + x.var(dim=(0, 2), correction=0)) / 2)
    expected_mean = (x.mean(dim=(0, 2)) - ebn.running_mean) / torch.sqrt(ebn.running_var + 1e-5)
    torch.testing.assert_close(y.mean(dim=(0, 2)), expected_mean)
    assert (y.mean(dim=(0, 2)) > 1.5).all()


@pytest.mark.parametrize("path", PATHS)
def test_estimated_batch_norm_takes_micro_batches_of_one(path):
    ours, theirs = pair(EstimatedBatchNorm(6, momentum=R, reference=PATHS[path]), PaperEstimatedBatchNorm(6))
    lockstep(ours, theirs, lambda i: torch.randn(1, 6))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_channel_norm_is_the_papers(shape, path):
    ours, theirs = pair(ChannelNorm(12, 2, reference=PATHS[path]), PaperChannelNorm(12, 2))
    lockstep(ours, theirs, lambda i: torch.randn(SHAPES[shape]), buffers=())


@pytest.mark.parametrize("path", PATHS)
def test_channel_norm_takes_channels_last_inputs(path):
    ours, theirs = pair(ChannelNorm(6, 2, reference=PATHS[path]), PaperChannelNorm(6, 2))
    lockstep(ours, theirs, lambda i: torch.randn(4, 6, 5, 7).contiguous(memory_format=torch.channels_last),
             buffers=())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("estimate", [True, False], ids=["estimated", "batch-stats"])
@pytest.mark.parametrize("shape", ["features", "images"])
def test_batch_channel_norm_is_the_papers(shape, estimate, path):
    ours = BatchChannelNorm(12, 2, momentum=R, estimate=estimate, reference=PATHS[path])
    ours, theirs = pair(ours, PaperBatchChannelNorm(12, 2, estimate, len(SHAPES[shape])))
    lockstep(ours, theirs, lambda i: torch.randn(SHAPES[shape]), buffers=())
    for name, buffer in theirs.batch_norm.named_buffers():
        torch.testing.assert_close(getattr(ours.batch_norm, name), buffer, check_dtype=False)
    assert ours.state_dict().keys() == theirs.state_dict().keys()


def test_reference_and_native_paths_agree():
    native, reference = pair(BatchChannelNorm(6, 3), BatchChannelNorm(6, 3, reference=True))
    lockstep(native, reference, lambda i: torch.randn(2, 6, 5, 7), buffers=())
    torch.testing.assert_close(native.state_dict(), reference.state_dict())


@pytest.mark.parametrize("make, match", [
    (lambda: ChannelNorm(6, 4), r"ChannelNorm: groups=4 does not divide channels=6; expected a divisor of 6"),
    (lambda: BatchChannelNorm(6, 5), r"ChannelNorm: groups=5 does not divide channels=6"),
    (lambda: BatchChannelNorm(6, 0), r"ChannelNorm: groups=0 is out of range; expected groups >= 1"),
    (lambda: EstimatedBatchNorm(6, momentum=2), r"EstimatedBatchNorm: momentum=2 is out of range; expected momentum in \[0, 1\]"),
    (lambda: EstimatedBatchNorm(0), r"EstimatedBatchNorm: channels=0 is out of range; expected channels >= 1"),
    (lambda: ChannelNorm(6, 2, eps=-1.0), r"ChannelNorm: eps=-1.0 is out of range; expected eps > 0"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer, match", [
    (EstimatedBatchNorm(6), r"EstimatedBatchNorm\(6\): input of shape \[4, 5, 3\] has 5 channels in dimension 1"),
    (ChannelNorm(6, 2), r"ChannelNorm\(6, 2\): input of shape \[4, 5, 3\] has 5 channels in dimension 1"),
    (BatchChannelNorm(6, 2), r"EstimatedBatchNorm\(6\): input of shape \[4, 5, 3\]"),
])
def test_bad_inputs(layer, match):
    with pytest.raises(ValueError, match=match):
        layer(torch.randn(4, 5, 3))


def test_reset_and_repr():
    ebn = EstimatedBatchNorm(3, reference=True)
    ebn(torch.randn(4, 3) + 3)
    ebn.reset_parameters()
    assert (ebn.running_mean == 0).all() and (ebn.running_var == 1).all() and ebn.num_batches_tracked == 0
    assert repr(ebn) == ("EstimatedBatchNorm(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, "
                         "reference=True)")
    # A torch batch normalization's state dict loads.
    ebn.load_state_dict(nn.BatchNorm1d(3).state_dict())
    cn = ChannelNorm(4, 2)
    with torch.no_grad():
        cn.weight.fill_(2)
    cn.reset_parameters()
    assert (cn.weight == 1).all() and cn.weight.shape == (2,)
    assert repr(cn) == "ChannelNorm(4, 2, eps=1e-05, affine=True, reference=False)"
