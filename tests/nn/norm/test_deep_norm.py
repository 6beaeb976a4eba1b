"""Tests of :mod:`cadence.nn.norm.deep_norm` against the DeepNet paper's equations written here in float64."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cadence.nn.norm import DeepNorm, DeepNormBlock, deep_norm_constants

from .conftest import PATHS, TOL, randomize_affine


def paper_deep_norm(x: torch.Tensor, gx: torch.Tensor, alpha: float, gamma: torch.Tensor, beta: torch.Tensor,
                    eps: float = 1e-5) -> torch.Tensor:
    r"""$\mathrm{LN}(\alpha x + gx)$ over the last dimension, in float64."""
    h = alpha * x.double() + gx.double()
    mu = h.mean(dim=-1, keepdim=True)
    sigma2 = ((h - mu) ** 2).mean(dim=-1, keepdim=True)
    return gamma.double() * (h - mu) / torch.sqrt(sigma2 + eps) + beta.double()


def test_constants_of_an_n_layer_model():
    assert deep_norm_constants(1) == pytest.approx((2 ** 0.25, 8 ** -0.25))
    alpha, beta = deep_norm_constants(18)
    assert alpha == pytest.approx(36 ** 0.25) and beta == pytest.approx(144 ** -0.25)
    with pytest.raises(ValueError, match=r"deep_norm_constants: layers=0 is out of range; expected layers >= 1"):
        deep_norm_constants(0)


@pytest.mark.parametrize("path", PATHS)
def test_is_post_layer_norm_of_the_up_weighted_residual(path):
    norm = randomize_affine(DeepNorm(2.5, 16, reference=PATHS[path]))
    x, gx = torch.randn(4, 7, 16, requires_grad=True), torch.randn(4, 7, 16, requires_grad=True)
    x64, gx64 = x.detach().double().requires_grad_(), gx.detach().double().requires_grad_()
    gamma64 = norm.layer_norm.weight.detach().double().requires_grad_()
    y, y64 = norm(x, gx), paper_deep_norm(x64, gx64, 2.5, gamma64, norm.layer_norm.bias.detach())
    torch.testing.assert_close(y, y64, **TOL)
    grad = torch.randn_like(y)
    y.backward(grad)
    y64.backward(grad.double())
    for ours, paper in [(x.grad, x64.grad), (gx.grad, gx64.grad), (norm.layer_norm.weight.grad, gamma64.grad)]:
        torch.testing.assert_close(ours, paper, **TOL)


class FeedForward(nn.Module):
    """A transformer's feed-forward sub-layer."""

    def __init__(self, d: int, d_ff: int):
        super().__init__()
        self.layer1, self.layer2 = nn.Linear(d, d_ff), nn.Linear(d_ff, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(torch.relu(self.layer1(x)))


def test_block_initialises_with_xavier_gain_beta_and_wraps_the_sublayer():
    alpha, beta = deep_norm_constants(100)
    ffn = FeedForward(256, 1024)
    block = DeepNormBlock(ffn, alpha, beta, 256)
    for W in (ffn.layer1.weight, ffn.layer2.weight):
        # Xavier normal with gain beta: standard deviation beta * sqrt(2 / (fan_in + fan_out))
        assert W.std().item() == pytest.approx(beta * math.sqrt(2 / (256 + 1024)), rel=0.02)
    x = torch.randn(3, 5, 256)
    expected = paper_deep_norm(x, ffn(x), alpha, torch.ones(256), torch.zeros(256))
    torch.testing.assert_close(block(x), expected, **TOL)


def test_block_scales_only_the_named_weights():
    attention = nn.ModuleDict({"q_proj": nn.Linear(64, 64), "v_proj": nn.Linear(64, 64)})
    q_before = attention.q_proj.weight.detach().clone()
    DeepNormBlock(attention, 2.0, 0.1, 64, scaled=["v_proj.weight"])
    assert torch.equal(attention.q_proj.weight, q_before)
    assert attention.v_proj.weight.std().item() == pytest.approx(0.1 * math.sqrt(2 / 128), rel=0.1)


def test_block_passes_further_arguments_to_the_sublayer():
    class Scaled(nn.Module):
        def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
            return x * scale

    block = DeepNormBlock(Scaled(), 2.0, 1.0, 8, scaled=[])
    x = torch.randn(4, 8)
    torch.testing.assert_close(block(x, scale=3.0), paper_deep_norm(x, 3 * x, 2.0, torch.ones(8), torch.zeros(8)),
                               **TOL)


@pytest.mark.parametrize("make, match", [
    (lambda: DeepNorm(0.0, 8), r"DeepNorm: alpha=0.0 is out of range; expected alpha > 0"),
    (lambda: DeepNorm(2.0, 8, eps=0), r"LayerNorm: eps=0"),
    (lambda: DeepNormBlock(nn.Linear(8, 8), 2.0, -1, 8), r"DeepNormBlock: beta=-1 is out of range; expected beta > 0"),
    (lambda: DeepNormBlock(nn.Linear(8, 8), 2.0, 0.5, 8, scaled=["bias"]),
     r"DeepNormBlock: scaled weight 'bias' is not a weight matrix of the sub-layer Linear; expected one of: weight"),
    (lambda: DeepNormBlock(FeedForward(8, 16), 2.0, 0.5, 8, scaled=["layer3.weight"]),
     r"scaled weight 'layer3.weight' .* expected one of: layer1.weight, layer2.weight"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"DeepNorm: residual x of shape \[4, 8\] and sub-layer output gx of shape "
                                         r"\[1, 8\]; expected equal shapes"):
        DeepNorm(2.0, 8)(torch.randn(4, 8), torch.randn(1, 8))
    with pytest.raises(ValueError, match=r"LayerNorm\(\[8\]\): input of shape \[4, 6\] does not end in \[8\]"):
        DeepNorm(2.0, 8)(torch.randn(4, 6), torch.randn(4, 6))


def test_state_dict_and_repr():
    block = DeepNormBlock(nn.Linear(4, 4), 2.0, 0.5, 4)
    assert block.state_dict().keys() == {"sublayer.weight", "sublayer.bias", "deep_norm.layer_norm.weight",
                                         "deep_norm.layer_norm.bias"}
    assert "DeepNorm(\n    alpha=2.0" in repr(block) and repr(block).startswith("DeepNormBlock(\n  beta=0.5")
