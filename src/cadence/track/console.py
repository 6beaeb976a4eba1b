"""The console, through rich: the progress of a run's phases, and the tables of ``cadence runs``.

On a terminal the running phase (``epoch 2 train``) has a live progress bar with its metrics,
speed and time left, which turns into a plain line when the phase ends. Elsewhere (CI, a log
file) a plain line is written every ``interval`` seconds and at the end of each phase::

    epoch 2 train 120/125 loss(avg20)=0.1234 accuracy(epoch)=0.9712 lr=0.001 85.3 it/s eta 0:00:01

Each metric is named as its kind (:mod:`cadence.track.kinds`) says: ``loss(avg20)`` the mean of
the last 20 values, ``accuracy(epoch)`` the phase's mean over the epoch so far, ``lr`` the raw
value at the step. Where the phase's time went (the trainer's ``<phase>.time.<part>`` shares) ends
the line a phase ends with, as percentages, and no other::

    epoch 2 train 125/125 loss(avg20)=0.1234 samples_per_second(epoch)=5432 time(epoch) data=12% compute=71% ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from cadence.track.store import RunSummary

#: The keys (after their phase) of the shares of a phase's time: shown at a phase's end only.
TIME = "time."

if TYPE_CHECKING:
    from cadence.track.tracker import Tracker


class PhaseDisplay:
    """Shows the phases of a run and their values on a rich ``console`` (standard error by default).

    The values are those ``tracker`` has resolved (:meth:`Tracker.resolved`), read at the
    display's own rate: a phase's step count moves at every :meth:`advance`, its values as the
    tracker hands them over, and :meth:`end_phase` waits for the last of them, so that the line
    a phase ends with holds its final values.

    * ``live``: draw progress bars (default: when the console is a terminal),
    * ``interval``: seconds between plain lines when not live,
    * ``refresh``: seconds between updates of a live bar,
    * ``clock``: the time source (for tests).
    """

    def __init__(self, tracker: Tracker, console: Console | None = None, *, live: bool | None = None,
                 interval: float = 10.0, refresh: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self.tracker = tracker
        self.console = console if console is not None else Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self.interval = interval
        self.refresh = refresh
        self.clock = clock
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._phase: str | None = None
        self._label = ""
        self._total = 0
        self._started_at = 0
        self._completed = 0
        self._start = 0.0
        self._last = 0.0

    def start_phase(self, name: str, total: int, epoch: int | None = None, done: int = 0) -> None:
        """Begin showing phase ``name`` (the namespace of the values it shows) of ``total`` steps, from step
        ``done`` (a phase resumed, or continued after a validation: speed and time left count from there)."""
        self._phase = name
        self._label = f"epoch {epoch} {name}" if epoch is not None else name
        self._total = total
        self._started_at = self._completed = done
        self._start = self._last = self.clock()
        if self.live:
            if self._progress is None:
                self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TextColumn("{task.fields[metrics]}"),
                                          TextColumn("{task.fields[speed]}"), TimeRemainingColumn(),
                                          console=self.console, transient=False)
                self._progress.start()
            self._task = self._progress.add_task(self._label, total=total, completed=done, metrics="", speed="")

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more steps of the phase; show them, with the values resolved so far, when it is due."""
        self._completed += n
        if self.clock() - self._last >= (self.refresh if self.live else self.interval):
            self._show(self.tracker.resolved(self._phase))

    def end_phase(self) -> None:
        """Finish the phase: its final values (waited for) as a plain line, which replaces a live bar."""
        self.tracker.flush()
        values = self.tracker.resolved(self._phase)
        if self.live and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._last = self.clock()
        self.log(self._line(values, times=True))
        self._phase = None

    def in_phase(self) -> bool:
        """Whether a phase has started and not ended."""
        return self._phase is not None

    def log(self, message: str) -> None:
        """Write one line, never folded (a log read by grep or a CI page keeps one line per update)."""
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Stop any live display."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _show(self, values: Mapping[str, float]) -> None:
        self._last = self.clock()
        if self.live:
            if self._task is not None:
                self._progress.update(self._task, completed=self._completed, metrics=_format(values),
                                      speed=self._speed())
        else:
            self.log(self._line(values))

    def _line(self, values: Mapping[str, float], times: bool = False) -> str:
        eta = self._eta()
        return " ".join(part for part in (self._label, f"{self._completed}/{self._total}", _format(values, times),
                                          self._speed(), f"eta {eta}" if eta else "") if part)

    def _speed(self) -> str:
        elapsed, steps = self.clock() - self._start, self._completed - self._started_at
        return f"{steps / elapsed:.1f} it/s" if elapsed > 0 and steps > 0 else ""

    def _eta(self) -> str:
        elapsed, steps = self.clock() - self._start, self._completed - self._started_at
        if steps <= 0 or elapsed <= 0 or self._completed >= self._total:
            return ""
        return format_duration((self._total - self._completed) * elapsed / steps)


def _format(metrics: Mapping[str, float], times: bool = False) -> str:
    """``name=value`` of every metric but the time shares; with ``times``, those after them as
    ``time(epoch) data=12% compute=71% ...``."""
    shown = [f"{name}={value:.4g}" for name, value in metrics.items() if not name.startswith(TIME)]
    shares = {name[len(TIME):]: value for name, value in metrics.items() if name.startswith(TIME)}
    if times and shares:
        kind = next(iter(shares)).partition("(")[2]
        shown.append(f"time{'(' + kind if kind else ''} " +
                     " ".join(f"{part.partition('(')[0]}={share:.0%}" for part, share in shares.items()))
    return " ".join(shown)


def format_runs(runs: list[RunSummary], max_metrics: int = 4, first: str | None = None) -> Table:
    """A table of runs for ``cadence runs``: id, name, status, tags (if any run has some), start, duration
    and final metrics (``first``, then validation metrics, at most ``max_metrics``, one a line so that the
    column stays readable on a narrow console), each named as its kind says."""
    table = Table(title=f"{len(runs)} runs", box=None, padding=(0, 1), pad_edge=False, collapse_padding=True,
                  header_style="bold underline")
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("status", no_wrap=True)
    tagged = any(run.tags for run in runs)
    if tagged:
        table.add_column("tags", overflow="fold")
    table.add_column("start", no_wrap=True)
    table.add_column("duration", no_wrap=True)
    table.add_column("final metrics", min_width=22, overflow="fold")
    for run in runs:
        keys = sorted((key for key in run.last_metrics if f".{TIME}" not in key),  # metrics, not where time went
                      key=lambda k: (k != first, not k.startswith("valid."), k))[:max_metrics]
        duration = "running" if run.duration is None else format_duration(run.duration)
        table.add_row(run.id, run.name, run.status, *(["\n".join(run.tags)] if tagged else []),
                      time.strftime("%Y-%m-%d\n%H:%M:%S", time.localtime(run.start_time)), duration,
                      "\n".join(f"{_label(run, k)}={run.last_metrics[k]:.4g}" for k in keys))
    return table


def _label(run: RunSummary, key: str) -> str:
    series = run.series.get(key)
    return series.label(key) if series is not None else key


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` of ``seconds``, rounded to the second."""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
