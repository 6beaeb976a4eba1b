"""The tracker: named scalars at a step, each of a declared kind, buffered and handed to sinks.

That is its one job. Values are named ``phase.metric`` (``train.loss``, ``valid.accuracy``);
each key is of one kind (:mod:`cadence.track.kinds`), fixed when it is declared or first
added, and known under a name that says which: ``train.lr`` (the raw value),
``train.loss(avg20)`` (the moving average of the last 20), ``valid.accuracy(epoch)`` (the
phase's mean over the epoch so far). Showing them is the console's part
(:class:`cadence.track.console.PhaseDisplay`), which reads what the tracker resolved.

**No host read on the training thread.** A value may be a 0-d tensor still on its device:
:meth:`Tracker.add` keeps it as it is. Every ``flush_every`` values (or ``flush_seconds``)
the values held go, still as tensors, to a background thread (:mod:`cadence.track.sinks`),
which reads them to the host (one ``stack`` and one ``tolist`` per device), checks them,
keeps each key's last value and moving-average window as floats, and writes them to the
sinks: the run store, TensorBoard, any sink given. A loop that adds its loss every step
therefore never waits for the device on its own thread; only the calls that need the
values now wait for that thread: :meth:`Tracker.flush`, :meth:`Tracker.latest`,
:meth:`Tracker.state_dict` (a checkpoint's values are then in the store),
:meth:`Tracker.truncate`, :meth:`Tracker.finish`, :meth:`Tracker.close`.

**A cheap add.** :meth:`Tracker.add` checks a call's keys and values in full the first time
it sees its keys (a key's form, its kind, each value's type). A call with the keys of the
previous one (a training loop's) appends its values as one row; rows are checked a column
at a time on the background thread, and a value refused there (a tensor of several
elements, a string) is raised on the training thread at the next hand-over, naming its key
and step. A sink that fails is reported once (a warning of the ``cadence.track`` logger)
and training goes on.

A loop that counts the samples it has trained on adds them as :data:`SAMPLES_KEY`, which
``cadence plot --x samples`` puts on the x axis.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path
from time import monotonic
from typing import Any

import torch

from cadence.checks import check_number
from cadence.track.heartbeat import HEARTBEAT_SECONDS, Heartbeat
from cadence.track.kinds import KINDS, check_kind, label
from cadence.track.sinks import BackgroundWriter, RecordSink, StoreSink
from cadence.track.store import RunStore, Series
from cadence.track.tensorboard import TensorBoardSink

logger = logging.getLogger("cadence.track")

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-\[\]]+)+$")

#: The cumulative count of training samples, by step, when a loop records it.
SAMPLES_KEY = "train.samples"

Value = float | int | torch.Tensor

_NUMBERS, _TENSORS = {float, int}, {torch.Tensor}


class _Block:
    """Rows of :meth:`Tracker.add` calls with the same keys, in order: their steps and values."""

    __slots__ = ("keys", "steps", "rows")

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys
        self.steps: list[int] = []
        self.rows: list[tuple[Value, ...]] = []


class _Resolved:
    """What the writer's thread has resolved of every key, as floats: its last ``(step, value)`` and, for a
    moving key, the ``(step, value)`` of its window. Written on that thread only; read under :attr:`lock`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: dict[str, tuple[int, float]] = {}
        self.windows: dict[str, deque[tuple[int, float]]] = {}

    def fold(self, columns: Mapping[str, tuple[list[int], list[float]]]) -> None:
        with self.lock:
            for key, (steps, values) in columns.items():
                self.last[key] = (steps[-1], values[-1])
                window = self.windows.get(key)
                if window is not None:
                    window.extend(zip(steps, values))

    def shown(self, key: str) -> float | None:
        """The moving average of a moving key, else the last value; ``None`` before any value."""
        window = self.windows.get(key)
        if window:
            return sum(v for _, v in window) / len(window)
        last = self.last.get(key)
        return None if last is None else last[1]


