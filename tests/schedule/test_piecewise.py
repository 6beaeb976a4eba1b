"""Tests of :mod:`cadence.schedule.piecewise`: hand-computed values, outside values, errors, repr."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cadence.schedule import Flat, Piecewise, RelativePiecewise

WARMUP_DECAY = [(0, 0.0), (100, 1e-3), (1000, 1e-4)]


def test_values_at_and_between_endpoints():
    s = Piecewise(WARMUP_DECAY)
    assert [s(x) for x, _ in WARMUP_DECAY] == [y for _, y in WARMUP_DECAY]
    # 25/100 of the way from 0 to 1e-3; then 450/900 of the way from 1e-3 to 1e-4.
    assert s(25) == pytest.approx(0.25e-3, rel=1e-12)
    assert s(550) == pytest.approx(1e-3 - 0.5 * 0.9e-3, rel=1e-12)
    assert s(99.5) == pytest.approx(0.995e-3, rel=1e-12)


def test_outside_holds_the_ends_by_default():
    s = Piecewise([(10, 2.0), (20, 4.0)])
    assert s(-5) == s(0) == s(9.999) == 2.0
    assert s(20.001) == s(1e9) == 4.0


def test_outside_value_replaces_both_ends():
    s = Piecewise([(10, 2.0), (20, 4.0)], outside_value=-1)
    assert s(9.999) == s(20.001) == -1.0
    assert s(10) == 2.0 and s(20) == 4.0 and s(15) == 3.0


def test_single_endpoint_is_flat():
    s = Piecewise([(5, 0.1)])
    assert s(0) == s(5) == s(10) == 0.1


@pytest.mark.parametrize("endpoints", [[(0, 1.0), (10, 2.0), (5, 3.0)], [(0, 1.0), (10, 2.0), (10, 3.0)]])
def test_unsorted_or_duplicate_x(endpoints):
    with pytest.raises(ValueError, match=r"Piecewise: endpoints=\[\(0.0, 1.0\), \(10.0, 2.0\), .*strictly increasing"):
        Piecewise(endpoints)


@pytest.mark.parametrize("endpoints, match", [([], "non-empty"), ([(0, 1, 2)], r"endpoints\[0\]=\(0, 1, 2\)"),
                                              ([(0, "a")], r"endpoints\[0\]\[1\]='a'"),
                                              ([(float("inf"), 1)], r"endpoints\[0\]\[0\]=inf")])
def test_malformed_endpoints(endpoints, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Piecewise(endpoints)


def test_nan_step():
    with pytest.raises(ValueError, match="x=nan"):
        Piecewise(WARMUP_DECAY)(float("nan"))


def test_relative_endpoints_scale_with_total_steps():
    s = RelativePiecewise([(0, 0.0), (0.1, 1.0), (1, 0.5)], total_steps=200)
    assert s == RelativePiecewise([(0.0, 0.0), (0.1, 1.0), (1.0, 0.5)], 200)
    assert s(0) == 0.0 and s(10) == 0.5 and s(20) == 1.0 and s(200) == 0.5
    assert s(110) == pytest.approx(0.75, rel=1e-12)
    assert s(1000) == 0.5
    assert s.endpoints == ((0.0, 0.0), (20.0, 1.0), (200.0, 0.5))


@pytest.mark.parametrize("relative, total, match", [
    ([(0, 1.0), (1.5, 0.0)], 10, r"relative_endpoints\[1\] has x=1.5 .*expected a fraction"),
    ([(0.5, 1.0), (0.5, 0.0)], 10, r"relative_endpoints=\[\(0.5, 1.0\), \(0.5, 0.0\)\].*strictly increasing"),
    ([(0, 1.0)], 0, r"total_steps=0 is out of range; expected total_steps >= 1"),
    ([(0, 1.0)], 10.0, r"total_steps=10.0 is a float; expected an integer"),
])
def test_relative_errors(relative, total, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RelativePiecewise(relative, total)


@pytest.mark.parametrize("s", [Piecewise(WARMUP_DECAY), Piecewise([(1, 2)], outside_value=0.5),
                               RelativePiecewise([(0, 1.0), (0.5, 0.1)], 1000)])
def test_repr_round_trip(s):
    copy = eval(repr(s))
    assert copy == s and type(copy) is type(s)
    assert [copy(x) for x in range(-10, 1100, 7)] == [s(x) for x in range(-10, 1100, 7)]


def test_equality():
    assert Piecewise([(0, 1), (1, 2)]) == Piecewise([(0.0, 1.0), (1.0, 2.0)])
    assert Piecewise([(0, 1), (1, 2)]) != Piecewise([(0, 1), (1, 2)], outside_value=0)
    assert Piecewise([(0, 1.0)]) != Flat(1.0)
    assert Piecewise([(0, 1.0), (10, 2.0)]) != RelativePiecewise([(0, 1.0), (1, 2.0)], 10)


_y = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
_endpoints = st.lists(st.tuples(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), _y),
                      min_size=1, max_size=8, unique_by=lambda e: e[0]).map(sorted)


@given(_endpoints, st.floats(min_value=-2e6, max_value=2e6, allow_nan=False))
def test_stays_within_the_range_of_y(endpoints, x):
    ys = [y for _, y in endpoints]
    assert min(ys) <= Piecewise(endpoints)(x) <= max(ys)


@given(_endpoints)
def test_continuous_at_endpoints(endpoints):
    s = Piecewise(endpoints)
    xs = [x for x, _ in endpoints]
    widths = [b - a for a, b in zip(xs, xs[1:])]
    scale = max(abs(y) for _, y in endpoints) + 1.0
    for i, (x_i, y_i) in enumerate(endpoints):
        assert s(x_i) == y_i
        # A millionth of the neighbouring segments moves s by at most a millionth of their rise.
        delta = 1e-6 * min(widths[max(i - 1, 0):i + 1], default=1.0)
        for near in (x_i - delta, x_i + delta):
            assert abs(s(near) - y_i) <= 1e-5 * scale
