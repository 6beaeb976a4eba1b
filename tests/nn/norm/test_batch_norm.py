"""Tests of :mod:`cadence.nn.norm.batch_norm` against ``torch.nn.BatchNorm1d/2d/3d`` and float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.nn.norm import BatchNorm

from .conftest import PATHS, TOL, assert_close, far_from_zero, lockstep, pair, standardized64, step

#: An input shape for each of torch's layers: ``[B, C]`` and ``[B, C, L]`` (1d), ``[B, C, H, W]`` (2d), 5-D (3d).
SHAPES = {
    "1d-features": ((32, 6), nn.BatchNorm1d),
    "1d-sequence": ((8, 6, 10), nn.BatchNorm1d),
    "2d": ((4, 6, 5, 7), nn.BatchNorm2d),
    "3d": ((3, 6, 2, 4, 3), nn.BatchNorm3d),
}
MOMENTUM = 0.3


def bn_pair(torch_cls, reference: bool, **kwargs) -> tuple[BatchNorm, nn.Module]:
    """A cadence and a torch layer with the same random $\\gamma$ and $\\beta$ (when affine)."""
    kwargs.setdefault("momentum", MOMENTUM)
    return pair(BatchNorm(6, reference=reference, **kwargs), torch_cls(6, **kwargs))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("track", [True, False], ids=["tracked", "untracked"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_in_train_and_eval(shape, track, affine, path):
    size, torch_cls = SHAPES[shape]
    ours, theirs = bn_pair(torch_cls, PATHS[path], affine=affine, track_running_stats=track)
    lockstep(ours, theirs, lambda i: torch.randn(size), buffers=("running_mean", "running_var", "num_batches_tracked"))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    if track:
        assert ours.num_batches_tracked == 4


@pytest.mark.parametrize("path", PATHS)
def test_momentum_none_is_the_cumulative_average_as_in_torch(path):
    ours, theirs = bn_pair(nn.BatchNorm2d, PATHS[path], momentum=None)
    lockstep(ours, theirs, lambda i: torch.randn(4, 6, 5, 7), buffers=("running_mean", "running_var"))
    # After n batches the estimate is the plain mean of their n batch means.
    bn = BatchNorm(6, momentum=None, reference=PATHS[path])
    batches = [torch.randn(8, 6, 3) * (i + 1) + i for i in range(3)]
    for x in batches:
        bn(x)
    torch.testing.assert_close(bn.running_mean, torch.stack([x.mean(dim=(0, 2)) for x in batches]).mean(0), **TOL)


@pytest.mark.parametrize("path", PATHS)
def test_channels_last_input_keeps_its_layout_and_matches_torch(path):
    x = torch.randn(4, 6, 5, 7).contiguous(memory_format=torch.channels_last)
    assert BatchNorm(6, reference=PATHS[path])(x).is_contiguous(memory_format=torch.channels_last)
    ours, theirs = bn_pair(nn.BatchNorm2d, PATHS[path])
    lockstep(ours, theirs, lambda i: torch.randn(4, 6, 5, 7).contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("path", PATHS)
def test_any_rank_normalizes_each_channel_over_batch_and_positions(path):
    x = torch.randn(3, 6, 2, 3, 2, 2) * 4 + 2
    y = BatchNorm(6, reference=PATHS[path])(x)
    torch.testing.assert_close(y.double(), standardized64(x, (0, 2, 3, 4, 5)), **TOL)


def test_reference_and_native_paths_agree():
    native, reference = pair(BatchNorm(6, momentum=MOMENTUM, reference=True), BatchNorm(6, momentum=MOMENTUM))
    lockstep(native, reference, lambda i: torch.randn(4, 6, 5, 7), buffers=("running_mean", "running_var",
                                                                           "num_batches_tracked"))


@pytest.mark.parametrize("path", PATHS)
def test_torch_state_dict_loads(path):
    theirs = nn.BatchNorm2d(6)
    theirs(torch.randn(8, 6, 3, 3) * 5 + 2)
    ours = BatchNorm(6, reference=PATHS[path])
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(ours(x), theirs(x), **TOL)


@pytest.mark.parametrize("path", PATHS)
def test_running_variance_is_stable_far_from_zero(path):
    bn = BatchNorm(8, affine=False, reference=PATHS[path])
    bn(far_from_zero((16, 8, 12, 12)))
    # The running variance moved from 1 by rho times an estimate near 1.
    torch.testing.assert_close(bn.running_var, torch.ones(8), atol=0.05, rtol=0)


@pytest.mark.parametrize("path", PATHS)
def test_one_value_per_channel_is_refused_where_torch_refuses_it(path):
    bn = BatchNorm(6, reference=PATHS[path])
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel"):
        nn.BatchNorm1d(6)(torch.randn(1, 6))
    with pytest.raises(ValueError, match=r"BatchNorm\(6\): input of shape \[1, 6\] has 1 value per channel"):
        bn(torch.randn(1, 6))
    assert bn.num_batches_tracked == 0 and (bn.running_mean == 0).all()
    bn.eval()
    assert bn(torch.randn(1, 6)).shape == (1, 6)
    untracked = BatchNorm(6, track_running_stats=False, reference=PATHS[path]).eval()
    with pytest.raises(ValueError, match="1 value per channel"):
        untracked(torch.randn(1, 6, 1))
    # One sample with several positions per channel has statistics, in torch as here.
    ours, theirs = bn_pair(nn.BatchNorm2d, PATHS[path])
    step(ours, theirs, torch.randn(1, 6, 3, 3))


@pytest.mark.parametrize("path", PATHS)
def test_empty_batch_leaves_estimates(path):
    ours, theirs = bn_pair(nn.BatchNorm2d, PATHS[path])
    step(ours, theirs, torch.randn(0, 6, 3, 3))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert_close(getattr(ours, name), getattr(theirs, name))


@pytest.mark.parametrize("shape, match", [
    ((6,), r"input of shape \[6\] has rank 1; expected \[batch, 6, \*\] of rank >= 2"),
    ((4, 5, 3), r"input of shape \[4, 5, 3\] has 5 channels in dimension 1; expected 6"),
])
def test_bad_inputs(shape, match):
    with pytest.raises(ValueError, match=match):
        BatchNorm(6)(torch.randn(shape))


@pytest.mark.parametrize("kwargs, match", [
    ({"channels": 0}, r"channels=0 is out of range; expected channels >= 1"),
    ({"channels": 2.0}, r"channels=2.0 is a float; expected an integer"),
    ({"channels": 4, "eps": 0.0}, r"eps=0.0 is out of range; expected eps > 0"),
    ({"channels": 4, "eps": float("nan")}, r"eps=nan is not a finite number; expected eps > 0"),
    ({"channels": 4, "momentum": 1.5}, r"momentum=1.5 is out of range; expected momentum in \[0, 1\]"),
    ({"channels": 4, "momentum": -0.1}, r"momentum=-0.1"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=r"BatchNorm: " + match):
        BatchNorm(**kwargs)


def test_reset_and_repr():
    bn = BatchNorm(3, momentum=0.5, reference=True)
    bn(torch.randn(4, 3) + 3)
    bn.reset_parameters()
    assert bn.num_batches_tracked == 0 and (bn.running_mean == 0).all() and (bn.running_var == 1).all()
    assert repr(bn) == ("BatchNorm(3, eps=1e-05, momentum=0.5, affine=True, track_running_stats=True, "
                        "reference=True)")
    assert BatchNorm(3, track_running_stats=False).state_dict().keys() == {"weight", "bias"}
