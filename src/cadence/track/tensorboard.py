"""TensorBoard event files, written with TensorBoard's own event writer (the ``tensorboard`` extra).

Each key becomes a tag named as :func:`cadence.track.kinds.label` names it, with the phase as
TensorBoard's group (the first dot becomes a slash):

* ``"value"``: its raw values, ``train/lr``;
* ``"moving"``: its raw values, ``train/loss``, and their moving average over the tracker's
  window, ``train/loss(avg20)``, the number the console shows;
* ``"epoch"``: the phase's mean over the epoch so far, ``valid/accuracy(epoch)``.

All the values of a step go into one event. TensorBoard's writer is written in Python
(protocol buffers, and a CRC-32C checksum of every record computed byte by byte): it takes
about 8 µs of CPU a value, on the writer's thread but holding Python's lock, so on a tiny
model it slows training by 10-20% (``benchmarks/tracking.py``), where the SQLite store costs
a few percent. That is why the event files are asked for (``tensorboard_dir``), not written
by default. A run resumed at step ``s``
(:meth:`TensorBoardSink.truncate`) writes a session-start event at step ``s + 1``: TensorBoard
then discards the events of the earlier attempt from step ``s + 1`` on, as it does for
``SummaryWriter(purge_step=...)``; the files keep them, the display does not.
"""

from __future__ import annotations

import importlib.util
import os
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cadence.track.store import Columns, Series


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (``pip install 'cadence[tensorboard]'``) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def tag(key: str, suffix: str = "") -> str:
    """The TensorBoard tag of ``key``: the phase, a slash, the rest (``train/loss(avg20)``)."""
    return key.replace(".", "/", 1) + suffix


class TensorBoardSink:
    """Writes values to TensorBoard event files in ``log_dir``."""

    name = "tensorboard"

    def __init__(self, log_dir: str | os.PathLike):
        if not tensorboard_available():
            raise ImportError(f"TensorBoard event files for {log_dir} need the tensorboard package: "
                              f"pip install 'cadence[tensorboard]'")
        self.log_dir = Path(log_dir)
        self._windows: dict[str, deque[float]] = {}
        self._writer: Any = None

    def write(self, columns: Columns, series: Mapping[str, Series]) -> None:
        """One event per step, holding every value of that step (and the moving averages)."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        by_step: dict[int, list[Summary.Value]] = {}
        for key, (steps, values) in columns.items():
            s = series[key]
            if s.kind == "epoch":
                for step, value in zip(steps, values):
                    by_step.setdefault(step, []).append(Summary.Value(tag=tag(key, "(epoch)"), simple_value=value))
                continue
            window = self._windows.get(key)
            if s.kind == "moving" and (window is None or window.maxlen != s.window):
                window = self._windows[key] = deque(window or (), maxlen=s.window)
            for step, value in zip(steps, values):
                at = by_step.setdefault(step, [])
                at.append(Summary.Value(tag=tag(key), simple_value=value))
                if s.kind == "moving":
                    window.append(value)
                    at.append(Summary.Value(tag=tag(key, f"(avg{s.window})"), simple_value=sum(window) / len(window)))
        writer = self._open()
        for step in sorted(by_step):
            writer.add_event(Event(step=step, summary=Summary(value=by_step[step])))
        # The event writer's own thread would go on writing (checksums in Python) into the next batch's
        # time: the batch is written when this returns.
        writer.flush()

    def restore(self, windows: Mapping[str, Sequence[float]]) -> None:
        """Start each moving average from the resumed run's window."""
        self._windows = {key: deque(values) for key, values in windows.items()}

    def truncate(self, step: int) -> None:
        """A session-start event at ``step + 1``: TensorBoard discards the earlier attempt's later events."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        self._open().add_event(Event(step=step + 1, session_log=SessionLog(status=SessionLog.START)))

    def event(self, step: int | None, kind: str, message: str) -> None:
        """Nothing: TensorBoard shows values (the run store keeps the events)."""

    def finish(self, status: str, error: str | None) -> None:
        """Flush the events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self) -> Any:
        if self._writer is None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = EventFileWriter(str(self.log_dir))
        return self._writer
