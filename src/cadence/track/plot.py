"""Plots of runs: one or more metrics of several runs overlaid, with matplotlib (imported when plotting).

Each run has its own colour; each key its own line style (training solid, validation dashed,
any other phase dotted), so the training and validation curves of one run read together.
Each line is named by its run and by what its values are (:func:`cadence.track.kinds.label`):
``20261124-101010-abcd train.loss(avg20)``. Epoch means are drawn with a marker at each report.

The x axis is the optimizer step, or with ``x="samples"`` the count of training samples at that
step, read from the run's :data:`cadence.track.SAMPLES_KEY` series.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cadence.track.history import History, histories
from cadence.track.store import RunStore
from cadence.track.tracker import SAMPLES_KEY

#: x axes :func:`plot_runs` draws, and their labels.
X_AXES = {"step": "optimizer step", "samples": "training samples"}

_STYLES = {"train": "-", "valid": "--"}


def metric_keys(available: Sequence[str], metric: str) -> list[str]:
    """The keys ``metric`` names among ``available``: itself if it is one; a name without a phase
    (``loss``) names every phase's (``train.loss``, ``valid.loss``)."""
    if metric in available:
        return [metric]
    return sorted((key for key in available if key.split(".", 1)[-1] == metric),
                  key=lambda k: (k.split(".")[0] != "train", k.split(".")[0] != "valid", k))


def plot_runs(store: RunStore, run_ids: Sequence[str], metrics: Sequence[str], path: str | os.PathLike, *,
              smooth: int | None = None, x: str = "step", log: bool = False,
              size: tuple[float, float] = (8.0, 4.5), dpi: int = 100) -> Path:
    """Draw ``metrics`` (keys, or names without a phase) of runs ``run_ids`` into the image ``path``
    (its suffix picks the format: png, svg, pdf); return the path.

    ``smooth=N`` draws the moving average of the last ``N`` values of raw and moving series;
    ``log`` makes the y axis logarithmic.

    Raises:
        ValueError: ``x`` is not an axis of :data:`X_AXES`, a metric is in none of the runs (the
            message lists the runs' keys), or a run has no samples series for ``x="samples"``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if x not in X_AXES:
        raise ValueError(f"plot: x={x!r} is not an axis; expected one of {', '.join(X_AXES)}")
    figure = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = [f"C{i}" for i in range(10)]
    drawn = 0
    for i, run_id in enumerate(dict.fromkeys(run_ids)):
        available = list(store.series(run_id))
        keys = list(dict.fromkeys(key for metric in metrics for key in metric_keys(available, metric)))
        wanted = keys + ([SAMPLES_KEY] if x == "samples" else [])
        series = histories(store, run_id, wanted)
        to_x = _samples(series.get(SAMPLES_KEY), run_id) if x == "samples" else (lambda steps: steps)
        for key in keys:
            history = series.get(key)
            if history is None:
                continue
            values, name = history.shown(smooth)
            epoch = history.series.kind == "epoch"
            axes.plot(to_x(history.steps), values, color=colours[i % len(colours)],
                      linestyle=_STYLES.get(key.split(".")[0], ":"), marker="o" if epoch else None,
                      markersize=3, linewidth=1.5, label=f"{run_id} {name}")
            drawn += 1
    if not drawn:
        keys = sorted({key for run_id in run_ids for key in store.series(run_id)})
        raise ValueError(f"plot: no run of {', '.join(run_ids)} has {' or '.join(map(repr, metrics))}; their keys: "
                         f"{', '.join(keys) or 'none'}")
    axes.set_xlabel(X_AXES[x])
    axes.set_ylabel(", ".join(metrics))
    if log:
        axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def _samples(samples: History | None, run_id: str):
    """Steps to samples, by the run's samples series (interpolated between its records)."""
    if samples is None or not len(samples.steps):
        raise ValueError(f"plot: run {run_id} records no {SAMPLES_KEY!r} (the count of training samples by step); "
                         f"plot it against the step (x='step')")
    return lambda steps: np.interp(steps, samples.steps, samples.values)

