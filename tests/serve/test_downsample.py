"""Min/max bucketing: a series cut to about 2,000 points keeps its extremes, in order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cadence.serve.downsample import POINTS, min_max


def test_a_short_series_comes_back_whole():
    steps, values = np.arange(50), np.random.rand(50)
    kept_steps, kept_values = min_max(steps, values)
    assert kept_steps is steps and kept_values is values


def test_a_spike_of_one_step_in_100_000_is_kept():
    steps = np.arange(1, 100_001)
    values = np.exp(-steps / 20_000) + 0.01 * np.random.default_rng(0).random(len(steps))
    values[61_234] = 9.0  # a loss spike one step wide
    values[7_777] = -3.0  # and a dip
    kept_steps, kept_values = min_max(steps, values)
    assert len(kept_steps) <= POINTS + 2
    assert 61_235 in kept_steps and 9.0 in kept_values
    assert 7_778 in kept_steps and -3.0 in kept_values
    assert kept_steps[0] == 1 and kept_steps[-1] == 100_000
    assert np.all(np.diff(kept_steps) > 0)
    assert np.array_equal(kept_values, values[kept_steps - 1])


@given(n=st.integers(3, 5000), points=st.integers(2, 400), seed=st.integers(0, 2**16))
def test_every_bucket_keeps_its_lowest_and_highest(n, points, seed):
    values = np.random.default_rng(seed).normal(size=n)
    steps = np.arange(n) * 3
    kept_steps, kept_values = min_max(steps, values, points)
    if n <= points:
        assert len(kept_steps) == n
        return
    assert len(kept_steps) <= points + 2
    assert values.max() in kept_values and values.min() in kept_values
    size = -(-n // (points // 2))
    for start in range(0, n, size):
        bucket = values[start:start + size]
        assert bucket.max() in kept_values and bucket.min() in kept_values


def test_non_finite_values_are_never_an_extreme_unless_a_bucket_has_nothing_else():
    values = np.arange(10_000, dtype=float)
    values[5000] = np.nan
    values[5001] = np.inf
    values[9000:] = np.nan
    kept_steps, kept_values = min_max(np.arange(10_000), values, 100)
    assert not np.isinf(kept_values).any()
    assert 5000 not in kept_steps and 5001 not in kept_steps
    assert np.isnan(kept_values[kept_steps >= 9000]).all() and (kept_steps >= 9000).any()


def test_too_few_points_is_refused_naming_the_value():
    with pytest.raises(ValueError, match="points=1"):
        min_max(np.arange(10), np.arange(10.0), 1)
