"""Tests of :mod:`cadence.nn.norm.instance_norm` against ``torch.nn.InstanceNorm1d/2d/3d`` and float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.nn.norm import InstanceNorm

from .conftest import PATHS, TOL, lockstep, pair, standardized64

SHAPES = {"1d": ((4, 6, 10), nn.InstanceNorm1d), "2d": ((4, 6, 5, 7), nn.InstanceNorm2d),
          "3d": ((2, 6, 2, 4, 3), nn.InstanceNorm3d)}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("track", [True, False], ids=["tracked", "untracked"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_in_train_and_eval(shape, track, affine, path):
    size, torch_cls = SHAPES[shape]
    kwargs = {"affine": affine, "track_running_stats": track, "momentum": 0.3}
    ours, theirs = pair(InstanceNorm(6, reference=PATHS[path], **kwargs), torch_cls(6, **kwargs))
    lockstep(ours, theirs, lambda i: torch.randn(size), buffers=("running_mean", "running_var") if track else ())
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    if track:
        assert ours.num_batches_tracked == 4


@pytest.mark.parametrize("path", PATHS)
def test_normalizes_each_channel_of_each_sample(path):
    x = torch.randn(3, 6, 4, 5) * torch.arange(1.0, 7.0).view(1, 6, 1, 1) + torch.randn(3, 6, 1, 1) * 10
    y = InstanceNorm(6, affine=False, reference=PATHS[path])(x)
    torch.testing.assert_close(y.double(), standardized64(x, (2, 3)), **TOL)


def test_reference_and_native_paths_agree():
    native, reference = pair(InstanceNorm(6, track_running_stats=True),
                             InstanceNorm(6, track_running_stats=True, reference=True))
    lockstep(native, reference, lambda i: torch.randn(4, 6, 5, 7),
             buffers=("running_mean", "running_var", "num_batches_tracked"))


@pytest.mark.parametrize("path", PATHS)
def test_momentum_none_is_the_cumulative_average(path):
    norm = InstanceNorm(6, momentum=None, track_running_stats=True, reference=PATHS[path])
    batches = [torch.randn(4, 6, 5) * (i + 1) + i for i in range(3)]
    for x in batches:
        norm(x)
    # The plain mean over the batches of their instances' means and unbiased variances
    torch.testing.assert_close(norm.running_mean, torch.stack([x.mean(dim=(0, 2)) for x in batches]).mean(0), **TOL)
    torch.testing.assert_close(norm.running_var, torch.stack([x.var(dim=2).mean(0) for x in batches]).mean(0), **TOL)


@pytest.mark.parametrize("path", PATHS)
def test_one_spatial_value_needs_running_estimates(path):
    norm = InstanceNorm(6, track_running_stats=True, reference=PATHS[path])
    with pytest.raises(ValueError, match=r"InstanceNorm\(6\): input of shape \[4, 6, 1\] has 1 spatial value per "
                                         r"instance; instance statistics \(training, or track_running_stats=False\)"):
        norm(torch.randn(4, 6, 1))
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        nn.InstanceNorm1d(6)(torch.randn(4, 6, 1))
    norm.eval()
    assert norm(torch.randn(4, 6, 1)).shape == (4, 6, 1)


@pytest.mark.parametrize("path", PATHS)
def test_empty_batch_leaves_estimates(path):
    norm = InstanceNorm(6, track_running_stats=True, reference=PATHS[path])
    x = torch.randn(0, 6, 3, 3, requires_grad=True)
    y = norm(x)
    y.sum().backward()
    assert y.shape == (0, 6, 3, 3) and x.grad.shape == x.shape
    assert (norm.running_mean == 0).all() and (norm.running_var == 1).all()


@pytest.mark.parametrize("shape, match", [
    ((4, 6), r"InstanceNorm\(6\): input of shape \[4, 6\] has rank 2; expected \[batch, 6, \*spatial\] of rank >= 3"),
    ((4, 5, 3), r"InstanceNorm\(6\): input of shape \[4, 5, 3\] has 5 channels in dimension 1; expected 6"),
])
def test_bad_inputs(shape, match):
    with pytest.raises(ValueError, match=match):
        InstanceNorm(6)(torch.randn(shape))


@pytest.mark.parametrize("kwargs, match", [
    ({"channels": -2}, r"channels=-2 is out of range; expected channels >= 1"),
    ({"channels": 2, "eps": 0}, r"eps=0 is out of range; expected eps > 0"),
    ({"channels": 2, "momentum": 1.5}, r"momentum=1.5 is out of range; expected momentum in \[0, 1\]"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=r"InstanceNorm: " + match):
        InstanceNorm(**kwargs)


def test_reset_and_repr():
    norm = InstanceNorm(3, track_running_stats=True)
    norm(torch.randn(2, 3, 4) + 5)
    norm.reset_parameters()
    assert norm.num_batches_tracked == 0 and (norm.running_mean == 0).all() and (norm.running_var == 1).all()
    assert repr(norm) == ("InstanceNorm(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, "
                          "reference=False)")
    assert InstanceNorm(3).state_dict().keys() == {"weight", "bias"}
