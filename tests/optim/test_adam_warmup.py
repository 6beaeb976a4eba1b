"""The warm-up variants and Noam: their rates, and Adam's update with that rate."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cadence.optim import Adam, AdamWarmup, AdamWarmupCosineDecay, Noam

from .conftest import relative_difference


def rate(optimizer, step):
    return optimizer.get_lr(optimizer.param_groups[0], step)


def test_warmup_rate():
    opt = AdamWarmup([nn.Parameter(torch.ones(1))], lr=0.1, warmup=10)
    assert [rate(opt, t) for t in (1, 5, 9, 10, 11, 1000)] == pytest.approx([1e-8 + 0.01, 1e-8 + 0.05, 1e-8 + 0.09,
                                                                             0.1, 0.1, 0.1])


def test_warmup_cosine_decay_rate():
    opt = AdamWarmupCosineDecay([nn.Parameter(torch.ones(1))], lr=0.1, warmup=10, total_steps=110, min_lr=0.01)
    assert rate(opt, 5) == pytest.approx(1e-8 + 0.05)
    assert rate(opt, 10) == pytest.approx(0.1)
    assert rate(opt, 60) == pytest.approx(0.01 + 0.09 * 0.5)
    assert rate(opt, 110) == pytest.approx(0.01) and rate(opt, 10_000) == pytest.approx(0.01)
    values = [rate(opt, t) for t in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_noam_rate_is_the_transformer_papers():
    opt = Noam([nn.Parameter(torch.ones(1))], lr=2.0, warmup=4000, d_model=512)
    for t in (1, 100, 3999, 4000, 4001, 100_000):
        assert rate(opt, t) == pytest.approx(2.0 * 512 ** -0.5 * min(t ** -0.5, t * 4000 ** -1.5), rel=1e-12)
    assert max(range(1, 10_000), key=lambda t: rate(opt, t)) == 4000


@pytest.mark.parametrize("make", [
    lambda p: AdamWarmup(p, lr=1e-3, warmup=50),
    lambda p: AdamWarmupCosineDecay(p, lr=1e-3, warmup=50, total_steps=200, min_lr=1e-5),
    lambda p: Noam(p, lr=0.5, warmup=50, d_model=64, betas=(0.9, 0.999), eps=1e-8),
], ids=["warmup", "warmup-cosine", "noam"])
def test_update_is_adam_with_the_scheduled_rate(real_gradients, make):
    """Each variant equals Adam whose group lr is set to the variant's rate before every step."""
    from .conftest import small_cnn

    torch.manual_seed(0)
    a = small_cnn()
    torch.manual_seed(0)
    b = small_cnn()
    variant = make(a.parameters())
    adam = Adam(b.parameters(), lr=1.0, betas=variant.param_groups[0]["betas"], eps=variant.param_groups[0]["eps"])
    for t, grads in enumerate(real_gradients, start=1):
        for pa, pb, g in zip(a.parameters(), b.parameters(), grads):
            pa.grad, pb.grad = g.clone(), g.clone()
        adam.param_groups[0]["lr"] = rate(variant, t)
        variant.step()
        adam.step()
    assert relative_difference(a, b) == 0.0


@pytest.mark.parametrize("make, message", [
    (lambda p: AdamWarmup(p, warmup=-1), r"AdamWarmup: warmup=-1 is out of range; expected an integer >= 0"),
    (lambda p: Noam(p, warmup=0), r"Noam: warmup=0 is out of range; expected an integer >= 1"),
    (lambda p: AdamWarmupCosineDecay(p, lr=0.1, min_lr=0.2), r"AdamWarmupCosineDecay: min_lr=0.2 is out of range; expected a finite number in \[0, 0.1\]"),
    (lambda p: AdamWarmupCosineDecay(p, total_steps=0), r"AdamWarmupCosineDecay: total_steps=0 is out of range; expected an integer >= 1"),
])
def test_bad_schedules_fail_naming_the_parameter(make, message):
    with pytest.raises(ValueError, match=message):
        make([nn.Parameter(torch.ones(1))])


def test_noam_rate_is_finite_from_the_first_step():
    opt = Noam([nn.Parameter(torch.ones(1))], warmup=10)
    assert math.isfinite(rate(opt, 1)) and rate(opt, 1) > 0
