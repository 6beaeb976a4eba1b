"""Schedules bound to group hyper-parameters: lr (with multipliers), betas[0], weight_decay, momentum."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.optim import Adam, AdamWarmup, Noam
from cadence.optim.helpers.hyperparams_schedule import HyperParameterScheduler
from cadence.schedule import Cosine, Linear, LinearWarmup, Piecewise


def test_lr_betas_and_weight_decay_follow_their_schedules():
    model = nn.Linear(3, 2)
    opt = Adam(model.parameters(), lr=1.0)
    scheduler = HyperParameterScheduler(opt, {"lr": Piecewise([(0, 0.0), (10, 1e-3)]),
                                              "betas[0]": Piecewise([(0, 0.85), (10, 0.95)]),
                                              "weight_decay": lambda t: 0.01 * t})
    applied = scheduler.step(5)
    group = opt.param_groups[0]
    assert applied == pytest.approx({"lr": 5e-4, "betas[0]": 0.9, "weight_decay": 0.05})
    assert group["lr"] == pytest.approx(5e-4) and group["betas"] == pytest.approx((0.9, 0.999))
    assert isinstance(group["betas"], tuple) and group["weight_decay"] == pytest.approx(0.05)


def test_momentum_of_torch_sgd_and_selected_groups():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": a.parameters()}, {"params": b.parameters(), "momentum": 0.5}], lr=0.1,
                          momentum=0.9)
    HyperParameterScheduler(opt, {"momentum": lambda t: 0.1}, groups=[1]).step(0)
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.1]


def test_lr_multipliers_scale_the_scheduled_rate_and_differences_are_reported_per_group():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = Adam([{"params": a.parameters()}, {"params": b.parameters(), "lr_multiplier": 0.1}], lr=1.0)
    applied = HyperParameterScheduler(opt, {"lr": lambda t: 2.0}).step(3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2.0, 0.2])
    assert applied == pytest.approx({"lr.group0": 2.0, "lr.group1": 0.2})


@pytest.mark.parametrize("schedules, error, message", [
    ({"lrr": lambda t: 1.0}, ValueError, r"cannot schedule 'lrr': the optimizer's groups have no 'lrr'; they have: lr"),
    ({"betas": lambda t: 1.0}, ValueError, r"betas is a tuple .*name one element, e.g. 'betas\[0\]'"),
    ({"betas[2]": lambda t: 1.0}, ValueError, r"betas=\(0.9, 0.999\) has no element 2"),
    ({"lr": 0.1}, TypeError, r"the schedule of 'lr' is a float; expected a schedule"),
    ({"lr x": lambda t: 1.0}, ValueError, r"'lr x' is not of the form 'name' or 'name\[i\]'"),
])
def test_bad_bindings_fail_at_construction(schedules, error, message):
    with pytest.raises(error, match=message):
        HyperParameterScheduler(Adam(nn.Linear(2, 2).parameters()), schedules)


def test_a_negative_learning_rate_is_refused_with_its_step():
    scheduler = HyperParameterScheduler(Adam(nn.Linear(2, 2).parameters()), {"lr": lambda t: 1.0 - t})
    scheduler.step(1)
    with pytest.raises(ValueError, match=r"the schedule of 'lr' gave -1.0 at step 2"):
        scheduler.step(2)


def test_out_of_range_group_index():
    with pytest.raises(ValueError, match="group index 3 is out of range; the optimizer has 1 parameter groups"):
        HyperParameterScheduler(Adam(nn.Linear(2, 2).parameters()), {"lr": lambda t: 1.0}, groups=[3])


def test_noam_opt_sets_labmls_rate_before_each_step_and_resumes():
    from cadence.optim import NoamOpt

    model = nn.Linear(4, 2)
    noam = NoamOpt(512, 2.0, 40, torch.optim.Adam(model.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-9))
    rates = []
    for t in range(1, 101):
        noam.zero_grad()
        model(torch.ones(1, 4)).sum().backward()
        noam.step()
        rates.append(noam.optimizer.param_groups[0]["lr"])
        assert rates[-1] == pytest.approx(2.0 * 512 ** -0.5 * min(t ** -0.5, t * 40 ** -1.5), rel=1e-12)
    assert max(range(100), key=lambda i: rates[i]) == 39
    again = NoamOpt(512, 2.0, 40, torch.optim.Adam(model.parameters()))
    again.load_state_dict(noam.state_dict())
    assert again.rate() == noam.rate() == pytest.approx(rates[-1])


def moved_at_step_1(optimizer: torch.optim.Optimizer, schedules: dict) -> float:
    """How far a parameter at 0 moves at step 1 under a constant gradient, the schedules stepped on
    the trainer's clock (the optimizer steps taken before this one)."""
    (param,) = optimizer.param_groups[0]["params"]
    scheduler = HyperParameterScheduler(optimizer, schedules)
    for step in range(2):
        scheduler.step(step)
        before = param.item()
        param.grad = torch.ones(1)
        optimizer.step()
    return before - param.item()


