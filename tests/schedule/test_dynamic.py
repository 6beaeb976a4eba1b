"""Tests of :mod:`cadence.schedule.dynamic`."""

from __future__ import annotations

import pytest

from cadence.schedule import Dynamic


def test_value_set_from_outside():
    s = Dynamic(0.5, range_=(0.0, 1.0))
    assert s(0) == 0.5
    s.set_value(0.25)
    assert s(0) == s(1000) == 0.25
    s.set_value(1.0)
    assert s(7) == 1.0


def test_out_of_range_rejected_and_value_kept():
    s = Dynamic(0.5, range_=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"Dynamic.set_value: value=1.5 is outside range_=\(0.0, 1.0\)"):
        s.set_value(1.5)
    assert s(0) == 0.5
    with pytest.raises(ValueError, match=r"Dynamic: value=-1.0 is outside range_"):
        Dynamic(-1, range_=(0, 1))


def test_unbounded():
    s = Dynamic(-1e9)
    s.set_value(1e9)
    assert s(0) == 1e9


@pytest.mark.parametrize("range_", [(1.0, 0.0), (0.0,), "ab", (0.0, float("nan"))])
def test_bad_range(range_):
    with pytest.raises(ValueError, match=r"Dynamic: range_"):
        Dynamic(0.5, range_=range_)


def test_repr_round_trip_keeps_current_value():
    s = Dynamic(0.5, range_=(0, 1))
    s.set_value(0.75)
    assert repr(s) == "Dynamic(value=0.75, range_=(0.0, 1.0))"
    assert eval(repr(s)) == s
    assert eval(repr(Dynamic(2.0))) == Dynamic(2.0)
    assert Dynamic(0.5, (0, 1)) != Dynamic(0.5, (0, 2))
