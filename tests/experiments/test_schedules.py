"""The experiments' learning-rate schedule: linear warm-up, then a cosine to the run's last step."""

from __future__ import annotations

import pytest

from cadence.experiments.schedules import warmup_cosine


def test_it_warms_up_linearly_then_follows_a_cosine_to_min_lr_at_the_last_step():
    schedule = warmup_cosine(3e-3, 10, 110, 1e-4)
    assert schedule(0) == 0 and schedule(5) == pytest.approx(1.5e-3) and schedule(10) == pytest.approx(3e-3)
    assert schedule(60) == pytest.approx(1e-4 + (3e-3 - 1e-4) / 2) and schedule(110) == pytest.approx(1e-4)
    assert schedule(500) == pytest.approx(1e-4)


def test_without_warm_up_it_starts_at_lr():
    schedule = warmup_cosine(0.1, 0, 100)
    assert schedule(0) == pytest.approx(0.1) and schedule(50) == pytest.approx(0.05) and schedule(100) == 0


def test_a_warm_up_as_long_as_the_run_is_refused_naming_the_config():
    with pytest.raises(ValueError, match="CIFAR10Config: warmup=200 steps is not shorter than the run's 110 steps"):
        warmup_cosine(3e-3, 200, 110, 1e-4, where="CIFAR10Config")
