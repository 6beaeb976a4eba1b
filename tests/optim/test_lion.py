"""Lion against the paper's Algorithm 2 in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.optim import Lion, WeightDecay

from .conftest import assert_compiled, set_grads, small_cnn


def paper_lion(params, grads, lr, beta1, beta2, wd):
    theta = [p.detach().double().clone() for p in params]
    m = [torch.zeros_like(t) for t in theta]
    for gs in grads:
        for i, g in enumerate(gs):
            g = g.double()
            c = beta1 * m[i] + (1 - beta1) * g
            theta[i] = theta[i] - lr * (torch.sign(c) + wd * theta[i])
            m[i] = beta2 * m[i] + (1 - beta2) * g
    return theta


@pytest.mark.parametrize("fused", [False, True])
def test_matches_the_paper_in_float64_over_real_gradients(real_gradients, fused):
    torch.manual_seed(0)
    model = small_cnn()
    expected = paper_lion(list(model.parameters()), real_gradients, 1e-4, 0.9, 0.99, 0.1)
    opt = Lion(model.parameters(), lr=1e-4, weight_decay=WeightDecay(0.1), fused=fused)
    for grads in real_gradients:
        opt.zero_grad()
        set_grads(model.parameters(), grads)
        opt.step()
    if fused:
        assert_compiled(opt)
    diff = max((p.detach().double() - e).abs().max().item() for p, e in zip(model.parameters(), expected))
    assert diff / max(e.abs().max().item() for e in expected) < 1e-5


def test_every_coordinate_moves_by_the_learning_rate():
    p = nn.Parameter(torch.tensor([0.0, 0.0, 0.0]))
    opt = Lion([p], lr=0.01)
    p.grad = torch.tensor([1e-9, -3.0, 250.0])
    opt.step()
    assert p.detach().tolist() == pytest.approx([-0.01, 0.01, -0.01])


def test_lion_has_no_epsilon_and_validates_the_rest():
    with pytest.raises(ValueError, match=r"Lion: lr=-1.0 is out of range"):
        Lion([nn.Parameter(torch.ones(1))], lr=-1.0)
    with pytest.raises(ValueError, match=r"Lion: betas\[1\]=1.0 is out of range"):
        Lion([nn.Parameter(torch.ones(1))], betas=(0.9, 1.0))