class Tracker:
    """Collects scalars and hands them, resolved off the training thread, to sinks that record them.

    * ``store`` / ``run_id``: the run store and the run to record values in (nothing is
      recorded without them: on data-parallel ranks other than 0, say),
    * ``smoothing``: the window ``N`` of the ``"moving"`` keys' averages,
    * ``flush_every`` / ``flush_seconds``: values held, or seconds since the last hand-over,
      that hand the values held to the background thread. A hand-over costs the training
      thread little, but the thread's work (the conversion of the tensors, the store's
      transaction) about a millisecond of CPU whatever its size, so on a fast loop it comes
      every ``flush_every`` values, on a slow one every ``flush_seconds``; a process killed
      outright loses what is held (at most that), and :meth:`state_dict` flushes, so a
      checkpoint's values are always in the store,
    * ``tensorboard_dir``: where TensorBoard event files go (the ``tensorboard`` extra): ``True``
      into the run's folder (``<run dir>/tensorboard``), a path there, ``None`` or ``False``
      nowhere (their writer costs more than the store's: see :mod:`cadence.track.tensorboard`),
    * ``sinks``: more sinks (:class:`cadence.track.sinks.RecordSink`) to record values in,
    * ``heartbeat_seconds``: how often a recorded run's process beats its heartbeat into the store
      (:mod:`cadence.track.heartbeat`), from a thread of its own, until :meth:`close`.
    """

    def __init__(self, store: RunStore | None = None, run_id: str | None = None, smoothing: int = 20,
                 flush_every: int = 10_000, *, flush_seconds: float = 2.0,
                 tensorboard_dir: str | Path | bool | None = None, sinks: Iterable[RecordSink] = (),
                 heartbeat_seconds: float = HEARTBEAT_SECONDS):
        if (store is None) != (run_id is None):
            raise ValueError("Tracker: store and run_id go together; give both or neither")
        self.smoothing = check_number("Tracker", "smoothing", smoothing, low=1, integer=True)
        self.flush_every = check_number("Tracker", "flush_every", flush_every, low=1, integer=True)
        self.flush_seconds = check_number("Tracker", "flush_seconds", flush_seconds, low=0, low_open=True)
        check_number("Tracker", "heartbeat_seconds", heartbeat_seconds, low=0, low_open=True)
        self.store = store
        self.run_id = run_id
        self._writer = BackgroundWriter(self._sinks(tensorboard_dir, sinks), report=logger.warning)
        self._kinds: dict[str, str] = {}
        #: What each key is, as the sinks are told (made again when a key is added).
        self._series: dict[str, Series] | None = None
        self._blocks: list[_Block] = []
        self._block: _Block | None = None
        self._held = 0
        self._handed = monotonic()
        self._resolved = _Resolved()
        #: How the run ended, once :meth:`finish` recorded it: ``"finished"``, ``"failed"``, ``"interrupted"``.
        self.status: str | None = None
        self._heartbeat = Heartbeat(store, run_id, heartbeat_seconds) if store is not None else None

    def _sinks(self, tensorboard_dir: str | Path | bool | None, extra: Iterable[RecordSink]) -> list[RecordSink]:
        sinks: list[RecordSink] = []
        if self.store is not None:
            sinks.append(StoreSink(self.store, self.run_id))
        if tensorboard_dir is True and self.store is None:
            raise ValueError("Tracker: tensorboard_dir=True puts the event files in the run's folder; without a "
                             "store, give their folder as tensorboard_dir")
        if tensorboard_dir is True:
            sinks.append(TensorBoardSink(self.store.run_dir(self.run_id) / "tensorboard"))
        elif isinstance(tensorboard_dir, (str, Path)):
            sinks.append(TensorBoardSink(tensorboard_dir))
        elif tensorboard_dir not in (None, False):
            raise TypeError(f"Tracker: tensorboard_dir={tensorboard_dir!r}; expected a folder, True, False or None")
        for sink in extra:
            if not isinstance(sink, RecordSink):
                raise TypeError(f"Tracker: sink {sink!r} is not a RecordSink; it needs name, write, restore, "
                                f"truncate, finish and close")
            sinks.append(sink)
        return sinks

    # -- values ----------------------------------------------------------------------------

    def declare(self, key: str, kind: str = "value") -> None:
        """Fix what ``key`` is: ``"value"``, ``"moving"`` or ``"epoch"`` (see :mod:`cadence.track.kinds`).

        Declaring a key again with the same kind does nothing; with another, it is an error
        naming both.
        """
        self._kind(key, check_kind(kind, f"Tracker.declare({key!r})"))

    def add(self, step: int, values: Mapping[str, Value], kind: str | None = None) -> None:
        """Record ``values`` (``"phase.name"`` to a number or a one-element tensor) at ``step``.

        ``kind=None`` takes each key's declared kind (``"value"`` for a key never declared);
        a kind given must be the key's.
        """
        keys = tuple(values)
        block = self._block
        if kind is not None or block is None or keys != block.keys or type(step) is not int:
            step = self._check(step, values, kind)
            block = self._block = _Block(keys)
            self._blocks.append(block)
        block.steps.append(step)
        block.rows.append(tuple(values.values()))
        self._held += len(keys)
        if self._held >= self.flush_every or monotonic() - self._handed >= self.flush_seconds:
            self._hand_over()

    def _check(self, step: Any, values: Mapping[str, Value], kind: str | None) -> int:
        """Check a call's step, keys and values in full (its keys' first call since a hand-over, or one with a
        kind); a closed tracker takes no more."""
        if self._writer.closed:
            raise RuntimeError("the tracker's writer is closed; cannot record more values")
        if type(step) is not int:
            step = check_number("Tracker.add", "step", step, integer=True)
        for key, value in values.items():
            _check_value(key, value)
        for key in values:
            self._kind(key, kind)
        return step

    def keys(self) -> list[str]:
        """Every key declared or added so far."""
        return list(self._kinds)

    def kind(self, key: str) -> str:
        """The kind of ``key``."""
        return self._known(key)

    def label(self, key: str) -> str:
        """The name ``key`` is shown under: ``train.loss(avg20)``, ``valid.accuracy(epoch)``, ``train.lr``."""
        return label(key, self._known(key), self.smoothing)

    def latest(self, key: str) -> float:
        """The last value added for ``key`` (waits for the values held to be resolved)."""
        self._known(key)
        self.flush()
        last = self._resolved.last.get(key)
        if last is None:
            raise KeyError(f"tracker has no values for {key!r} yet (it is declared)")
        return last[1]

    def shown(self, key: str) -> float:
        """The value shown for ``key``: the mean of the last ``smoothing`` values of a moving key, else the
        latest value (waits for the values held to be resolved)."""
        self._known(key)
        self.flush()
        value = self._resolved.shown(key)
        if value is None:
            raise KeyError(f"tracker has no values for {key!r} yet (it is declared)")
        return value

    def snapshot(self) -> dict[str, float]:
        """Every key's value as shown now (:meth:`shown`; waits for the values held), for the keys with values."""
        self.flush()
        with self._resolved.lock:
            shown = {key: self._resolved.shown(key) for key in self._kinds}
        return {key: value for key, value in shown.items() if value is not None}

    def resolved(self, phase: str) -> dict[str, float]:
        """The values of ``phase``'s keys resolved so far, as shown (moving averages, latest values), named by
        their labels without the phase (``loss(avg20)``, ``accuracy(epoch)``). Never waits: a display calls it
        at its own rate, and values still held show once they are handed over."""
        prefix = f"{phase}."
        with self._resolved.lock:
            shown = {key: self._resolved.shown(key) for key in self._kinds if key.startswith(prefix)}
        return {label(key[len(prefix):], self._kinds[key], self.smoothing): value
                for key, value in shown.items() if value is not None}

    def flush(self) -> None:
        """Hand every value held to the background thread and wait until it is resolved and written."""
        self._hand_over()
        self._writer.wait()

    # -- resuming ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to show the same: each key's kind, last value and (moving keys)
        window, as plain lists and floats (``torch.load(weights_only=True)`` reads them). Flushes
        first, so the store holds every value up to the checkpoint this state goes into."""
        self.flush()
        resolved = self._resolved
        return {"smoothing": self.smoothing, "kinds": dict(self._kinds),
                "last": {key: [step, value] for key, (step, value) in resolved.last.items()},
                "windows": {key: [[step, value] for step, value in window]
                            for key, window in resolved.windows.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`: the kinds (a key declared here with another kind is an error),
        the last values and the moving-average windows (their last ``smoothing`` values)."""
        where = "Tracker.load_state_dict"
        missing = [name for name in ("kinds", "last", "windows") if name not in state]
        if missing:
            raise ValueError(f"{where}: the state has no {', '.join(missing)}; expected a Tracker.state_dict()")
        for key, kind in state["kinds"].items():
            self._kind(key, check_kind(kind, f"{where}: key {key!r}"))
        for key in state["windows"]:
            if self._kinds[key] != "moving":
                raise ValueError(f"{where}: key {key!r} has a moving-average window but is a "
                                 f"{self._kinds[key]!r} key")
        self.flush()
        last = {key: (int(step), float(value)) for key, (step, value) in state["last"].items()}
        windows = {key: [(int(step), float(value)) for step, value in rows] for key, rows in state["windows"].items()}

        def restore() -> None:
            with self._resolved.lock:
                self._resolved.last = last
                for key, rows in windows.items():
                    self._resolved.windows[key].clear()
                    self._resolved.windows[key].extend(rows)
            raw = {key: [value for _, value in rows] for key, rows in windows.items() if rows}
            self._writer.to_sinks("restore the moving averages", lambda sink: sink.restore(raw))

        self._writer.submit(restore)

    def truncate(self, step: int) -> None:
        """The run resumes at ``step``: write what is held, then delete the values recorded after ``step``
        (in the store, which marks the run running again; TensorBoard discards them from its display)
        and forget them here."""
        step = check_number("Tracker.truncate", "step", step, low=0, integer=True)

        def forget() -> None:
            resolved = self._resolved
            with resolved.lock:
                for window in resolved.windows.values():
                    kept = [(t, v) for t, v in window if t <= step]
                    window.clear()
                    window.extend(kept)
                for key, (t, _) in list(resolved.last.items()):
                    if t > step:
                        window = resolved.windows.get(key)
                        if window:
                            resolved.last[key] = window[-1]
                        else:
                            del resolved.last[key]
            self._writer.to_sinks(f"delete the values after step {step}", lambda sink: sink.truncate(step))

        self._hand_over()
        self._writer.submit(forget)
        self._writer.wait()

    # -- the end -----------------------------------------------------------------------------

    def event(self, step: int | None, kind: str, message: str) -> None:
        """Record that something happened to the run at ``step`` (a resume, a restart, an interruption), after the
        values added before it."""
        self._hand_over()
        self._writer.submit(lambda: self._writer.to_sinks(f"record a {kind} event",
                                                          lambda sink: sink.event(step, kind, message)))

    def plan(self, steps: int) -> None:
        """Record that the run is to take ``steps`` optimizer steps in all: readers estimate its time left."""
        if self.store is not None:
            self.store.plan(self.run_id, check_number("Tracker.plan", "steps", steps, low=1, integer=True))

    def finish(self, status: str, error: str | None = None) -> None:
        """Write what is held and record how the run ended (``finished``, ``failed``, ``interrupted``)."""
        self.status = status
        self._hand_over()
        self._writer.submit(lambda: self._writer.to_sinks(f"record the run as {status}",
                                                          lambda sink: sink.finish(status, error)))
        self._writer.wait()

    def close(self) -> None:
        """Write what is held and close the sinks. Once closed, it stays closed."""
        if self._writer.closed:
            return
        if self._heartbeat is not None:
            self._heartbeat.stop()
        try:
            self._hand_over()
        finally:
            self._writer.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _kind(self, key: str, kind: str | None) -> str:
        """``key``'s kind, fixed (after checking the key) on first sight; a kind other than its own is an error."""
        known = self._kinds.get(key)
        if known is None:
            if not isinstance(key, str) or not _KEY.match(key):
                raise ValueError(f"tracker key {key!r} is not of the form 'phase.name' (letters, digits, _ and -, "
                                 f"parts joined by dots, no spaces)")
            known = self._kinds[key] = check_kind(kind or "value", f"Tracker.add({key!r})")
            if known == "moving":
                with self._resolved.lock:
                    self._resolved.windows[key] = deque(maxlen=self.smoothing)
            self._series = None
        elif kind is not None and kind != known:
            raise ValueError(f"tracker key {key!r} is a {known!r} key ({KINDS[known]}); it cannot also be "
                             f"{kind!r} ({KINDS.get(kind, 'not a kind')}): a key's kind is fixed when it is declared "
                             f"or first added")
        return known

    def _known(self, key: str) -> str:
        kind = self._kinds.get(key)
        if kind is None:
            close = difflib.get_close_matches(key, self._kinds, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KeyError(f"tracker has no values for {key!r}{hint}; it has: {', '.join(self._kinds) or 'none'}")
        return kind

    def _hand_over(self) -> None:
        """Give the rows held to the background thread, which resolves, checks and writes them."""
        self._handed = monotonic()
        self._writer.raise_error()
        if not self._held:
            return
        blocks, self._blocks, self._block, self._held = self._blocks, [], None, 0
        if self._series is None:
            self._series = {key: Series(kind, self.smoothing if kind == "moving" else None)
                            for key, kind in self._kinds.items()}
        series = self._series

        def write() -> None:
            columns = _resolve(blocks)
            self._resolved.fold(columns)
            count = sum(len(steps) for steps, _ in columns.values())
            self._writer.to_sinks(f"write {count} values", lambda sink: sink.write(columns, series), rows=count)

        self._writer.submit(write)


def _check_value(key: str, value: Any, step: int | None = None) -> None:
    """A number, or a tensor of one element; else an error naming ``key`` (and the ``step`` it was added at)."""
    at = "" if step is None else f" at step {step}"
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"tracker value of {key!r}{at} has shape {list(value.shape)}; expected a scalar "
                             f"(a number or a one-element tensor)")
    elif not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"tracker value of {key!r}{at} is a {type(value).__name__}; expected a number or a tensor")


