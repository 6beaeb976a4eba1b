"""AMSGrad against torch.optim.Adam(amsgrad=True), and on the paper's synthetic problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.optim import Adam, AMSGrad, WeightDecay

from .conftest import relative_difference


def test_matches_torch_amsgrad_in_training(train):
    ours = train(lambda p: AMSGrad(p, lr=1e-3, optimized_update=False))
    torchs = train(lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True))
    assert relative_difference(ours, torchs) < 1e-5


def test_matches_torch_amsgrad_with_decoupled_decay(train):
    ours = train(lambda p: AMSGrad(p, lr=1e-3, optimized_update=False, weight_decay=WeightDecay(0.05)))
    torchs = train(lambda p: torch.optim.AdamW(p, lr=1e-3, amsgrad=True, weight_decay=0.05))
    assert relative_difference(ours, torchs) < 1e-5


def test_a_float_weight_decay_matches_torch_amsgrads(train):
    ours = train(lambda p: AMSGrad(p, lr=1e-3, optimized_update=False, weight_decay=1e-2))
    torchs = train(lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True, weight_decay=1e-2))
    assert relative_difference(ours, torchs) < 1e-5


def test_without_amsgrad_it_is_adam(replay):
    ours = replay(lambda p: AMSGrad(p, lr=1e-3, amsgrad=False))
    adam = replay(lambda p: Adam(p, lr=1e-3))
    assert relative_difference(ours, adam) == 0.0


def synthetic(optimizer_class, steps: int) -> float:
    """labml_nn's version of the paper's counter-example: f_t(x) = 1010x when t mod 101 = 1, else -10x,
    x clamped to [-1, 1]; the optimum is x = -1, but the rare large gradient pushes Adam to +1."""
    x = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = optimizer_class([x], lr=1e-2, betas=(0.9, 0.99))
    for t in range(steps):
        x.grad = torch.full_like(x, 1010.0 if t % 101 == 1 else -10.0)
        optimizer.step()
        with torch.no_grad():
            x.clamp_(-1.0, 1.0)
    return x.item()


@pytest.mark.slow
def test_the_synthetic_problem_fools_adam_but_not_amsgrad():
    adam, amsgrad = synthetic(Adam, 100_000), synthetic(AMSGrad, 100_000)
    assert adam > 0.5, adam
    assert amsgrad < -0.5, amsgrad