def test_a_preset_and_a_schedule_of_its_rate_cannot_ramp_it_twice():
    """Issue 10: AdamWarmup(warmup=10) under a LinearWarmup(1e-3, 10) learning-rate schedule ramped
    twice, moving its parameter 2e-5 at step 1 instead of 1e-4. One mechanism schedules both now, and
    it refuses the second schedule of the rate, naming both."""
    preset = AdamWarmup([nn.Parameter(torch.zeros(1))], lr=1e-3, warmup=10)
    with pytest.raises(ValueError, match=r"cannot schedule 'lr' with LinearWarmup\(value=0.001, warmup=10.0, "
                                         r"start=0.0\): the optimizer \(Adam\) schedules 'lr' itself, with "
                                         r"LinearWarmup\(value=0.001, warmup=10.0, start=0.0\) \(as the presets "
                                         r"AdamWarmup, AdamWarmupCosineDecay and Noam do\).*schedule it once"):
        HyperParameterScheduler(preset, {"lr": LinearWarmup(1e-3, 10)})
    with pytest.raises(ValueError, match=r"cannot schedule 'lr' with Cosine\(value=0.5, total_steps=100.0, "
                                         r"floor=0.0\): the optimizer \(Adam\) schedules 'lr' itself, with "
                                         r"Noam\(value=1.0, d_model=512.0, warmup=4000.0\)"):
        HyperParameterScheduler(Noam([nn.Parameter(torch.zeros(1))]), {"lr": Cosine(0.5, 100)})
    # either schedule alone ramps the rate once: from outside, 1e-3 * 1/10 at step 1 of the trainer's
    # clock; the preset's own, 1e-3 * 2/10 at its step t = 2 (its clock counts the step being taken)
    outside = moved_at_step_1(Adam([nn.Parameter(torch.zeros(1))], lr=1.0), {"lr": LinearWarmup(1e-3, 10)})
    assert outside == pytest.approx(1e-4, rel=1e-5)
    assert moved_at_step_1(preset, {}) == pytest.approx(2e-4, rel=1e-5)


def test_a_preset_takes_schedules_of_its_other_hyper_parameters():
    preset = AdamWarmup([nn.Parameter(torch.zeros(1))], lr=1e-3, warmup=10)
    applied = HyperParameterScheduler(preset, {"betas[0]": Linear(0.8, 0.9, 10)}).step(5)
    assert applied == pytest.approx({"betas[0]": 0.85}) and preset.param_groups[0]["betas"][0] == pytest.approx(0.85)


def test_a_group_added_after_the_scheduler_is_scheduled_too():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = Adam(a.parameters(), lr=1.0)
    scheduler = HyperParameterScheduler(opt, {"lr": lambda t: 0.5})
    opt.add_param_group({"params": b.parameters(), "lr_multiplier": 0.1})
    scheduler.step(0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])
