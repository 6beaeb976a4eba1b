"""TensorBoard event files: TensorBoard's protocol buffers in its record format (the ``tensorboard`` extra).

Each key becomes a tag named as :func:`cadence.track.kinds.label` names it, with the phase as
TensorBoard's group (the first dot becomes a slash):

* ``"value"``: its raw values, ``train/lr``;
* ``"moving"``: its raw values, ``train/loss``, and their moving average over the tracker's
  window, ``train/loss(avg20)``, the number the console shows;
* ``"epoch"``: the phase's mean over the epoch so far, ``valid/accuracy(epoch)``.

All the values of a step go into one event, built with TensorBoard's protocol buffers. The
events of a batch (the tracker hands one over every 10,000 values or 2 s) are framed in
TensorBoard's record format (:func:`record`: each event's length and bytes, each with its
masked CRC-32C, as ``tensorboard.summary.writer.record_writer`` frames them) and written to the
event file in one call, on the tracker's writer thread. TensorBoard's own writer computes the
checksums in Python, byte by byte (about 35 µs of CPU for a step of 10 values, holding
Python's lock, so slowing the training thread) and hands each event to a thread of its own
through a queue of 10; the checksums here are ``google-crc32c``'s (C, part of the
``tensorboard`` extra; TensorBoard's Python checksum when it is missing), and no thread of
their own: the writer's thread spends about 9 µs of CPU a step of 10 values, where TensorBoard's writer
spent 82 µs (``benchmarks/tracking.py`` times the cost against the store's).

The same sink writes a recorded run's event files afterwards (:func:`export_run`, ``cadence
export RUN --format tensorboard -o DIR``), from the store, at no cost to the training: the
same tags, moving averages and epoch means as written live. A run resumed at step ``s``
(:meth:`TensorBoardSink.truncate`) writes a session-start event at step ``s + 1``: TensorBoard
then discards the events of the earlier attempt from step ``s + 1`` on, as it does for
``SummaryWriter(purge_step=...)``; the files keep them, the display does not.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from cadence.track.store import Columns, RunStore, Series

#: The prefix of an event file's name, as TensorBoard's writers name them (its reader looks for it).
EVENT_FILE_PREFIX = "events.out.tfevents"

#: Steps of a run an export writes at a time (the sink's batch).
EXPORT_STEPS = 10_000

_LENGTH, _CHECKSUM = struct.Struct("<Q"), struct.Struct("<I")
_files = itertools.count()


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (``pip install 'cadence[tensorboard]'``) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def tag(key: str, suffix: str = "") -> str:
    """The TensorBoard tag of ``key``: the phase, a slash, the rest (``train/loss(avg20)``)."""
    return key.replace(".", "/", 1) + suffix


def _crc32c() -> Callable[[bytes], int]:
    """The CRC-32C of bytes: ``google-crc32c``'s (C), else TensorBoard's own (Python, a thousand times slower)."""
    try:
        from google_crc32c import value
    except ImportError:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as value
    return value


def masked_crc32c(data: bytes, crc32c: Callable[[bytes], int] | None = None) -> int:
    r"""TensorBoard's masked checksum of ``data``: its CRC-32C $c$ rotated right by 15 bits, plus a constant,
    $((c \gg 15) \lor (c \ll 17)) + \mathtt{0xA282EAD8} \bmod 2^{32}$."""
    c = (crc32c or _crc32c())(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes, crc32c: Callable[[bytes], int] | None = None) -> bytes:
    """``data`` (a serialized event) framed as a record of TensorBoard's event files: its length (8 bytes, little
    endian), the length's masked checksum, the data, the data's masked checksum (4 bytes each)."""
    crc32c = crc32c or _crc32c()
    length = _LENGTH.pack(len(data))
    return b"".join((length, _CHECKSUM.pack(masked_crc32c(length, crc32c)), data,
                     _CHECKSUM.pack(masked_crc32c(data, crc32c))))


class TensorBoardSink:
    """Writes values to TensorBoard event files in ``log_dir``: a new file from the first write on."""

    name = "tensorboard"

    def __init__(self, log_dir: str | os.PathLike):
        if not tensorboard_available():
            raise ImportError(f"TensorBoard event files for {log_dir} need the tensorboard package: "
                              f"pip install 'cadence[tensorboard]'")
        from tensorboard.compat.proto.event_pb2 import Event

        self.log_dir = Path(log_dir)
        self._Event = Event
        self._crc32c = _crc32c()
        self._windows: dict[str, deque[float]] = {}
        #: Each key's tags: ``(raw, average)``, the average's ``None`` but for a moving key.
        self._tags: dict[tuple[str, Series], tuple[str, str | None]] = {}
        self._file: IO[bytes] | None = None

    def write(self, columns: Columns, series: Mapping[str, Series]) -> None:
        """One event per step, holding every value of that step (and the moving averages); the batch's events
        written in one call. Each value is added to its step's event in place (``value.add``: half the time of
        building each ``Summary.Value`` and the lists of them)."""
        Event = self._Event
        events: dict[int, Any] = {}
        #: Each step's list of values, inside its event.
        at_step: dict[int, Any] = {}
        for key, (steps, values) in columns.items():
            s = series[key]
            tags = self._tags.get((key, s))
            if tags is None:
                tags = self._tags[key, s] = (tag(key, "(epoch)") if s.kind == "epoch" else tag(key),
                                            tag(key, f"(avg{s.window})") if s.kind == "moving" else None)
            raw, average = tags
            window = None
            if average is not None:
                window = self._windows.get(key)
                if window is None or window.maxlen != s.window:
                    window = self._windows[key] = deque(window or (), maxlen=s.window)
            for step, value in zip(steps, values):
                at = at_step.get(step)
                if at is None:
                    event = events[step] = Event(step=step)
                    at = at_step[step] = event.summary.value
                at.add(tag=raw, simple_value=value)
                if window is not None:
                    window.append(value)
                    at.add(tag=average, simple_value=sum(window) / len(window))
        self._write([events[step].SerializeToString() for step in sorted(events)])

    def restore(self, windows: Mapping[str, Sequence[float]]) -> None:
        """Start each moving average from the resumed run's window."""
        self._windows = {key: deque(values) for key, values in windows.items()}

    def truncate(self, step: int) -> None:
        """A session-start event at ``step + 1``: TensorBoard discards the earlier attempt's later events."""
        from tensorboard.compat.proto.event_pb2 import SessionLog

        self._write([self._Event(step=step + 1, session_log=SessionLog(status=SessionLog.START)).SerializeToString()])

    def event(self, step: int | None, kind: str, message: str) -> None:
        """Nothing: TensorBoard shows values (the run store keeps the events)."""

    def finish(self, status: str, error: str | None) -> None:
        """Nothing: every write reached the file already."""

    def close(self) -> None:
        """Close the event file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, events: list[bytes]) -> None:
        """Frame ``events`` (serialized) as records and append them to the event file, flushed, in one write."""
        if self._file is None:
            self._file = self._open()
        crc32c = self._crc32c
        self._file.write(b"".join([record(data, crc32c) for data in events]))
        self._file.flush()

    def _open(self) -> IO[bytes]:
        """A new event file, named as TensorBoard's writers name theirs, starting with the file-version event."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / (f"{EVENT_FILE_PREFIX}.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                               f"{next(_files)}")
        file = open(path, "xb")
        file.write(record(self._Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString(),
                          self._crc32c))
        return file


