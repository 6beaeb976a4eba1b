"""LAMB against Algorithm 2 of the paper in float64, over real gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cadence.optim import LAMB, WeightDecay

from .conftest import small_cnn


def paper_lamb(params, grads, lr, beta1, beta2, eps, lam, l2=0.0):
    """Algorithm 2 of You et al. in float64, tensor by tensor; ``l2`` adds a coupled decay to the gradient."""
    theta = [p.detach().double().clone() for p in params]
    m = [torch.zeros_like(t) for t in theta]
    v = [torch.zeros_like(t) for t in theta]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            g = g.double() + l2 * theta[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            r = (m[i] / (1 - beta1 ** t)) / ((v[i] / (1 - beta2 ** t)).sqrt() + eps) + lam * theta[i]
            norm_theta, norm_r = theta[i].norm().item(), r.norm().item()
            ratio = norm_theta / norm_r if norm_theta > 0 and norm_r > 0 else 1.0
            theta[i] = theta[i] - lr * ratio * r
    return theta


@pytest.mark.parametrize("weight_decay, lam, l2", [
    (0.01, 0.01, 0.0),  # a float: the paper's decay in r_t
    (WeightDecay(0.01), 0.01, 0.0),  # the same, said explicitly
    (WeightDecay(0.01, weight_decouple=False), 0.0, 0.01),  # coupled L2, in the gradient
], ids=["float", "decoupled", "coupled"])
def test_matches_the_paper_in_float64_over_real_gradients(real_gradients, weight_decay, lam, l2):
    torch.manual_seed(0)
    model = small_cnn()
    expected = paper_lamb(list(model.parameters()), real_gradients, 1e-3, 0.9, 0.999, 1e-6, lam, l2)
    opt = LAMB(model.parameters(), lr=1e-3, weight_decay=weight_decay)
    for grads in real_gradients:
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone()
        opt.step()
    diff = max((p.detach().double() - e).abs().max().item() for p, e in zip(model.parameters(), expected))
    assert diff / max(e.abs().max().item() for e in expected) < 1e-5


def test_each_tensor_moves_by_lr_times_its_norm():
    p = nn.Parameter(torch.full((100,), 2.0))
    opt = LAMB([p], lr=0.01)
    p.grad = torch.randn(100)
    before = p.detach().clone()
    opt.step()
    assert (p.detach() - before).norm().item() == pytest.approx(0.01 * before.norm().item(), rel=1e-5)


def test_a_zero_tensor_takes_the_plain_adam_direction():
    p = nn.Parameter(torch.zeros(3))
    opt = LAMB([p], lr=0.1)
    p.grad = torch.tensor([1.0, -1.0, 2.0])
    opt.step()
    assert p.detach().tolist() == pytest.approx([-0.1, 0.1, -0.1], rel=1e-5)


def test_state_dict_resume_is_bit_identical(real_gradients):
    torch.manual_seed(0)
    a = small_cnn()
    b = copy.deepcopy(a)
    oa = LAMB(a.parameters(), weight_decay=0.01)
    ob = LAMB(b.parameters(), weight_decay=0.01)
    for step, grads in enumerate(real_gradients[:20]):
        if step == 10:
            ob = LAMB(b.parameters(), weight_decay=0.01)
            ob.load_state_dict(copy.deepcopy(oa_state))
        for opt, model in ((oa, a), (ob, b)):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            opt.step()
        if step == 9:
            oa_state = copy.deepcopy(oa.state_dict())
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_validation():
    assert not LAMB.elementwise
    with pytest.raises(ValueError, match=r"LAMB: weight_decay=-1.0 is out of range; expected weight_decay >= 0"):
        LAMB([nn.Parameter(torch.ones(1))], weight_decay=-1.0)
    with pytest.raises(ValueError, match=r"LAMB: weight_decay=WeightDecay\(weight_decay=0.1, weight_decouple=True, "
                                         r"absolute=True\); LAMB scales its decay .* cannot be absolute"):
        LAMB([nn.Parameter(torch.ones(1))], weight_decay=WeightDecay(0.1, absolute=True))
    with pytest.raises(ValueError, match=r"LAMB: betas\[0\]=1.5 is out of range"):
        LAMB([nn.Parameter(torch.ones(1))], betas=(1.5, 0.9))
