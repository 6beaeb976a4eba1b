"""AdaBelief against the paper's Algorithm 2 in float64, with and without rectification and AMSGrad."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cadence.optim import AdaBelief, Adam, WeightDecay

from .conftest import small_cnn



def paper_ada_belief(params, grads, lr, beta1, beta2, eps, wd, rectify, amsgrad, threshold=5.0):
    """Algorithm 2 of Zhuang et al. (plus RAdam's rectification), tensor by tensor in float64."""
    theta = [p.detach().double().clone() for p in params]
    m = [torch.zeros_like(t) for t in theta]
    s = [torch.zeros_like(t) for t in theta]
    s_max = [torch.zeros_like(t) for t in theta]
    rho_inf = 2 / (1 - beta2) - 1
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            g = g.double()
            theta[i] = theta[i] * (1 - lr * wd)
            m[i] = beta1 * m[i] + (1 - beta1) * g
            s[i] = beta2 * s[i] + (1 - beta2) * (g - m[i]) ** 2 + eps
            s_used = s[i]
            if amsgrad:
                s_max[i] = torch.maximum(s_max[i], s[i])
                s_used = s_max[i]
            m_hat, s_hat = m[i] / (1 - beta1 ** t), s_used / (1 - beta2 ** t)
            rho_t = rho_inf - 2 * t * beta2 ** t / (1 - beta2 ** t)
            if not rectify:
                theta[i] = theta[i] - lr * m_hat / (s_hat.sqrt() + eps)
            elif rho_t > threshold:
                r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                theta[i] = theta[i] - lr * r * m_hat / (s_hat.sqrt() + eps)
            else:
                theta[i] = theta[i] - lr * m_hat
    return theta


@pytest.mark.parametrize("rectify", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_matches_the_paper_in_float64_over_real_gradients(real_gradients, rectify, amsgrad):
    torch.manual_seed(0)
    model = small_cnn()
    expected = paper_ada_belief(list(model.parameters()), real_gradients, 1e-3, 0.9, 0.999, 1e-16, 0.01,
                                rectify, amsgrad)
    opt = AdaBelief(model.parameters(), lr=1e-3, weight_decay=WeightDecay(0.01), amsgrad=amsgrad, rectify=rectify)
    for grads in real_gradients:
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone()
        opt.step()
    diff = max((p.detach().double() - e).abs().max().item() for p, e in zip(model.parameters(), expected))
    scale = max(e.abs().max().item() for e in expected)
    assert diff / scale < 1e-5


def test_state_is_named_after_the_belief():
    p = nn.Parameter(torch.ones(2))
    opt = AdaBelief([p], amsgrad=True)
    p.grad = torch.ones(2)
    opt.step()
    assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_var", "max_exp_avg_var"}


def test_a_gradient_that_matches_its_ema_gets_a_larger_step_than_in_adam():
    """The belief: a steady gradient deviates little from its EMA, so s_t stays small and the step large."""
    steps = {}
    for name, make in (("adam", lambda p: Adam(p, lr=1e-3, eps=1e-16)),
                       ("belief", lambda p: AdaBelief(p, lr=1e-3, rectify=False))):
        p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        opt = make([p])
        for _ in range(100):
            p.grad = torch.ones(1, dtype=torch.float64)
            opt.step()
        steps[name] = -p.item()
    # Adam moves by lr per step; AdaBelief's steps grow as the deviations die out (3.3x after 100 steps).
    assert steps["adam"] == pytest.approx(100 * 1e-3)
    assert steps["belief"] > 3 * steps["adam"]
