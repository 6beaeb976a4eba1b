"""A recorded run read back: its series as their kinds define them, final and best values, config
differences. What ``cadence show``, ``compare``, ``plot`` and ``export`` print.

**Final and best.** A series' final value is its value at its largest step, and its best the
lowest or highest of its values, each *as its kind defines it*: for a moving series the
moving average (a single batch's loss is not the run's best loss), for a raw or epoch series
the values themselves. Which way is better is read from the key's last part: lower for
losses, perplexity, bits per character and errors; higher for accuracies, precision, recall
and F1 scores; for any other key there is no best (:func:`better`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cadence.track.kinds import label, moving_average
from cadence.track.store import RunStore, Series

#: Key endings (the last part of a key, or its end) whose lower values are better.
LOWER_IS_BETTER = ("loss", "perplexity", "bits_per_character", "bpc", "error", "nll")

#: Key endings whose higher values are better.
HIGHER_IS_BETTER = ("accuracy", "acc", "precision", "recall", "f1", "auc")

#: A value a run's config does not have, in :func:`config_differences`.
MISSING = object()


def better(key: str) -> str | None:
    """``"lower"``, ``"higher"`` or ``None``: which values of ``key`` are better, from its last part."""
    name = key.rsplit(".", 1)[-1].lower()
    if name.endswith(LOWER_IS_BETTER):
        return "lower"
    if name.endswith(HIGHER_IS_BETTER):
        return "higher"
    return None


@dataclass(frozen=True)
class History:
    """The recorded values of one key of one run: ``steps`` and raw ``values``, and what they are."""

    key: str
    series: Series
    steps: np.ndarray
    values: np.ndarray

    def shown(self, smooth: int | None = None) -> tuple[np.ndarray, str]:
        """The values as their kind defines them, and their name: a moving series' moving average
        (``train.loss(avg20)``), the others as recorded. ``smooth=N`` takes the moving average of
        the last ``N`` of a raw or moving series instead (``N=1``: the raw values); epoch means are
        left as they are, since averaging them across epochs would misreport them."""
        kind, window = self.series.kind, self.series.window
        if smooth is not None and kind != "epoch":
            kind, window = ("value", None) if smooth == 1 else ("moving", smooth)
        if kind == "moving":
            return moving_average(self.values, window), label(self.key, "moving", window)
        return self.values, label(self.key, kind)

    def final(self) -> tuple[int, float] | None:
        """``(step, value)`` at the largest step, as :meth:`shown`; ``None`` without values."""
        if not len(self.steps):
            return None
        return int(self.steps[-1]), float(self.shown()[0][-1])

    def best(self) -> tuple[int, float] | None:
        """``(step, value)`` of the best value as :meth:`shown` (the first, on ties); ``None`` for a key
        with no better direction or no values other than NaN."""
        direction = better(self.key)
        values = self.shown()[0]
        if direction is None or not np.any(~np.isnan(values)):
            return None
        i = int(np.nanargmin(values) if direction == "lower" else np.nanargmax(values))
        return int(self.steps[i]), float(values[i])


def histories(store: RunStore, run_id: str, keys: Sequence[str] | None = None) -> dict[str, History]:
    """The :class:`History` of each of ``keys`` (every key, by default) of run ``run_id``."""
    series = store.series(run_id)
    found = {}
    for key in series if keys is None else keys:
        steps, values = store.values(run_id, key)
        if len(steps):
            found[key] = History(key, series.get(key, Series("value")), steps, values)
    return found


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: ``{"optimizer": {"lr": 1e-3}}`` is ``{"optimizer.lr": 1e-3}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(configs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The dotted keys whose values are not the same in every config, each with its value in each
    (:data:`MISSING` where a config has no such key), in order of first appearance."""
    flat = [flatten(config) for config in configs]
    keys = list(dict.fromkeys(key for f in flat for key in f))
    differences = {}
    for key in keys:
        values = [f.get(key, MISSING) for f in flat]
        if any(not _same(v, values[0]) for v in values[1:]):
            differences[key] = values
    return differences


def _same(a: Any, b: Any) -> bool:
    return a is b or (a == b and type(a) is type(b)) or (isinstance(a, float) and isinstance(b, float)
                                                          and math.isnan(a) and math.isnan(b))
