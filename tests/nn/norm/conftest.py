"""Shared helpers of the normalization tests: lockstep comparison with a peer layer, float64 references."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

PATHS = {"native": False, "reference": True}
#: 1e-5, between tensors of any floating dtypes (a float64 reference's gradients against float32 ones).
TOL = {"atol": 1e-5, "rtol": 1e-5, "check_dtype": False}
BUFFERS = ("running_mean", "running_var")


def assert_close(a: torch.Tensor | None, b: torch.Tensor | None, **tol) -> None:
    """Both None, or equal within :data:`TOL` (updated by ``tol``)."""
    assert (a is None) == (b is None)
    if a is not None:
        torch.testing.assert_close(a, b, **{**TOL, **tol})


def randomize_affine(layer: nn.Module) -> nn.Module:
    """Give every parameter of ``layer`` random values (scales around 1), so that they are not the identity."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else torch.randn_like(p))
    return layer


def pair(ours: nn.Module, theirs: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``ours`` with the (randomized) parameters and buffers of ``theirs``, whose state dict must fit."""
    randomize_affine(theirs)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def step(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, **tol) -> None:
    """One forward and backward of both layers on ``x``: outputs, input and parameter gradients must agree."""
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    assert y_ours.dtype == x.dtype
    assert_close(y_ours, y_theirs, **tol)
    if torch.is_grad_enabled():
        grad = torch.randn_like(y_ours)
        y_ours.backward(grad)
        y_theirs.backward(grad)
        assert_close(x_ours.grad, x_theirs.grad, **tol)
        theirs_params = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            assert_close(p.grad, theirs_params[name].grad, **tol)


def lockstep(ours: nn.Module, theirs: nn.Module, make_input: Callable[[int], torch.Tensor], buffers=BUFFERS,
             train_steps: int = 4) -> None:
    """Train both layers for ``train_steps`` batches that differ in mean and scale, then evaluate them.

    Outputs, gradients and the running statistics named in ``buffers`` must agree at every step.
    """
    for i in range(train_steps):
        step(ours, theirs, make_input(i) * (1 + i) + i)
        for name in buffers:
            assert_close(getattr(ours, name), getattr(theirs, name))
    ours.eval()
    theirs.eval()
    for i in range(2):
        step(ours, theirs, make_input(i) * 2 + 1)
    with torch.no_grad():
        step(ours, theirs, make_input(0))


def far_from_zero(shape: tuple[int, ...]) -> torch.Tensor:
    """float32 values with mean $10^4$ and unit variance, where $E[x^2] - E[x]^2$ breaks down."""
    return 1e4 + torch.randn(shape)


def standardized64(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-5) -> torch.Tensor:
    r"""$\frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}$ over ``dims`` in float64 (biased $\sigma^2$), of any ``x``."""
    x = x.double()
    mu = x.mean(dim=dims, keepdim=True)
    sigma2 = ((x - mu) ** 2).mean(dim=dims, keepdim=True)
    return (x - mu) / torch.sqrt(sigma2 + eps)
