r"""What a tracked value is, and the name that says so everywhere it shows.

Every key has one of three kinds, fixed when it is declared or first added:

* ``"value"``: the raw value at a step (a learning rate, a batch's loss). Shown as it is,
  under its bare name: ``train.lr``.
* ``"moving"``: a per-step value shown as its moving average over the last $N$ values (the
  tracker's ``smoothing``), as labml's ``set_queue`` does,
  $$\bar{x}_t = \frac{1}{\min(t, N)} \sum_{i=\max(1, t-N+1)}^{t} x_i ,$$
  named ``train.loss(avg20)``. The store keeps every raw $x_t$ and records $N$, so any
  reader can show the average again, or the raw values.
* ``"epoch"``: a phase's mean over the epoch so far (a metric's ``compute()``, added at the
  end of each slice of a phase), shown as its latest value, named ``valid.accuracy(epoch)``.

:func:`label` gives that name; the console, the TensorBoard tags, ``cadence show`` and the
plots' legends all use it, so a number never appears without what it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Kind = Literal["value", "moving", "epoch"]

#: The kinds, and what each is.
KINDS: dict[str, str] = {
    "value": "the raw value at a step",
    "moving": "the moving average over the last N values",
    "epoch": "the phase's mean over the epoch so far",
}


def check_kind(kind: object, where: str) -> Kind:
    """``kind`` if it is one of :data:`KINDS`, else a ``ValueError`` naming it and ``where`` it came from."""
    if kind not in KINDS:
        raise ValueError(f"{where}: kind={kind!r} is not a kind of tracked value; expected one of "
                         f"{', '.join(map(repr, KINDS))}")
    return kind  # type: ignore[return-value]


def label(key: str, kind: str, window: int | None = None) -> str:
    """The name under which ``key``'s values are shown: ``train.loss``, ``train.loss(avg20)``, ``valid.loss(epoch)``."""
    if kind == "moving":
        return f"{key}(avg{window})"
    if kind == "epoch":
        return f"{key}(epoch)"
    return key


def moving_average(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    r"""$\bar{x}_t$ for every $t$: the mean of the last ``window`` values (fewer at the start).

    A NaN makes the averages of the windows that hold it NaN, and no others.
    """
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return x
    sums = np.convolve(x, np.ones(window))[: len(x)]
    return sums / np.minimum(np.arange(1, len(x) + 1), window)
