"""The tracker: named scalars at a step, each of a declared kind, shown on the console and recorded.

Values are named ``phase.metric`` (``train.loss``, ``valid.accuracy``); each key is of one kind
(:mod:`cadence.track.kinds`), fixed when it is declared or first added, and shown under a name
that says which: ``train.lr`` (the raw value), ``train.loss(avg20)`` (the moving average of the
last 20), ``valid.accuracy(epoch)`` (the phase's mean over the epoch so far).

**No sync per step.** A value may be a 0-d tensor still on its device: the tracker keeps it
as it is and converts every pending tensor at once (one ``stack`` per dtype and one
``tolist`` per device) when values are shown or handed to the sinks, so a loop that adds its
loss every step synchronises with the device only at display and flush intervals.

**A cheap add.** ``add`` checks a key in full once, when it first sees it. A call with the
keys of the previous one, in the same order (a training loop's), appends its values as one
row of a block; the block is split into the keys' columns and checked a column at a time
(types, tensors' shapes and gradients, by C-level maps) when it is folded, at the next
hand-over or display. A value refused then names its key and step.

**No wait on disk.** Every ``flush_every`` values (or ``flush_seconds``, or at the end of a
phase) the pending values go, resolved, to a background thread that writes them to the sinks
(:mod:`cadence.track.sinks`): the run store, TensorBoard, any sink given. A sink that fails is
reported once and training goes on. :meth:`Tracker.flush` waits for the writes; so do
:meth:`Tracker.state_dict` (a checkpoint's values are then in the store), :meth:`Tracker.truncate`,
:meth:`Tracker.finish` and :meth:`Tracker.close`.

A loop that counts the samples it has trained on adds them as :data:`SAMPLES_KEY`, which
``cadence plot --x samples`` puts on the x axis.
"""

from __future__ import annotations

import re
import warnings
from collections import deque
from collections.abc import Iterable, Mapping
from numbers import Real
from operator import attrgetter
from pathlib import Path
from time import monotonic
from typing import Any

import torch

from cadence.checks import check_number
from cadence.track.console import ConsoleSink
from cadence.track.kinds import KINDS, check_kind, label
from cadence.track.sinks import BackgroundWriter, RecordSink, StoreSink
from cadence.track.store import RunStore, Series
from cadence.track.tensorboard import TensorBoardSink

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-\[\]]+)+$")

#: The cumulative count of training samples, by step, when a loop records it.
SAMPLES_KEY = "train.samples"

Value = float | torch.Tensor

#: The types of values kept as they are: numbers, and tensors once checked (0-d, without gradient).
_FLOAT, _NUMBER, _PLAIN = {float}, {float, int}, {float, int, torch.Tensor}


_TENSOR, _requires_grad = {torch.Tensor}, attrgetter("requires_grad")


def _stacked(held: Iterable[Any]) -> torch.Tensor:
    """``held`` (numbers and 0-d tensors) as one float64 tensor on the tensors' device: a single stack
    when they are all tensors of one dtype and device."""
    held = list(held)
    try:
        if set(map(type, held)) == _TENSOR:
            return torch.stack(held).to(torch.float64)
    except RuntimeError:  # several dtypes or devices in one sequence
        pass
    device = next(v.device for v in held if type(v) is torch.Tensor)
    return torch.stack([torch.as_tensor(v, dtype=torch.float64).to(device) for v in held])


def _irregular(column: tuple[Any, ...], types: set[type]) -> bool:
    """Whether a column of numbers and tensors holds a tensor with dimensions or a gradient (a column of
    tensors only is checked by C-level maps, not a Python call per value)."""
    if torch.Tensor not in types:
        return False
    if types == _TENSOR:
        return any(map(_requires_grad, column)) or any(map(torch.Tensor.dim, column))
    return any(type(v) is torch.Tensor and (v.dim() != 0 or v.requires_grad) for v in column)


class _Key:
    """What the tracker holds of a key: its kind, its pending steps and values (not yet handed to the
    sinks), its last value handed over, and (moving keys) the steps and values of its window."""

    __slots__ = ("kind", "steps", "values", "last", "window", "window_steps")

    def __init__(self, kind: str, smoothing: int):
        self.kind = kind
        self.steps: list[int] = []
        self.values: list[float | torch.Tensor] = []
        self.last: tuple[int, float | torch.Tensor] | None = None
        moving = kind == "moving"
        self.window: deque[float | torch.Tensor] | None = deque(maxlen=smoothing) if moving else None
        self.window_steps: deque[int] | None = deque(maxlen=smoothing) if moving else None

    def latest(self) -> tuple[int, float | torch.Tensor] | None:
        """``(step, value)`` of the last value added, or ``None``."""
        return (self.steps[-1], self.values[-1]) if self.steps else self.last


