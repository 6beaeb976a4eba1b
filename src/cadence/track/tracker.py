"""The tracker: namespaced scalars at a step, shown on the console and recorded in the run store.

Values are named ``phase.metric`` (``train.loss``, ``valid.accuracy``). A value may be a
0-d tensor still on its device: the tracker keeps it as it is and converts every pending
tensor at once (one ``stack`` and one ``tolist`` per device) when values are shown or
written, so a loop that adds its loss every step synchronises with the device only at
display and flush intervals, never per step.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from typing import Any

import torch

from cadence.checks import check_number
from cadence.track.console import ConsoleSink
from cadence.track.store import RunStore

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-\[\]]+)+$")

Value = float | torch.Tensor


class Tracker:
    """Collects scalars, shows them and writes them to a :class:`RunStore`.

    * ``store`` / ``run_id``: where values are written (nothing is written without them:
      on data-parallel ranks other than 0, say),
    * ``console``: a :class:`ConsoleSink`; ``None`` makes the default one (live bars on a
      terminal, plain lines elsewhere); ``False`` shows nothing,
    * ``smoothing``: the window of the moving average shown for each key,
    * ``flush_every``: buffered values that trigger a write to the store.
    """

    def __init__(self, store: RunStore | None = None, run_id: str | None = None,
                 console: ConsoleSink | bool | None = None, smoothing: int = 20, flush_every: int = 1000):
        if (store is None) != (run_id is None):
            raise ValueError("Tracker: store and run_id go together; give both or neither")
        check_number("Tracker", "smoothing", smoothing, low=1, integer=True)
        check_number("Tracker", "flush_every", flush_every, low=1, integer=True)
        self.store = store
        self.run_id = run_id
        self.console = ConsoleSink() if console is None or console is True else (console or None)
        self.smoothing = smoothing
        self.flush_every = flush_every
        self._history: dict[str, deque[list[Any]]] = {}
        self._latest_only: set[str] = set()
        self._pending: list[list[Any]] = []
        self._phase: str | None = None
        self._completed = 0

    # -- values ----------------------------------------------------------------------------

    def add(self, step: int, values: Mapping[str, Value], smooth: bool = True, kind: str | None = None) -> None:
        """Record ``values`` (``"phase.name"`` to a number or a one-element tensor) at ``step``.

        The console shows a key's moving average over its last ``smoothing`` values; with
        ``smooth=False`` it shows the latest value instead, for values that are already aggregates
        (an epoch's running accuracy: averaging it with earlier epochs' would misreport it).
        """
        for key, value in values.items():
            history = self._history.get(key)
            if history is None:
                if not isinstance(key, str) or not _KEY.match(key):
                    raise ValueError(f"tracker key {key!r} is not of the form 'phase.name' (letters, digits, _ and -, "
                                     f"parts joined by dots, no spaces)")
                history = self._history[key] = deque(maxlen=self.smoothing)
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise ValueError(f"tracker value of {key!r} has shape {list(value.shape)}; expected a scalar "
                                     f"(a number or a one-element tensor)")
                if value.dim() or value.requires_grad:
                    value = value.detach().reshape(())
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"tracker value of {key!r} is a {type(value).__name__}; expected a number or a tensor")
            row = [int(step), key, value]
            self._pending.append(row)
            history.append(row)
            if smooth:
                self._latest_only.discard(key)
            else:
                self._latest_only.add(key)
        if kind == "epoch":
            self._latest_only.update(values)
        if len(self._pending) >= self.flush_every:
            self.flush()

    def keys(self) -> list[str]:
        """Every key added so far."""
        return list(self._history)

    def latest(self, key: str) -> float:
        """The last value of ``key``."""
        self._resolve()
        return float(self._rows(key)[-1][2])

    def smoothed(self, key: str) -> float:
        """The mean of the last ``smoothing`` values of ``key``."""
        self._resolve()
        rows = self._rows(key)
        return sum(float(r[2]) for r in rows) / len(rows)

    def flush(self) -> None:
        """Write every buffered value to the store, in one transaction."""
        self._resolve()
        if self.store is not None and self._pending:
            self.store.add_metrics(self.run_id, ((s, k, v) for s, k, v in self._pending))
        self._pending = []

    def state_dict(self) -> dict[str, Any]:
        """The values the console's averages are taken over, for a resumed run to show the same."""
        self._resolve()
        return {"history": {key: [list(row) for row in rows] for key, rows in self._history.items()},
                "latest_only": sorted(self._latest_only)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._history = {key: deque((list(row) for row in rows), maxlen=self.smoothing)
                         for key, rows in state["history"].items()}
        self._latest_only = set(state["latest_only"])

    def truncate(self, step: int) -> None:
        """Forget what was recorded after ``step`` (a run resumed from a checkpoint at ``step`` records it again)."""
        self.flush()
        if self.store is not None:
            self.store.truncate(self.run_id, step)

    # -- phases and messages -----------------------------------------------------------------

    def in_phase(self) -> bool:
        """Whether a phase is being shown."""
        return self._phase is not None

    def start_phase(self, name: str, total: int, epoch: int | None = None) -> None:
        """Begin phase ``name`` (the namespace of the metrics it shows) of ``total`` steps."""
        self._phase, self._completed = name, 0
        if self.console is not None:
            self.console.start_phase(name, total, epoch)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more steps of the phase; refresh the display when it is due."""
        self._completed += n
        if self.console is not None and self.console.due():
            self.console.update(self._completed, self._phase_metrics())

    def end_phase(self) -> None:
        """End the phase: show its final metrics and write the buffered values."""
        if self.console is not None:
            self.console.end_phase(self._completed, self._phase_metrics())
        self._phase = None
        self.flush()

    def log(self, message: str) -> None:
        """Show a one-line message."""
        if self.console is not None:
            self.console.log(message)

    def finish(self, status: str, error: str | None = None) -> None:
        """Write what is buffered and record how the run ended (``finished``, ``failed``, ``interrupted``)."""
        self.flush()
        if self.store is not None:
            self.store.finish(self.run_id, status, error)
        self.log(f"run {self.run_id or ''} {status}{f': {error}' if error else ''}".replace("  ", " ").strip())

    def close(self) -> None:
        """Write what is buffered and stop the display."""
        self.flush()
        if self.console is not None:
            self.console.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _rows(self, key: str) -> deque[list[Any]]:
        if key not in self._history:
            raise KeyError(f"tracker has no values for {key!r}; it has: {', '.join(self._history) or 'none'}")
        return self._history[key]

    def _phase_metrics(self) -> dict[str, float]:
        self._resolve()
        prefix = f"{self._phase}."
        return {key[len(prefix):]: self.latest(key) if key in self._latest_only else self.smoothed(key)
                for key in self._history if key.startswith(prefix)}

    def _resolve(self) -> None:
        """Turn every tensor value still held into a float: one transfer per device."""
        # A row sits both in the pending list and in its key's history: resolve it once.
        rows = {id(r): r for r in self._pending if isinstance(r[2], torch.Tensor)}
        rows.update((id(r), r) for h in self._history.values() for r in h if isinstance(r[2], torch.Tensor))
        by_device: dict[torch.device, list[list[Any]]] = {}
        for r in rows.values():
            by_device.setdefault(r[2].device, []).append(r)
        for group in by_device.values():
            for r, v in zip(group, torch.stack([r[2].to(torch.float64) for r in group]).tolist()):
                r[2] = v
