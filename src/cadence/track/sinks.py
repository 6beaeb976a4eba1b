"""Where recorded values go, off the training thread: the sink protocol, the store's sink and the writer.

The tracker hands batches of resolved values, ``{key: (steps, values)}``, to a
:class:`BackgroundWriter`, whose thread passes them to every :class:`RecordSink` in order
(the SQLite store, TensorBoard, any sink of the user's). The training step never waits on a
disk, a lock or a full file system; only :meth:`BackgroundWriter.wait` (at the end of a run,
before a checkpoint, on resume) waits for the writes handed over so far.

**A failing sink does not stop training.** Each job runs on each sink on its own: an error
(a full disk, a database locked past its timeout, a file system gone read-only) is caught,
reported once per sink (:meth:`BackgroundWriter.reports`, which the tracker shows), and the
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

    def finish(self, status: str, error: str | None) -> None:
        """:meth:`RunStore.finish`."""
        self.store.finish(self.run_id, status, error)

    def close(self) -> None:
        """Nothing: the store belongs to whoever opened it."""


class BackgroundWriter:
    """A thread that runs jobs (a sink method call) on every sink, in the order they were submitted."""

    def __init__(self, sinks: Sequence[RecordSink]):
        self.sinks = list(sinks)
        self._jobs: queue.Queue[tuple[str, Callable[[RecordSink], None], int] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._reports: list[str] = []
        #: Per sink: jobs failed, rows not recorded.
        self._failed: dict[str, list[int]] = {sink.name: [0, 0] for sink in self.sinks}
        self._closed = False

    def submit(self, what: str, job: Callable[[RecordSink], None], rows: int = 0) -> None:
        """Run ``job(sink)`` on every sink, on the writer's thread; ``what`` (and the ``rows`` it writes)
        describe it in reports."""
        if self._closed:
            raise RuntimeError(f"the tracker's writer is closed; cannot {what}")
        if not self.sinks:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="cadence-tracker-writer", daemon=True)
            self._thread.start()
        self._jobs.put((what, job, rows))

    def wait(self) -> None:
        """Block until every job submitted so far has run on every sink."""
        if self._thread is not None:
            self._jobs.join()

    def reports(self) -> list[str]:
        """The failure reports not yet taken: one per sink that failed for the first time."""
        with self._lock:
            reports, self._reports = self._reports, []
        return reports

    def losses(self) -> list[str]:
        """A line per sink that failed at all: how many jobs failed and values went unrecorded."""
        with self._lock:
            return [f"{name}: {jobs} write(s) failed, {rows} value(s) not recorded"
                    for name, (jobs, rows) in self._failed.items() if jobs]

    def close(self) -> None:
        """Run what is queued, stop the thread, close every sink."""
        if self._closed:
            return
        self.submit("close", lambda sink: sink.close())
        self.wait()
        self._closed = True
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            what, job, rows = item
            for sink in self.sinks:
                try:
                    job(sink)
                except Exception as e:  # any failure of a sink is reported, never raised into training
                    with self._lock:
                        counts = self._failed[sink.name]
                        if not counts[0]:
                            self._reports.append(
                                f"tracker: the {sink.name} sink failed to {what}: {type(e).__name__}: {e}; training "
                                f"goes on, and later writes are still tried (this is reported once; the end of "
                                f"the run counts what was not recorded)")
                        counts[0] += 1
                        counts[1] += rows
            self._jobs.task_done()
        self._jobs.task_done()
