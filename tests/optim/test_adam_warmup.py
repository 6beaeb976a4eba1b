"""The presets that schedule their own rate (the warm-up variants, Noam): their rates, and Adam's update with them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cadence import schedule
from cadence.optim import Adam, AdamWarmup, AdamWarmupCosineDecay, AMSGrad, Noam
from cadence.schedule import Cosine, LinearWarmup, Sequential, warmup_cosine

from .conftest import relative_difference, small_cnn


def rate(optimizer, step):
    """The learning rate the optimizer's own schedule gives step ``step``."""
    _, _, lr = optimizer.scheduler.schedules["lr"]
    return lr(step)


def test_each_preset_is_adam_with_a_schedule_of_lr():
    p = [nn.Parameter(torch.ones(1))]
    assert type(AdamWarmup(p, lr=0.1, warmup=10)) is Adam
    assert type(AdamWarmup(p, amsgrad=True)) is AMSGrad and type(Noam(p, amsgrad=True)) is AMSGrad
    assert AdamWarmup(p, lr=0.1, warmup=10).scheduler.schedules["lr"][2] == LinearWarmup(0.1, 10)
    assert AdamWarmupCosineDecay(p, lr=0.1, warmup=10, total_steps=110, min_lr=0.01).scheduler.schedules["lr"][2] == \
        Sequential([LinearWarmup(0.1, 10), Cosine(0.1, 100, floor=0.01)], [10])
    assert AdamWarmupCosineDecay(p, lr=0.1, total_steps=50).scheduler.schedules["lr"][2] == Cosine(0.1, 50)
    assert AdamWarmupCosineDecay(p, lr=0.1, warmup=10, total_steps=110, min_lr=0.01).scheduler.schedules["lr"][2] == \
        warmup_cosine(0.1, 10, 110, 0.01)
    assert Noam(p, lr=2.0, warmup=40, d_model=64).scheduler.schedules["lr"][2] == schedule.Noam(2.0, 64, 40)
    assert Adam(p).scheduler.schedules == {}


def test_warmup_rate():
    opt = AdamWarmup([nn.Parameter(torch.ones(1))], lr=0.1, warmup=10)
    assert [rate(opt, t) for t in (1, 5, 9, 10, 11, 1000)] == pytest.approx([0.01, 0.05, 0.09, 0.1, 0.1, 0.1])


def test_warmup_cosine_decay_rate():
    opt = AdamWarmupCosineDecay([nn.Parameter(torch.ones(1))], lr=0.1, warmup=10, total_steps=110, min_lr=0.01)
    assert rate(opt, 5) == pytest.approx(0.05)
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
    """Each preset equals Adam whose group lr is set to the preset's rate before every step, and
    leaves that rate in its group, as any schedule of lr does."""
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
        assert variant.param_groups[0]["lr"] == rate(variant, t)
    assert relative_difference(a, b) == 0.0


@pytest.mark.parametrize("make, message", [
    (lambda p: AdamWarmup(p, warmup=-1), r"AdamWarmup: warmup=-1 is out of range; expected warmup >= 0"),
    (lambda p: AdamWarmup(p, lr=-0.1), r"AdamWarmup: lr=-0.1 is out of range; expected lr >= 0"),
    (lambda p: Noam(p, d_model=0), r"Noam: d_model=0 is out of range; expected d_model >= 1"),
    (lambda p: Noam(p, warmup=0), r"Noam: warmup=0 is out of range; expected warmup >= 1"),
    (lambda p: AdamWarmupCosineDecay(p, lr=0.1, min_lr=0.2), r"AdamWarmupCosineDecay: min_lr=0.2 is out of range; expected min_lr in \[0, 0.1\]"),
    (lambda p: AdamWarmupCosineDecay(p, total_steps=0), r"AdamWarmupCosineDecay: total_steps=0 is out of range; expected total_steps >= 1"),
    (lambda p: AdamWarmupCosineDecay(p, warmup=100, total_steps=100), r"^AdamWarmupCosineDecay: warmup=100 steps is not shorter than total_steps=100"),
])
def test_bad_schedules_fail_naming_the_parameter(make, message):
    with pytest.raises(ValueError, match=message):
        make([nn.Parameter(torch.ones(1))])


def test_noam_rate_is_finite_from_the_first_step():
    opt = Noam([nn.Parameter(torch.ones(1))], warmup=10)
    assert math.isfinite(rate(opt, 1)) and rate(opt, 1) > 0


def test_a_group_added_later_and_lr_multipliers_follow_the_schedule():
    """The preset's schedule sets every group's lr, times its lr_multiplier, as a trainer's schedule does."""
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = AdamWarmup([{"params": [a], "lr_multiplier": 0.5}], lr=0.1, warmup=10)
    opt.add_param_group({"params": [b]})
    for step in range(1, 4):
        a.grad, b.grad = torch.ones(2), torch.ones(2)
        opt.step()
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5 * 0.01 * step, 0.01 * step])


def test_the_rate_resumes_from_the_step_count_in_the_state_dict():
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    first = AdamWarmup([a], lr=0.1, warmup=10)
    for _ in range(3):
        a.grad = torch.ones(2)
        first.step()
    resumed = AdamWarmup([b], lr=0.1, warmup=10)
    resumed.load_state_dict(first.state_dict())
    b.grad = torch.ones(2)
    resumed.step()
    assert resumed.param_groups[0]["lr"] == pytest.approx(0.04)