@torch.no_grad()
def _resolve(blocks: Sequence[_Block]) -> dict[str, tuple[list[int], list[float]]]:
    """The rows of ``blocks`` as columns ``{key: (steps, floats)}``, in order, every tensor read to the host in
    one ``tolist`` per device. A column of numbers is taken as it is, a column of 0-d tensors of one dtype and
    device is stacked whole; any other goes a value at a time, where a value that is neither a number nor a
    one-element tensor is an error naming its key and step."""
    columns: dict[str, tuple[list[int], list[Any]]] = {}
    for block in blocks:
        for key, column in zip(block.keys, zip(*block.rows)):
            steps, values = columns.setdefault(key, ([], []))
            steps += block.steps
            values += column
    # (key, first index, values as a float64 vector) of every run of tensors, by device
    held: dict[torch.device, list[tuple[str, int, torch.Tensor]]] = {}
    for key, (steps, values) in columns.items():
        types = set(map(type, values))
        if types <= _NUMBERS:
            continue
        if types == _TENSORS:
            try:
                stacked = torch.stack(values)
            except RuntimeError:  # several dtypes, devices or shapes: value by value
                stacked = None
            if stacked is not None and stacked.dim() == 1:
                held.setdefault(stacked.device, []).append((key, 0, stacked.to(torch.float64)))
                continue
        for i, value in enumerate(values):
            _check_value(key, value, steps[i])
            if isinstance(value, torch.Tensor):
                held.setdefault(value.device, []).append((key, i, value.reshape(1).to(torch.float64)))
            else:
                values[i] = float(value)
    for parts in held.values():
        read = torch.cat([vector for _, _, vector in parts]).tolist()
        start = 0
        for key, i, vector in parts:
            columns[key][1][i:i + len(vector)] = read[start:start + len(vector)]
            start += len(vector)
    return columns
