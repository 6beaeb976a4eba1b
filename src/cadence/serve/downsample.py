"""A long series cut down to about as many points as a chart can show, its extremes kept.

A run of 100,000 steps has 100,000 values per key; a chart 1,000 pixels wide shows at most a
couple of thousand of them. :func:`min_max` keeps, of each of ``points / 2`` buckets of
consecutive values, the lowest and the highest (min/max bucketing, the decimation of oscilloscopes
and of uPlot's own demos): a loss spike one step wide is still in the chart, where taking every
n-th value or a bucket's mean would hide it. The first and last values are always kept.
"""

from __future__ import annotations

import numpy as np

#: Points per series a chart gets by default.
POINTS = 2000


def min_max(steps: np.ndarray, values: np.ndarray, points: int = POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` and ``values`` cut down to at most ``points + 2`` of them: the first, the last, and the lowest
    and highest of each of ``points // 2`` buckets of consecutive values, in order. A series no longer
    than ``points`` comes back whole. NaN and infinities are never a bucket's extreme unless the whole
    bucket is non-finite (then one of them is kept, so that the gap shows)."""
    if points < 2:
        raise ValueError(f"points={points} is too few to keep a bucket's lowest and highest values; expected >= 2")
    n = len(values)
    if n <= points:
        return steps, values
    size = -(-n // (points // 2))
    rows = -(-n // size)
    finite = np.isfinite(values)
    lowest = _pad(np.where(finite, values, np.inf), rows * size).reshape(rows, size)
    highest = _pad(np.where(finite, values, -np.inf), rows * size).reshape(rows, size)
    starts = np.arange(rows) * size
    kept = np.unique(np.concatenate([[0, n - 1], np.minimum(starts + lowest.argmin(1), n - 1),
                                     np.minimum(starts + highest.argmax(1), n - 1)]))
    return steps[kept], values[kept]


def _pad(values: np.ndarray, length: int) -> np.ndarray:
    """``values`` made ``length`` long by repeating its last value (never a new extreme)."""
    return np.concatenate([values, np.full(length - len(values), values[-1])])
