"""Tests of :mod:`cadence.nn.norm.weight_standardization` against the paper's equations written here in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from cadence.nn.norm import Conv2d, WeightStandardization, weight_standardization

from .conftest import TOL


def paper_standardized(W: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""Eq. 5-7 in float64: each row $W_{i,\cdot}$ of ``W`` (viewed as $O \times I$) standardized."""
    W = W.double().reshape(W.shape[0], -1)
    I = W.shape[1]  # noqa: E741 (the paper's symbol)
    mu = W.sum(dim=1, keepdim=True) / I
    sigma = torch.sqrt(((W - mu) ** 2).sum(dim=1, keepdim=True) / I + eps)
    return (W - mu) / sigma


@pytest.mark.parametrize("shape", [(8, 3, 3, 3), (5, 7), (4, 2, 5)], ids=["conv2d", "linear", "conv1d"])
def test_standardizes_each_output_channel(shape):
    W = torch.randn(shape) * 3 + 1
    W_hat = weight_standardization(W)
    torch.testing.assert_close(W_hat.double().reshape(shape[0], -1), paper_standardized(W), **TOL)
    assert W_hat.shape == W.shape and W_hat.dtype == W.dtype


def test_conv2d_convolves_with_the_standardized_weight():
    conv = Conv2d(3, 8, 3, 1, 1, bias=True)
    x = torch.randn(2, 3, 6, 6)
    W_hat = paper_standardized(conv.weight.detach()).reshape(8, 3, 3, 3)
    expected = F.conv2d(x.double(), W_hat, conv.bias.detach().double(), padding=1)
    torch.testing.assert_close(conv(x), expected, **TOL)


def test_gradients_flow_through_the_standardization():
    conv = Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    W = conv.weight.detach().double().requires_grad_()
    grad = torch.randn(2, 4, 5, 5)
    conv(x).backward(grad)
    F.conv2d(x.double(), paper_standardized(W).reshape(W.shape), conv.bias.detach().double(), padding=1).backward(
        grad.double())
    torch.testing.assert_close(conv.weight.grad, W.grad, **TOL)
    # A standardized weight's gradient has no component along the mean or the scale of its row.
    assert conv.weight.grad.flatten(1).sum(dim=1).abs().max() < 1e-4


def test_parametrization_and_conv2d_agree_and_state_dicts_load():
    theirs = nn.Conv2d(3, 8, 3, stride=2)
    ours = Conv2d(3, 8, 3, stride=2, eps=1e-5)
    ours.load_state_dict(theirs.state_dict())
    parametrize.register_parametrization(theirs, "weight", WeightStandardization())
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(ours(x), theirs(x))
    assert repr(ours) == "Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), eps=1e-05)"


def test_bad_eps():
    with pytest.raises(ValueError, match=r"Conv2d: eps=0 is out of range; expected eps > 0"):
        Conv2d(3, 8, 3, eps=0)
    with pytest.raises(ValueError, match=r"WeightStandardization: eps=nan"):
        WeightStandardization(float("nan"))
