"""Sweeps: a grid of configs of one experiment, a recorded run per point, as Hydra's multirun does.

``cadence train mnist -m optimizer.lr=1e-4,3e-4,1e-3 optimizer.name=adam,ada_belief`` runs
the six points of the product of the comma-separated values, one recorded run each, in the
order Hydra's basic sweeper takes them (the first override varies slowest). A comma inside
brackets, parentheses, braces or quotes does not separate values:
``optimizer.betas=[0.9,0.99],[0.8,0.9]`` sweeps two pairs and
``optimizer.schedule=Cosine(0.05, 625)`` is one value.

Every point's config is resolved before the first run, so a mistyped key or value refuses the
whole sweep and records nothing. The runs share a sweep tag (``sweep-<time>-<hex>``, or one
given), so ``cadence runs --tag`` lists them; a point that fails, building (missing data, a
value its optimizer refuses) or training (a diverging loss, a bug), is recorded as a failed run
with its error, and the sweep goes on to the next. A first Ctrl+C stops the sweep after the
point in progress has saved its checkpoint. :func:`final_and_best` reads each point's final
and best values as ``cadence show`` and ``cadence compare`` read them.
"""

from __future__ import annotations

import itertools
import secrets
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cadence.config import ConfigError, apply_overrides, to_dict
from cadence.experiments.runs import experiment_run
from cadence.track import RunStore, resolve_runs_dir
from cadence.track.history import better, histories

if TYPE_CHECKING:
    from cadence.experiments import Experiment

__all__ = ["Point", "final_and_best", "grid", "run_sweep", "split_values", "sweep_tag"]

_OPENING, _CLOSING = "([{", ")]}"


def split_values(override: str) -> tuple[str, list[str]]:
    """``"key=a,b,c"`` as ``("key", ["a", "b", "c"])``: the values between top-level commas.

    Commas within ``()``, ``[]``, ``{}`` or quotes belong to their value. An empty value, or
    unbalanced brackets or quotes, is a :class:`~cadence.config.ConfigError` naming the override.
    """
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form key=value or key=value1,value2,...")
    values, depth, quote, start = [], [], "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPENING:
            depth.append(_CLOSING[_OPENING.index(char)])
        elif char in _CLOSING:
            if not depth or depth.pop() != char:
                raise ConfigError(f"override {override!r}: unbalanced {char!r} at character {len(key) + 1 + i + 1}")
        elif char == "," and not depth:
            values.append(text[start:i])
            start = i + 1
    if quote or depth:
        raise ConfigError(f"override {override!r}: unclosed {quote or _OPENING[_CLOSING.index(depth[-1])]!r}")
    values.append(text[start:])
    if len(values) > 1 and any(not value.strip() for value in values):
        raise ConfigError(f"override {override!r}: an empty value in the sweep {text!r}; expected values "
                          f"separated by single commas, e.g. {key}=1e-4,3e-4 (an empty string is '')")
    return key.strip(), values


def grid(overrides: Sequence[str]) -> list[list[str]]:
    """The points of a sweep: for each, the overrides ``key=value`` that make it, in the order of ``overrides``.

    The product of every override's values, the first override varying slowest; an override
    of one value is in every point. A key given twice is a :class:`~cadence.config.ConfigError`.
    """
    axes, seen = [], set()
    for override in overrides:
        key, values = split_values(override)
        if key in seen:
            raise ConfigError(f"override {override!r}: {key} is given twice; give its values once, "
                              f"separated by commas")
        seen.add(key)
        axes.append([f"{key}={value}" for value in values])
    return [list(point) for point in itertools.product(*axes)]


def sweep_tag() -> str:
    """A new sweep's tag: ``sweep-`` and the local time to the second and two random bytes."""
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@dataclass
class Point:
    """One point of a sweep: its overrides, and the run that trained it (``status``; ``error`` if it failed, the
    signal that stopped it if interrupted)."""

    overrides: list[str]
    run_id: str | None = None
    status: str = "pending"
    error: str | None = None
    stopped_by: int | None = None


def run_sweep(experiment: Experiment, overrides: Sequence[str], *, tag: str | None = None,
              data_dir: str | Path | None = None, runs_dir: str | Path | None = None, console: bool = True,
              log: Callable[[str], None] = lambda message: None) -> tuple[str, list[Point]]:
    """Train every point of the grid of ``overrides`` as a run of ``experiment`` tagged ``tag``; return the tag
    and the points.

    Raises :class:`~cadence.config.ConfigError` before any run when a point's config does
    not resolve. ``log`` is told of each point as it starts and of each failure (with its
    traceback unless it is missing data, a bad value or a diverging loss). A point
    interrupted by a first Ctrl+C ends the sweep (the later points stay ``pending``); a second
    one raises ``KeyboardInterrupt``.
    """
    points = [Point(list(p)) for p in grid(overrides)]
    configs = []
    for point in points:
        try:
            configs.append(apply_overrides(experiment.config(), point.overrides))
        except ConfigError as e:
            raise ConfigError(f"sweep point {' '.join(point.overrides)}: {e}") from None
    tag = tag or sweep_tag()
    for i, (point, config) in enumerate(zip(points, configs), start=1):
        log(f"sweep {tag}: point {i}/{len(points)}: {' '.join(point.overrides) or '(the defaults)'}")
        try:
            built = experiment.build(config, data_dir)
            with experiment_run(experiment.name, built, runs_dir=runs_dir, tags=[tag], console=console) as trainer:
                point.run_id = trainer.run_context.run_id
                trainer.run()
            point.status, point.stopped_by = trainer.status, trainer.stopped_by
        except KeyboardInterrupt:
            raise
        except Exception as e:
            point.status, point.error = "failed", "".join(traceback.format_exception_only(type(e), e)).strip()
            if point.run_id is None:  # failed while building: record the point as a failed run all the same
                with RunStore(resolve_runs_dir(runs_dir)) as store:
                    point.run_id = store.create_run(experiment.name, to_dict(config), tags=[tag])
                    store.finish(point.run_id, "failed", point.error)
            one_line = isinstance(e, (OSError, ValueError, ArithmeticError))  # missing data, a bad value, divergence
            log(f"sweep {tag}: point {i}/{len(points)} failed (run {point.run_id}): {point.error}"
                + ("" if one_line else "\n" + traceback.format_exc().rstrip()))
        if point.status == "interrupted":
            log(f"sweep {tag}: interrupted at point {i}/{len(points)}; the later points were not run")
            break
    return tag, points


def final_and_best(runs_dir: str | Path | None, run_ids: Sequence[str]) -> dict[str, dict[str, tuple]]:
    """Per run, per key that has a better direction (losses, accuracies, bits per character, ...): the final and
    the best ``(step, value)``, each as the key's kind defines it (as ``cadence compare`` shows them), keyed by
    the key's label (``valid.loss(epoch)``, ``train.loss(avg20)``)."""
    table: dict[str, dict[str, tuple]] = {}
    with RunStore(resolve_runs_dir(runs_dir)) as store:
        for run_id in run_ids:
            table[run_id] = {}
            for key, history in histories(store, run_id).items():
                if better(key) is not None and history.final() is not None:
                    table[run_id][history.shown()[1]] = (history.final(), history.best())
    return table
