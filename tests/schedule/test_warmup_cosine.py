"""The warm-up + cosine schedule against its formula, its pieces, and its errors."""

from __future__ import annotations

import math

import pytest

from cadence.schedule import Cosine, LinearWarmup, Sequential, parse_schedule, warmup_cosine


def formula(t: float, v: float, w: float, T: float, v_min: float) -> float:
    """The module docstring's s(t), written out."""
    if t < w:
        return v * t / w
    return v_min + (v - v_min) * 0.5 * (1 + math.cos(math.pi * (min(t, T) - w) / (T - w)))


@pytest.mark.parametrize("w, T, v_min", [(10, 110, 1e-4), (0, 100, 0.0), (1, 2, 0.5), (25.5, 300, 1e-3)])
def test_it_follows_the_formula_at_every_step_and_holds_the_floor_after(w, T, v_min):
    s = warmup_cosine(3e-3, w, T, v_min)
    for t in [*range(0, int(T) + 20), 1e6]:
        assert s(t) == pytest.approx(formula(t, 3e-3, w, T, v_min), rel=1e-12, abs=1e-15), t
    assert s(T) == pytest.approx(v_min) and s(w) == pytest.approx(3e-3)


def test_it_is_the_warm_up_and_the_cosine_in_sequence_and_the_cosine_alone_without_warm_up():
    assert warmup_cosine(0.1, 10, 110, 0.01) == Sequential([LinearWarmup(0.1, 10), Cosine(0.1, 100, floor=0.01)], [10])
    assert warmup_cosine(0.1, 0, 50) == Cosine(0.1, 50)
    assert parse_schedule(repr(warmup_cosine(0.1, 10, 110))) == warmup_cosine(0.1, 10, 110)


@pytest.mark.parametrize("args, where, message", [
    ((3e-3, 200, 110), {}, r"^warmup_cosine: warmup=200 steps is not shorter than total_steps=110; expected a warm-up "
                           r"that ends before the cosine does"),
    ((3e-3, 110, 110), {"where": "MyConfig"}, r"^MyConfig: warmup=110 steps is not shorter than total_steps=110"),
    ((3e-3, -1, 110), {}, r"^warmup_cosine: warmup=-1 is out of range; expected warmup >= 0$"),
    ((3e-3, 0, 0), {}, r"^warmup_cosine: total_steps=0 is out of range; expected total_steps > 0$"),
])
def test_a_warm_up_that_does_not_end_before_the_cosine_or_a_bad_count_is_refused_naming_the_caller(args, where,
                                                                                                  message):
    with pytest.raises(ValueError, match=message):
        warmup_cosine(*args, **where)
