"""What the run store gives back: a key's series, a run's events, a run's summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cadence.track.kinds import label

__all__ = ["Event", "RunSummary", "Series"]


@dataclass(frozen=True)
class Series:
    """What a key of a run is: its kind and, for a moving average, its window."""

    kind: str
    window: int | None = None

    def label(self, key: str) -> str:
        """The name ``key``'s values are shown under (:func:`cadence.track.kinds.label`)."""
        return label(key, self.kind, self.window)


@dataclass(frozen=True)
class Event:
    """Something that happened to a run: when (seconds since the epoch), at which optimizer step (when known),
    what kind (``resumed``, ``restarted``, ``interrupted``) and a message."""

    time: float
    step: int | None
    kind: str
    message: str


@dataclass(frozen=True)
class RunSummary:
    """One run as the store knows it; times are seconds since the epoch.

    ``last_metrics`` holds each key's final value as its kind defines it (a moving series: the
    mean of its last ``window`` values); ``series`` says what each key is. ``status`` is ``dead`` for a
    run recorded running whose process is gone (:mod:`cadence.track.store`); ``heartbeat`` is its
    process's last sign of life, ``host`` where it ran, ``step`` the largest step of its values and
    ``planned_steps`` the optimizer steps it is to take in all, when it said.
    """

    id: str
    name: str
    status: str
    config: dict[str, Any]
    start_time: float
    end_time: float | None
    error: str | None
    last_metrics: dict[str, float]
    tags: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    heartbeat: float | None = None
    host: str | None = None
    step: int | None = None
    planned_steps: int | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while running."""
        return None if self.end_time is None else self.end_time - self.start_time

    def time_left(self, now: float) -> float | None:
        """Seconds a running run has left, at its pace so far (from its start to its latest step, of its planned
        steps); ``None`` when it is not running or has not said how long it is."""
        if self.status != "running" or not self.planned_steps or not self.step:
            return None
        return max(0.0, (now - self.start_time) * (self.planned_steps - self.step) / self.step)
