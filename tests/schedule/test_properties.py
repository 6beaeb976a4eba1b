"""Property tests: continuity at boundaries, bounds, and monotonicity where promised."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.schedule import (Cosine, CosineWarmRestarts, Exponential, Linear, LinearWarmup, OneCycle, Polynomial,
                              Sequential, WarmupStableDecay)

values = st.floats(1e-6, 10.0)
steps = st.integers(1, 5000)
fractions = st.floats(0.0, 1.0)


def nondecreasing(s, n):
    xs = [s(x) for x in range(n + 1)]
    return all(b >= a - 1e-12 * max(1.0, abs(a)) for a, b in zip(xs, xs[1:]))


def nonincreasing(s, n):
    xs = [s(x) for x in range(n + 1)]
    return all(b <= a + 1e-12 * max(1.0, abs(a)) for a, b in zip(xs, xs[1:]))


@settings(max_examples=60, deadline=None)
@given(v=values, w=steps, start=fractions)
def test_warmup_rises_within_its_bounds(v, w, start):
    s = LinearWarmup(v, w, start=start * v)
    assert nondecreasing(s, min(w + 5, 600))
    assert all(start * v - 1e-12 <= s(x) <= v + 1e-12 for x in range(0, w + 5, max(1, w // 50)))


@settings(max_examples=60, deadline=None)
@given(v=values, t=steps, floor=fractions, power=st.floats(0.1, 4.0))
def test_decays_fall_within_their_bounds(v, t, floor, power):
    for s in (Cosine(v, t, floor * v), Linear(v, floor * v, t), Polynomial(v, t, power, floor * v)):
        assert nonincreasing(s, min(t + 5, 600))
        assert all(floor * v - 1e-12 <= s(x) <= v + 1e-12 for x in range(0, t + 5, max(1, t // 50)))


@settings(max_examples=40, deadline=None)
@given(v=values, gamma=st.floats(0.5, 0.9999))
def test_exponential_decreases(v, gamma):
    assert nonincreasing(Exponential(v, gamma), 300)


@settings(max_examples=60, deadline=None)
@given(v=values, w=st.integers(1, 300), stable=st.integers(0, 300), d=st.integers(1, 300), floor=fractions)
def test_wsd_is_continuous_at_its_boundaries_and_bounded(v, w, stable, d, floor):
    s = WarmupStableDecay(v, w, stable, d, floor * v)
    eps = 1e-7
    for b in (w, w + stable, w + stable + d):
        assert abs(s(b - eps) - s(b)) <= 1e-6 * v
    assert all(min(0.0, floor * v) - 1e-12 <= s(x) <= v + 1e-12 for x in range(0, w + stable + d + 10))


@settings(max_examples=60, deadline=None)
@given(v=values, w=st.integers(1, 500), t=st.integers(1, 2000))
def test_warmup_then_cosine_is_continuous_at_the_boundary(v, w, t):
    s = Sequential([LinearWarmup(v, w), Cosine(v, t)], [w])
    assert abs(s(w - 1e-7) - s(w)) <= 1e-6 * v


@settings(max_examples=40, deadline=None)
@given(v=values, t=st.integers(10, 3000), pct=st.floats(0.05, 0.45), three=st.booleans())
def test_one_cycle_stays_within_its_range(v, t, pct, three):
    s = OneCycle(v, t, pct_start=pct, three_phase=three)
    lows = v / 25 / 1e4
    assert all(lows - 1e-12 <= s(x) <= v + 1e-12 for x in range(0, t, max(1, t // 200)))


@settings(max_examples=40, deadline=None)
@given(v=values, t0=st.integers(1, 100), mult=st.integers(1, 3), floor=fractions)
def test_restarts_stay_within_their_range(v, t0, mult, floor):
    s = CosineWarmRestarts(v, t0, mult, floor * v)
    assert all(floor * v - 1e-12 <= s(x) <= v + 1e-12 for x in range(0, 1000, 7))
