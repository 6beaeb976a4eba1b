"""Where recorded values go, off the training thread: the sink protocol, the store's sink and the writer.

The tracker hands batches of values to a :class:`BackgroundWriter`, whose thread resolves
them to floats and passes them, ``{key: (steps, values)}``, to every :class:`RecordSink` in
order (the SQLite store, TensorBoard, any sink of the user's). The training step never waits
on the device, a disk, a lock or a full file system; only :meth:`BackgroundWriter.wait` (at
the end of a run, before a checkpoint, on resume) waits for the work handed over so far.

**A failing sink does not stop training.** Each job runs on each sink on its own: an error
(a full disk, a database locked past its timeout, a file system gone read-only) is caught,
reported once per sink (a warning of the ``cadence.track`` logger), and the
sink is tried again with the next batch, which may succeed. The values of the failed
batches are not recorded; the report at the end of the run counts them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from cadence.track.store import Columns, RunStore, Series


@runtime_checkable
class RecordSink(Protocol):
    """What a sink of recorded values implements. Every method is called on the writer's thread, in order."""

    #: The name its failures are reported under.
    name: str

    def write(self, columns: Columns, series: Mapping[str, Series]) -> None:
        """Record ``columns`` (``{key: (steps, values)}``, floats); ``series`` says what every key the
        tracker knows is."""

    def restore(self, windows: Mapping[str, Sequence[float]]) -> None:
        """A resumed run's moving-average windows: the last raw values of each moving key."""

    def truncate(self, step: int) -> None:
        """The run resumes at ``step``: forget the values recorded after it."""

    def event(self, step: int | None, kind: str, message: str) -> None:
        """Something happened to the run (a resume, a restart, an interruption) at ``step``."""

    def finish(self, status: str, error: str | None) -> None:
        """The run ended with ``status``."""

    def close(self) -> None:
        """Release files and connections."""


class StoreSink:
    """Values into a :class:`RunStore`, one transaction a batch, each key's kind recorded with its first values."""

    name = "store"

    def __init__(self, store: RunStore, run_id: str):
        self.store = store
        self.run_id = run_id
        self._recorded: dict[str, Series] = {}

    def write(self, columns: Columns, series: Mapping[str, Series]) -> None:
        """One transaction: a chunk of values per key, and the kinds of keys not yet recorded (or changed)."""
        new = {key: s for key, s in series.items() if self._recorded.get(key) != s}
        self.store.add_values(self.run_id, columns, new)
        self._recorded.update(new)

    def restore(self, windows: Mapping[str, Sequence[float]]) -> None:
        """Nothing: the store holds every raw value already."""

    def truncate(self, step: int) -> None:
        """:meth:`RunStore.truncate`."""
        self.store.truncate(self.run_id, step)

    def event(self, step: int | None, kind: str, message: str) -> None:
        """:meth:`RunStore.add_event`."""
        self.store.add_event(self.run_id, kind, message, step)

    def finish(self, status: str, error: str | None) -> None:
        """:meth:`RunStore.finish`."""
        self.store.finish(self.run_id, status, error)

    def close(self) -> None:
        """Nothing: the store belongs to whoever opened it."""


class BackgroundWriter:
    """A thread that runs jobs in the order they were submitted: the tracker's resolving of values, and their
    writing to every sink (:meth:`to_sinks`).

    ``report`` is told, once per sink, when that sink first fails. A job's own error (a value
    that cannot be recorded) is kept and raised on the submitting thread by :meth:`raise_error`,
    at the next submission or wait.
    """

    def __init__(self, sinks: Sequence[RecordSink], report: Callable[[str], None]):
        self.sinks = list(sinks)
        self.report = report
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        #: Per sink: jobs failed, rows not recorded.
        self._failed: dict[str, list[int]] = {sink.name: [0, 0] for sink in self.sinks}
        self.closed = False

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on the writer's thread, after every job submitted before it."""
        if self.closed:
            raise RuntimeError("the tracker's writer is closed; cannot record more values")
        self.raise_error()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="cadence-tracker-writer", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def to_sinks(self, what: str, call: Callable[[RecordSink], None], rows: int = 0) -> None:
        """On the writer's thread: ``call(sink)`` on every sink, each on its own; ``what`` (and the ``rows`` it
        writes) describe it in reports. A sink that fails is reported once and tried again next time."""
        for sink in self.sinks:
            try:
                call(sink)
            except Exception as e:  # any failure of a sink is reported, never raised into training
                with self._lock:
                    counts = self._failed[sink.name]
                    first = not counts[0]
                    counts[0] += 1
                    counts[1] += rows
                if first:
                    self.report(f"tracker: the {sink.name} sink failed to {what}: {type(e).__name__}: {e}; training "
                                f"goes on, and later writes are still tried (this is reported once; the end of the "
                                f"run counts what was not recorded)")

    def wait(self) -> None:
        """Block until every job submitted so far has run; raise a job's error."""
        if self._thread is not None:
            self._jobs.join()
        self.raise_error()

    def raise_error(self) -> None:
        """Raise (once) the error of a job that failed on the writer's thread."""
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def losses(self) -> list[str]:
        """A line per sink that failed at all: how many jobs failed and values went unrecorded."""
        with self._lock:
            return [f"{name}: {jobs} write(s) failed, {rows} value(s) not recorded"
                    for name, (jobs, rows) in self._failed.items() if jobs]

    def close(self) -> None:
        """Run what is queued, close every sink, stop the thread; report what was lost."""
        if self.closed:
            return
        try:
            self.submit(lambda: self.to_sinks("close", lambda sink: sink.close()))
            self.wait()
        finally:
            self.closed = True
            if self._thread is not None:
                self._jobs.put(None)
                self._thread.join()
            for line in self.losses():
                self.report(f"tracker: {line}")

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except BaseException as e:  # raised on the submitting thread, at its next submission or wait
                with self._lock:
                    if self._error is None:
                        self._error = e
            finally:
                self._jobs.task_done()
        self._jobs.task_done()
