"""RAdam against torch.optim.RAdam; its threshold and its un-rectified steps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cadence.optim import RAdam, WeightDecay
from cadence.optim.generic import rectification

from .conftest import relative_difference


@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (1e-2, False), (0.1, True)])
def test_matches_torch_radam_in_training(train, weight_decay, decoupled):
    ours = train(lambda p: RAdam(p, lr=1e-3, weight_decay=WeightDecay(weight_decay, weight_decouple=decoupled)))
    torchs = train(lambda p: torch.optim.RAdam(p, lr=1e-3, weight_decay=weight_decay,
                                               decoupled_weight_decay=decoupled))
    assert relative_difference(ours, torchs) < 1e-5


def test_a_float_weight_decay_matches_torch_radams(train):
    ours = train(lambda p: RAdam(p, lr=1e-3, weight_decay=1e-2))
    torchs = train(lambda p: torch.optim.RAdam(p, lr=1e-3, weight_decay=1e-2))
    assert relative_difference(ours, torchs) < 1e-5


def rho(t: int, beta2: float) -> float:
    rho_inf = 2 / (1 - beta2) - 1
    return rho_inf - 2 * t * beta2 ** t / (1 - beta2 ** t)


def test_before_the_threshold_steps_are_unadapted_momentum_or_none():
    beta2 = 0.999
    first_rectified = next(t for t in range(1, 100) if rho(t, beta2) > 5.0)
    assert first_rectified == 6  # rho_t crosses torch's threshold of 5 at t = 6 for beta2 = 0.999
    for sgd in (True, False):
        p = nn.Parameter(torch.zeros(3, dtype=torch.float64))
        opt = RAdam([p], lr=0.1, betas=(0.9, beta2), degenerate_to_sgd=sgd)
        m = torch.zeros(3, dtype=torch.float64)
        expected = torch.zeros(3, dtype=torch.float64)
        for t in range(1, first_rectified):
            g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) * t
            p.grad = g.clone()
            opt.step()
            m = 0.9 * m + 0.1 * g
            if sgd:
                expected -= 0.1 * m / (1 - 0.9 ** t)
            torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-15)


def test_the_threshold_is_configurable():
    def run(threshold):
        p = nn.Parameter(torch.ones(4, dtype=torch.float64))
        opt = RAdam([p], lr=0.1, rho_threshold=threshold)
        for t in range(1, 8):
            p.grad = torch.full_like(p, float(t))
            opt.step()
        return p.detach()

    assert not torch.equal(run(5.0), run(1e9))
    # With an unreachable threshold every step is the momentum step: sum of lr * m_hat_t.
    m, expected = 0.0, 1.0
    for t in range(1, 8):
        m = 0.9 * m + 0.1 * t
        expected -= 0.1 * m / (1 - 0.9 ** t)
    assert run(1e9)[0].item() == pytest.approx(expected, rel=1e-12)


def test_rectification_term_at_a_known_step():
    """r_t of the paper at t = 10, beta2 = 0.999, against a direct evaluation."""
    beta2, t = 0.999, 10
    rho_inf, rho_t = 2 / (1 - beta2) - 1, rho(t, beta2)
    r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    assert rectification(beta2, t, 5.0) == pytest.approx(r, rel=1e-15)
    opt = RAdam([nn.Parameter(torch.ones(1))])
    assert opt.scalars(opt.param_groups[0], t)["r"] == pytest.approx(r, rel=1e-15)
    # before rho_t passes the threshold there is no r_t: the step is un-adapted (or none)
    assert rectification(beta2, 5, 5.0) is None and opt.scalars(opt.param_groups[0], 5)["r"] is None