class Tracker:
    """Collects scalars, shows them and hands them to sinks that record them.

    * ``store`` / ``run_id``: the run store and the run to record values in (nothing is
      recorded without them: on data-parallel ranks other than 0, say),
    * ``console``: a :class:`ConsoleSink`; ``None`` makes the default one (live bars on a
      terminal, plain lines elsewhere); ``False`` shows nothing,
    * ``smoothing``: the window ``N`` of the ``"moving"`` keys' averages,
    * ``flush_every`` / ``flush_seconds``: pending values, or seconds since the last hand-over,
      that hand the pending values to the sinks. A hand-over costs about a millisecond of CPU
      (the conversion of the tensors, the store's transaction) whatever its size, so on a fast
      loop it happens every ``flush_every`` values, on a slow one every ``flush_seconds``; a
      process killed outright loses what is pending (at most that), and
      :meth:`state_dict` flushes, so a checkpoint's values are always in the store,
    * ``tensorboard_dir``: where TensorBoard event files go (the ``tensorboard`` extra): ``True``
      into the run's folder (``<run dir>/tensorboard``), a path there, ``None`` or ``False``
      nowhere (their writer costs far more than the store's: see :mod:`cadence.track.tensorboard`),
    * ``sinks``: more sinks (:class:`cadence.track.sinks.RecordSink`) to record values in.
    """

    def __init__(self, store: RunStore | None = None, run_id: str | None = None,
                 console: ConsoleSink | bool | None = None, smoothing: int = 20, flush_every: int = 10_000, *,
                 flush_seconds: float = 2.0, tensorboard_dir: str | Path | bool | None = None,
                 sinks: Iterable[RecordSink] = ()):
        if (store is None) != (run_id is None):
            raise ValueError("Tracker: store and run_id go together; give both or neither")
        self.smoothing = check_number("Tracker", "smoothing", smoothing, low=1, integer=True)
        self.flush_every = check_number("Tracker", "flush_every", flush_every, low=1, integer=True)
        self.flush_seconds = check_number("Tracker", "flush_seconds", flush_seconds, low=0, low_open=True)
        self.store = store
        self.run_id = run_id
        self.console = ConsoleSink() if console is None or console is True else (console or None)
        self._writer = BackgroundWriter(self._sinks(tensorboard_dir, sinks))
        self._keys: dict[str, _Key] = {}
        #: What each key is, as the sinks are told (made again when a key is added).
        self._series: dict[str, Series] | None = None
        self._pending = 0
        self._unresolved = False
        #: Rows of the calls of :meth:`add` since the last one with other keys (or a kind): their keys
        #: (in order), steps and values. They join the keys' columns when folded.
        self._block_keys: tuple[str, ...] | None = None
        self._block_steps: list[int] = []
        self._block_rows: list[tuple[Value, ...]] = []
        self._handed = monotonic()
        self._closed = False
        self._phase: str | None = None
        self._completed = 0

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
        self._entry(key, check_kind(kind, f"Tracker.declare({key!r})"))

    def add(self, step: int, values: Mapping[str, Value], kind: str | None = None,
            smooth: bool | None = None) -> None:
        """Record ``values`` (``"phase.name"`` to a number or a one-element tensor) at ``step``.

        ``kind=None`` takes each key's declared kind (``"value"`` for a key never declared);
        a kind given must be the key's. ``smooth`` is the deprecated form of the kinds:
        ``smooth=False`` is ``kind="epoch"``, ``smooth=True`` is ``kind="moving"``.
        """
        if smooth is not None:
            warnings.warn("Tracker.add(smooth=...) is deprecated; use kind='epoch' (for smooth=False) or "
                          "kind='moving' (for smooth=True)", DeprecationWarning, stacklevel=2)
            kind = "moving" if smooth else "epoch"
        if kind is None and type(step) is int and tuple(values) == self._block_keys:
            # The keys of the previous call, in its order: the row joins the block (checked when folded).
            self._block_steps.append(step)
            self._block_rows.append(tuple(values.values()))
            self._pending += len(values)
            if self._pending >= self.flush_every or monotonic() - self._handed >= self.flush_seconds:
                self._hand_over()
        else:
            self._add_checked(step, values, kind)

    def _add_checked(self, step: int, values: Mapping[str, Value], kind: str | None) -> None:
        """:meth:`add`, checking each key and value: the first call with these keys, or with a kind."""
        self._fold()
        if type(step) is not int:
            step = check_number("Tracker.add", "step", step, integer=True)
        entries = [(self._keys.get(key), key, value) for key, value in values.items()]
        entries = [(entry if entry is not None and (kind is None or kind == entry.kind) else self._entry(key, kind),
                    self._scalar(key, value)) for entry, key, value in entries]
        for entry, value in entries:
            entry.steps.append(step)
            entry.values.append(value)
            if entry.window is not None:
                entry.window.append(value)
                entry.window_steps.append(step)
        self._block_keys = tuple(values) if kind is None else None
        self._pending += len(entries)
        if self._pending >= self.flush_every or monotonic() - self._handed >= self.flush_seconds:
            self._hand_over()

    def _fold(self) -> None:
        """Move the block of rows into the keys' columns (and the moving keys' windows), a column at a
        time: each is checked as a whole (its values' types; its tensors' shapes and gradients), and a
        value that :meth:`_scalar` would change or refuse sends it through :meth:`_scalar`."""
        if not self._block_steps:
            return
        steps, rows = self._block_steps, self._block_rows
        self._block_steps, self._block_rows = [], []
        columns = []
        for key, column in zip(self._block_keys, zip(*rows)):
            types = set(map(type, column))
            if not types <= _FLOAT:
                if types <= _PLAIN and not _irregular(column, types):
                    self._unresolved = self._unresolved or torch.Tensor in types
                else:
                    column = tuple(self._scalar(key, value, step) for step, value in zip(steps, column))
            columns.append((self._keys[key], column))
        for entry, column in columns:
            entry.steps += steps
            entry.values += column
            if entry.window is not None:
                entry.window.extend(column)
                entry.window_steps.extend(steps)

    def keys(self) -> list[str]:
        """Every key declared or added so far."""
        return list(self._keys)

    def kind(self, key: str) -> str:
        """The kind of ``key``."""
        return self._known(key).kind

    def latest(self, key: str) -> float:
        """The last value added for ``key``."""
        self._fold()
        latest = self._known(key).latest()
        if latest is None:
            raise KeyError(f"tracker has no values for {key!r} yet (it is declared)")
        self._resolve()
        return float(self._known(key).latest()[1])

    def smoothed(self, key: str) -> float:
        """The mean of the last ``smoothing`` values of moving key ``key``."""
        self._fold()
        entry = self._known(key)
        if entry.window is None:
            raise ValueError(f"tracker key {key!r} is a {entry.kind!r} key; only 'moving' keys have a moving average")
        if not entry.window:
            raise KeyError(f"tracker has no values for {key!r} yet (it is declared)")
        self._resolve()
        return sum(entry.window) / len(entry.window)

    def shown(self, key: str) -> float:
        """The value the console shows for ``key``: the moving average of a moving key, else the latest value."""
        return self.smoothed(key) if self._known(key).kind == "moving" else self.latest(key)

    def label(self, key: str) -> str:
        """The name ``key`` is shown under: ``train.loss(avg20)``, ``valid.accuracy(epoch)``, ``train.lr``."""
        return label(key, self._known(key).kind, self.smoothing)

    def flush(self) -> None:
        """Hand every pending value to the sinks and wait until they are written."""
        self._hand_over()
        self._writer.wait()
        self._report()

    # -- resuming ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to show the same: each key's kind, last value and (moving keys)
        window, as plain lists and floats (``torch.load(weights_only=True)`` reads them). Flushes
        first, so the store holds every value up to the checkpoint this state goes into."""
        self.flush()
        return {"smoothing": self.smoothing,
                "kinds": {key: entry.kind for key, entry in self._keys.items()},
                "last": {key: [int(e.last[0]), float(e.last[1])] for key, e in self._keys.items() if e.last},
                "windows": {key: [[int(step), float(value)] for step, value in zip(e.window_steps, e.window)]
                            for key, e in self._keys.items() if e.window is not None}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`: the kinds (a key declared here with another kind is an error),
        the last values and the moving-average windows (their last ``smoothing`` values)."""
        where = "Tracker.load_state_dict"
        self._fold()
        missing = [name for name in ("kinds", "last", "windows") if name not in state]
        if missing:
            raise ValueError(f"{where}: the state has no {', '.join(missing)}; expected a Tracker.state_dict()")
        for key, kind in state["kinds"].items():
            self._entry(key, check_kind(kind, f"{where}: key {key!r}"))
        for key, (step, value) in state["last"].items():
            self._known(key).last = (int(step), float(value))
        for key, rows in state["windows"].items():
            entry = self._known(key)
            if entry.window is None:
                raise ValueError(f"{where}: key {key!r} has a moving-average window but is a {entry.kind!r} key")
            entry.window.clear()
            entry.window_steps.clear()
            for step, value in rows:
                entry.window_steps.append(int(step))
                entry.window.append(float(value))
        windows = {key: list(e.window) for key, e in self._keys.items() if e.window}
        self._writer.submit("restore the moving averages", lambda sink: sink.restore(windows))

    def truncate(self, step: int) -> None:
        """The run resumes at ``step``: write what is pending, then delete the values recorded after
        ``step`` (in the store, which marks the run running again; TensorBoard discards them from its
        display) and forget them here."""
        step = check_number("Tracker.truncate", "step", step, low=0, integer=True)
        self._hand_over()
        self._resolve()
        for entry in self._keys.values():
            if entry.window is not None:
                kept = [(t, v) for t, v in zip(entry.window_steps, entry.window) if t <= step]
                entry.window.clear()
                entry.window_steps.clear()
                for t, v in kept:
                    entry.window_steps.append(t)
                    entry.window.append(v)
            if entry.last is not None and entry.last[0] > step:
                entry.last = (entry.window_steps[-1], entry.window[-1]) if entry.window else None
        self._writer.submit(f"delete the values after step {step}", lambda sink: sink.truncate(step))
        self.flush()

    # -- phases and messages -----------------------------------------------------------------

    def start_phase(self, name: str, total: int, epoch: int | None = None, done: int = 0) -> None:
        """Begin phase ``name`` (the namespace of the metrics it shows) of ``total`` steps, ``done`` of them
        already (a phase resumed, or continued after a validation)."""
        self._phase, self._completed = name, done
        if self.console is not None:
            self.console.start_phase(name, total, epoch, done)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more steps of the phase; refresh the display when it is due."""
        self._completed += n
        if self.console is not None and self.console.due():
            self.console.update(self._completed, self._phase_metrics())

    def end_phase(self) -> None:
        """End the phase: show its final metrics and hand the pending values to the sinks."""
        if self.console is not None:
            self.console.end_phase(self._completed, self._phase_metrics())
        self._phase = None
        self._hand_over()

    def in_phase(self) -> bool:
        """Whether a phase has started and not ended."""
        return self._phase is not None

    def log(self, message: str) -> None:
        """Show a one-line message."""
        if self.console is not None:
            self.console.log(message)

    def finish(self, status: str, error: str | None = None) -> None:
        """Write what is pending and record how the run ended (``finished``, ``failed``, ``interrupted``)."""
        self._hand_over()
        self._writer.submit(f"record the run as {status}", lambda sink: sink.finish(status, error))
        self._writer.wait()
        self._report()
        self.log(" ".join(part for part in ("run", self.run_id, status) if part) + (f": {error}" if error else ""))

    def close(self) -> None:
        """Write what is pending, close the sinks and stop the display. Once closed, it stays closed."""
        if self._closed:
            return
        self._closed = True
        self._hand_over()
        self._writer.close()
        self._report()
        for line in self._writer.losses():
            self._warn(f"tracker: {line}")
        if self.console is not None:
            self.console.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _entry(self, key: str, kind: str | None) -> _Key:
        """``key``'s entry, made (after checking the key) on first sight; a kind other than its own is an error."""
        entry = self._keys.get(key)
        if entry is None:
            if not isinstance(key, str) or not _KEY.match(key):
                raise ValueError(f"tracker key {key!r} is not of the form 'phase.name' (letters, digits, _ and -, "
                                 f"parts joined by dots, no spaces)")
            entry = self._keys[key] = _Key(check_kind(kind or "value", f"Tracker.add({key!r})"), self.smoothing)
            self._series = None
        elif kind is not None and kind != entry.kind:
            raise ValueError(f"tracker key {key!r} is a {entry.kind!r} key ({KINDS[entry.kind]}); it cannot also be "
                             f"{kind!r} ({KINDS.get(kind, 'not a kind')}): a key's kind is fixed when it is declared "
                             f"or first added")
        return entry

    def _scalar(self, key: str, value: Any, step: int | None = None) -> float | int | torch.Tensor:
        """``value`` as a number, or a 0-d detached tensor left on its device; ``step`` names where a
        value refused was added."""
        if type(value) in _NUMBER:
            return value
        at = "" if step is None else f" at step {step}"
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"tracker value of {key!r}{at} has shape {list(value.shape)}; expected a scalar "
                                 f"(a number or a one-element tensor)")
            if value.dim() or value.requires_grad:
                value = value.detach().reshape(())
            self._unresolved = True
            return value
        if isinstance(value, Real) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"tracker value of {key!r}{at} is a {type(value).__name__}; expected a number or a tensor")

    def _known(self, key: str) -> _Key:
        entry = self._keys.get(key)
        if entry is None:
            raise KeyError(f"tracker has no values for {key!r}; it has: {', '.join(self._keys) or 'none'}")
        return entry

    def _phase_metrics(self) -> dict[str, float]:
        self._fold()
        self._resolve()
        prefix = f"{self._phase}."
        shown = {}
        for key, entry in self._keys.items():
            latest = entry.latest()
            if key.startswith(prefix) and latest is not None:
                name = label(key[len(prefix):], entry.kind, self.smoothing)
                shown[name] = sum(entry.window) / len(entry.window) if entry.window else latest[1]
        return shown

    def _hand_over(self) -> None:
        """Give the pending values, resolved, to the writer's thread: ``{key: (steps, values)}``."""
        self._handed = monotonic()
        if not self._pending:
            return
        self._fold()
        self._pending = 0
        if self._writer.sinks:
            self._resolve()
        columns = {}
        for key, entry in self._keys.items():
            if entry.steps:
                columns[key] = (entry.steps, entry.values)
                entry.last = (entry.steps[-1], entry.values[-1])
                entry.steps, entry.values = [], []
        if not self._writer.sinks:
            return
        if self._series is None:
            self._series = {key: Series(e.kind, self.smoothing if e.kind == "moving" else None)
                            for key, e in self._keys.items()}
        series = self._series
        count = sum(len(steps) for steps, _ in columns.values())
        self._writer.submit(f"write {count} values", lambda sink: sink.write(columns, series), rows=count)
        self._report()

    def _resolve(self) -> None:
        """Turn every tensor value still held into a float: one copy to the host per device.

        Each held sequence of tensors (a key's pending values, a moving key's window) is stacked
        whole, in one call; a sequence mixing numbers, dtypes or devices goes a value at a time.
        """
        if not self._unresolved:
            return
        # (owner, field, stacked values) of every held sequence with tensors, by device.
        parts: dict[torch.device, list[tuple[_Key, str, torch.Tensor]]] = {}
        for entry in self._keys.values():
            for field in ("values", "window"):
                held = getattr(entry, field)
                if held and torch.Tensor in set(map(type, held)):
                    stacked = _stacked(held)
                    parts.setdefault(stacked.device, []).append((entry, field, stacked))
            if entry.last is not None and type(entry.last[1]) is torch.Tensor:
                parts.setdefault(entry.last[1].device, []).append((entry, "last", entry.last[1].reshape(1)))
        for device_parts in parts.values():
            values = torch.cat([stacked for _, _, stacked in device_parts]).tolist()
            start = 0
            for entry, field, stacked in device_parts:
                floats, start = values[start:start + len(stacked)], start + len(stacked)
                if field == "values":
                    entry.values = floats
                elif field == "window":
                    entry.window = deque(floats, maxlen=entry.window.maxlen)
                else:
                    entry.last = (entry.last[0], floats[0])
        self._unresolved = False

    def _report(self) -> None:
        for message in self._writer.reports():
            self._warn(message)

    def _warn(self, message: str) -> None:
        """Show ``message`` on the console, or as a warning without one."""
        if self.console is not None:
            self.console.log(message)
        else:
            warnings.warn(message, RuntimeWarning, stacklevel=3)