def export_run(store: RunStore, run_id: str, log_dir: str | os.PathLike) -> int:
    """Write run ``run_id``'s recorded values as TensorBoard event files in ``log_dir``, as the live sink would have
    written them (the same tags, moving averages and epoch means), :data:`EXPORT_STEPS` steps at a time; return
    the number of values written. Only reads the store. A folder that holds event files already is refused:
    TensorBoard would show both."""
    log_dir = Path(log_dir)
    if log_dir.is_dir() and any(log_dir.glob(f"{EVENT_FILE_PREFIX}*")):
        raise FileExistsError(f"{log_dir} holds TensorBoard event files already ({EVENT_FILE_PREFIX}.*); export "
                              f"into a new or empty folder, or TensorBoard would show both")
    series = store.series(run_id)
    recorded = {key: store.values(run_id, key) for key in series}
    recorded = {key: (steps, values) for key, (steps, values) in recorded.items() if len(steps)}
    every_step = np.unique(np.concatenate([steps for steps, _ in recorded.values()])) if recorded else []
    sink = TensorBoardSink(log_dir)
    try:
        sink._write([])  # the file, even for a run without values
        for start in range(0, len(every_step), EXPORT_STEPS):
            first, last = every_step[start], every_step[min(start + EXPORT_STEPS, len(every_step)) - 1]
            columns = {}
            for key, (steps, values) in recorded.items():
                a, b = np.searchsorted(steps, first, "left"), np.searchsorted(steps, last, "right")
                if b > a:
                    columns[key] = (steps[a:b].tolist(), values[a:b].tolist())
            sink.write(columns, series)
    finally:
        sink.close()
    return sum(len(steps) for steps, _ in recorded.values())
