"""Tests of :mod:`cadence.schedule.flat`."""

from __future__ import annotations

import pytest

from cadence.schedule import Flat, Schedule


def test_value_at_every_step():
    s = Flat(3e-4)
    assert [s(x) for x in (0, 1, 2.5, 10_000)] == [3e-4] * 4
    assert isinstance(s, Schedule)


def test_repr_round_trip_and_equality():
    s = Flat(1)
    assert repr(s) == "Flat(value=1.0)"
    assert eval(repr(s)) == s
    assert Flat(1.0) != Flat(2.0)


@pytest.mark.parametrize("value, error", [("0.1", TypeError), (None, TypeError), (float("nan"), ValueError),
                                          (float("inf"), ValueError)])
def test_bad_value(value, error):
    with pytest.raises(error, match=r"Flat: value="):
        Flat(value)
