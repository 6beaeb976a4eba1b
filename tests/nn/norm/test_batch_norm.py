"""Tests of :mod:`cadence.nn.norm.batch_norm` against ``torch.nn.BatchNorm1d/2d/3d`` and float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.nn.norm import BatchNorm

#: An input shape for each of torch's layers: ``[B, C]`` and ``[B, C, L]`` (1d), ``[B, C, H, W]`` (2d), 5-D (3d).
SHAPES = {
    "1d-features": ((32, 6), nn.BatchNorm1d),
    "1d-sequence": ((8, 6, 10), nn.BatchNorm1d),
    "2d": ((4, 6, 5, 7), nn.BatchNorm2d),
    "3d": ((3, 6, 2, 4, 3), nn.BatchNorm3d),
}
PATHS = {"native": False, "reference": True}
MOMENTUM = 0.3
TOL = {"atol": 1e-5, "rtol": 1e-5}


def pair(torch_cls, reference: bool, **kwargs) -> tuple[BatchNorm, nn.Module]:
    """A cadence and a torch layer with the same random $\\gamma$ and $\\beta$ (when affine)."""
    ours = BatchNorm(6, momentum=MOMENTUM, reference=reference, **kwargs)
    theirs = torch_cls(6, momentum=MOMENTUM, **kwargs)
    if ours.affine:
        with torch.no_grad():
            theirs.weight.copy_(torch.rand(6) + 0.5)
            theirs.bias.copy_(torch.randn(6))
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def assert_close(a: torch.Tensor | None, b: torch.Tensor | None) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        torch.testing.assert_close(a, b, **TOL)


def step(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    """One forward and backward of both layers on ``x``; outputs and gradients must agree."""
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    assert_close(y_ours, y_theirs)
    if torch.is_grad_enabled():
        grad = torch.randn_like(x)
        y_ours.backward(grad)
        y_theirs.backward(grad)
        assert_close(x_ours.grad, x_theirs.grad)
        for name in ("weight", "bias"):
            p, q = getattr(ours, name), getattr(theirs, name)
            assert_close(None if p is None else p.grad, None if q is None else q.grad)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("track", [True, False], ids=["tracked", "untracked"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_in_train_and_eval(shape, track, affine, path):
    size, torch_cls = SHAPES[shape]
    ours, theirs = pair(torch_cls, PATHS[path], affine=affine, track_running_stats=track)
    for i in range(4):
        # Batches whose statistics differ, so the running estimates move.
        step(ours, theirs, torch.randn(size) * (1 + i) + i)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert_close(getattr(ours, name), getattr(theirs, name))
    ours.eval()
    theirs.eval()
    for _ in range(2):
        step(ours, theirs, torch.randn(size) * 2 + 1)
    with torch.no_grad():
        step(ours, theirs, torch.randn(size))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    if track:
        assert ours.num_batches_tracked == 4


def test_reference_and_native_paths_agree():
    native = BatchNorm(6, momentum=MOMENTUM)
    reference = BatchNorm(6, momentum=MOMENTUM, reference=True)
    with torch.no_grad():
        native.weight.copy_(torch.rand(6) + 0.5)
        native.bias.copy_(torch.randn(6))
    reference.load_state_dict(native.state_dict())
    for i in range(3):
        step(native, reference, torch.randn(4, 6, 5, 7) * 3 + i)
    torch.testing.assert_close(native.state_dict(), reference.state_dict(), **TOL)
    native.eval()
    reference.eval()
    step(native, reference, torch.randn(4, 6, 5, 7))


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


def float64_normalized(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """$\\hat{x}$ of the float32 ``x``, computed in float64."""
    x = x.double()
    mu = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mu) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mu) / torch.sqrt(var + eps)


@pytest.fixture
def far_from_zero() -> torch.Tensor:
    """Values with mean $10^4$ and unit variance, where $E[x^2] - E[x]^2$ breaks down."""
    return 1e4 + torch.randn(16, 8, 12, 12)


def test_textbook_variance_fails_on_the_stability_input(far_from_zero):
    x = far_from_zero
    mu = x.mean(dim=(0, 2, 3), keepdim=True)
    textbook_var = (x * x).mean(dim=(0, 2, 3), keepdim=True) - mu * mu
    textbook = (x - mu) / torch.sqrt(textbook_var + 1e-5)
    error = (textbook.double() - float64_normalized(x)).abs().max()
    assert torch.isnan(error) or error > 1e-1


@pytest.mark.parametrize("path", PATHS)
def test_variance_is_stable_far_from_zero(far_from_zero, path):
    bn = BatchNorm(8, affine=False, reference=PATHS[path])
    y = bn(far_from_zero)
    assert (y.double() - float64_normalized(far_from_zero)).abs().max() < 1e-2
    # The running variance moved from 1 by rho times an estimate near 1.
    torch.testing.assert_close(bn.running_var, torch.ones(8), atol=0.05, rtol=0)


@pytest.mark.parametrize("path", PATHS)
def test_one_value_per_channel(path):
    bn = BatchNorm(6, reference=PATHS[path])
    with pytest.raises(ValueError, match=r"BatchNorm\(6\): input of shape \[1, 6\] has 1 value per channel"):
        bn(torch.randn(1, 6))
    bn.eval()
    assert bn(torch.randn(1, 6)).shape == (1, 6)
    untracked = BatchNorm(6, track_running_stats=False, reference=PATHS[path]).eval()
    with pytest.raises(ValueError, match="1 value per channel"):
        untracked(torch.randn(1, 6, 1))


@pytest.mark.parametrize("path", PATHS)
def test_empty_batch_leaves_estimates(path):
    ours, theirs = pair(nn.BatchNorm2d, PATHS[path])
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
    ({"channels": 0}, r"channels=0; expected an integer >= 1"),
    ({"channels": 2.0}, r"channels=2.0"),
    ({"channels": 4, "eps": 0.0}, r"eps=0.0; expected a finite number > 0"),
    ({"channels": 4, "eps": float("nan")}, r"eps=nan"),
    ({"channels": 4, "momentum": 1.5}, r"momentum=1.5; expected a number in \[0, 1\]"),
    ({"channels": 4, "momentum": -0.1}, r"momentum=-0.1"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=r"BatchNorm: " + match):
        BatchNorm(**kwargs)


def test_reset_and_repr():
    bn = BatchNorm(3, momentum=0.5, reference=True)
    bn(torch.randn(4, 3) + 3)
    bn.reset_parameters()
    assert bn.num_batches_tracked == 0 and (bn.running_mean == 0).all() and (bn.running_var == 1).all()
    assert repr(bn) == ("BatchNorm(3, eps=1e-05, momentum=0.5, affine=True, track_running_stats=True, "
                        "reference=True)")
    assert BatchNorm(3, track_running_stats=False).state_dict().keys() == {"weight", "bias"}
