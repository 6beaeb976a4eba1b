"""Every schedule torch also has equals torch's values at every step of a 2,000-step run, to 1e-9."""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler

from cadence.schedule import Cosine, CosineWarmRestarts, Exponential, Linear, OneCycle, Polynomial, Step

BASE = 0.1
STEPS = 2000


def torch_values(make_scheduler, base: float = BASE) -> list[float]:
    """The lr torch's scheduler gives at steps 0 .. STEPS-1."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = make_scheduler(optimizer)
    values = []
    for _ in range(STEPS):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


CASES = {
    "StepLR": (lambda o: lr_scheduler.StepLR(o, step_size=300, gamma=0.5), Step(BASE, 300, 0.5)),
    "ExponentialLR": (lambda o: lr_scheduler.ExponentialLR(o, gamma=0.998), Exponential(BASE, 0.998)),
    "LinearLR": (lambda o: lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=500),
                 Linear(BASE * 0.25, BASE, 500)),
    "LinearLR-decay": (lambda o: lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=1500),
                       Linear(BASE, BASE * 0.1, 1500)),
    "CosineAnnealingLR": (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=STEPS, eta_min=1e-4),
                          Cosine(BASE, STEPS, floor=1e-4)),
    "PolynomialLR-1": (lambda o: lr_scheduler.PolynomialLR(o, total_iters=1200, power=1.0), Polynomial(BASE, 1200, 1.0)),
    "PolynomialLR-2": (lambda o: lr_scheduler.PolynomialLR(o, total_iters=1800, power=2.0), Polynomial(BASE, 1800, 2.0)),
    "OneCycleLR-cos": (lambda o: lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=STEPS), OneCycle(1.0, STEPS)),
    "OneCycleLR-linear": (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=STEPS, pct_start=0.25,
                                                            anneal_strategy="linear", div_factor=10,
                                                            final_div_factor=100),
                          OneCycle(0.5, STEPS, pct_start=0.25, anneal="linear", div_factor=10, final_div_factor=100)),
    "OneCycleLR-three-phase": (lambda o: lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=STEPS, three_phase=True),
                               OneCycle(1.0, STEPS, three_phase=True)),
    "CosineAnnealingWarmRestarts-1": (lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=300, eta_min=1e-3),
                                      CosineWarmRestarts(BASE, 300, 1, floor=1e-3)),
    "CosineAnnealingWarmRestarts-2": (lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=100, T_mult=2),
                                      CosineWarmRestarts(BASE, 100, 2)),
}


@pytest.mark.parametrize("name", CASES)
def test_values_equal_torch_at_every_step(name):
    make_scheduler, schedule = CASES[name]
    expected = torch_values(make_scheduler)
    ours = [schedule(t) for t in range(STEPS)]
    worst = max(abs(a - b) for a, b in zip(ours, expected))
    assert worst < 1e-9, f"{name}: largest difference {worst:.3g}"
