"""The run store: every run's config, provenance, tags, status and values in one SQLite database.

Layout of a runs directory::

    runs/
      runs.sqlite               runs, series (each key's kind), chunks of values, events
      <run id>/                 one folder per run
        config.json             the resolved config
        source.diff             the uncommitted changes of the working tree (when there were any)
        checkpoints/step-<N>/   written by the trainer: model.safetensors, state.pt, meta.json
        tensorboard/            TensorBoard event files (with the ``tensorboard`` extra)

**Robustness.** The database is in write-ahead-log mode: readers never block the writer, and
a process killed at any point (SIGKILL mid-write included) leaves it readable with every
committed transaction. Commits are not synced one by one (``synchronous=NORMAL``): a power cut
may lose the last ones, never the database's consistency. Every write is one ``BEGIN
IMMEDIATE`` transaction, so two processes writing at once take turns (each waits up to
``timeout`` seconds). A connection may be shared by threads: a lock serialises its use.

**Values in chunks.** Each write stores each key's new values as one row, a *chunk*: the
steps and the values packed as arrays (int64 and float64), with the chunk's first and last
step: a tracker's hand-over of a thousand values is a handful of rows, a few microseconds of
the GIL per step instead of tens. :meth:`RunStore.values` unpacks a key's chunks into one
series, by step; NaN and infinities are kept as they are.

**Resuming.** :meth:`RunStore.truncate` deletes a run's values after the step it resumes
from, so that the values the resumed run records replace them instead of doubling them.

**Events** are what happened to a run besides its values, in order: a resume, a restart of
its processes, an interruption (:meth:`RunStore.add_event`, :meth:`RunStore.events`).

**Alive or dead.** A run's process beats a heartbeat into its row (:meth:`RunStore.beat`), and a
run recorded ``running`` whose process is gone is read back ``dead`` (:mod:`cadence.track.heartbeat`).

**Run ids** are the second and two random bytes (``20261124-101010-abcd``). Any unique
prefix names a run (:meth:`RunStore.resolve`); an ambiguous or unknown one fails, listing the
candidates.

**Schema.** The database records the version of its tables (``PRAGMA user_version``,
:data:`SCHEMA_VERSION`). A new database is created at this version; one of any other version
(or with tables but no version) is refused, naming both versions: a runs directory is
read by the cadence that wrote it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cadence.track.heartbeat import status
from cadence.track.provenance import collect_provenance
from cadence.track.records import Event, RunSummary, Series

#: The states a run can end in (a run is ``running`` until then).
END_STATES = ("finished", "failed", "interrupted")

#: Every status a run can have: ``dead`` is a run recorded ``running`` whose process is gone.
STATES = ("running", *END_STATES, "dead")

#: Ids drawn for a new run before :meth:`RunStore.create_run` gives up (two random bytes per second: a
#: clash takes runs started in the same second, and 100 in a row does not happen short of a bug).
ID_ATTEMPTS = 100

#: The schema version this cadence reads and writes (``PRAGMA user_version``); a database of another is refused.
SCHEMA_VERSION = 4

#: Candidates an unknown or ambiguous run id lists at most.
MAX_CANDIDATES = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL,
    error TEXT,
    provenance TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    heartbeat REAL,
    pid INTEGER,
    host TEXT,
    planned_steps INTEGER
);
CREATE TABLE IF NOT EXISTS series (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    window INTEGER,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS chunks (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    first_step INTEGER NOT NULL,
    last_step INTEGER NOT NULL,
    steps BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_run_key_step ON chunks (run_id, key, last_step);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs(id),
    time REAL NOT NULL,
    step INTEGER,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

#: How a chunk's steps and values are packed: little-endian int64 and float64.
STEP, VALUE = np.dtype("<i8"), np.dtype("<f8")

#: ``{key: (steps, values)}``: the values of several keys, each with its steps, in the order recorded.
Columns = Mapping[str, tuple[Sequence[int], Sequence[float]]]


class RunStore:
    """The SQLite database ``<runs_dir>/runs.sqlite`` and the run folders beside it.

    * ``create``: make the folder and database if missing (``False``: a missing database is a
      ``FileNotFoundError``, for the commands that only read),
    * ``timeout``: seconds a write waits for another process's transaction to end,
    * ``read_only``: open the database for reading only (it must exist), as ``cadence serve`` does:
      every write then fails.
    """

    def __init__(self, runs_dir: str | os.PathLike, *, create: bool = True, timeout: float = 30.0,
                 read_only: bool = False):
        self.runs_dir = Path(runs_dir)
        self.path = self.runs_dir / "runs.sqlite"
        if (read_only or not create) and not self.path.is_file():
            raise FileNotFoundError(f"no run database at {self.path} (`cadence train` records runs there; "
                                    f"--runs-dir or CADENCE_RUNS chooses another runs directory)")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        #: ``(run, key)`` pairs whose series this connection has recorded (no need to record them again).
        self._described: set[tuple[str, str]] = set()
        self._db: sqlite3.Connection | None = None
        try:
            # Autocommit mode: every write opens its own BEGIN IMMEDIATE transaction (see _write).
            self._db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro" if read_only else self.path,
                                       timeout=timeout, isolation_level=None, check_same_thread=False, uri=read_only)
            if read_only:
                if self._schema_version() != SCHEMA_VERSION:
                    raise ValueError(self._other_schema(self._schema_version()))
            else:
                self._db.execute("PRAGMA journal_mode=WAL")
                # A commit reaches the operating system, not the platter: a killed process loses nothing
                # committed, a power cut may lose the last commits, never the database's consistency.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._create_or_check_schema()
        except (sqlite3.DatabaseError, ValueError) as e:
            if self._db is not None:  # a refused database is left closed, as it was found
                self._db.close()
            raise ValueError(f"{self.path} is not a usable cadence run database: {e}") from e

    # -- runs ----------------------------------------------------------------------------------

    def create_run(self, name: str, config: Mapping[str, Any], *, tags: Iterable[str] = (),
                   provenance: Mapping[str, Any] | None = None, diff: str = "", run_id: str | None = None) -> str:
        """Record a new ``running`` run of experiment ``name`` by this process; create its folder; return its id
        (``run_id`` when given: an id drawn beforehand by :func:`new_run_id`, as the launcher of a run's
        processes does). ``provenance`` (and the uncommitted ``diff``, written to ``source.diff``) are
        collected now unless given (:func:`cadence.track.provenance.collect_provenance`); ``tags`` are
        labels to filter runs by. An id already taken (by a run started in the same second, or a
        recorded run whose folder was deleted) is drawn again, up to :data:`ID_ATTEMPTS` times.

        Raises:
            FileExistsError: every id drawn was taken, or ``run_id`` is.
        """
        tags = _checked_tags(tags)
        if provenance is None:
            provenance, diff = collect_provenance()
        text = json.dumps(dict(config), indent=2, sort_keys=False)
        given = run_id
        for _ in range(1 if given is not None else ID_ATTEMPTS):
            run_id = given or new_run_id()
            folder = self.run_dir(run_id)
            try:
                folder.mkdir(parents=True)
            except FileExistsError:
                continue
            (folder / "config.json").write_text(text + "\n")
            if diff:
                (folder / "source.diff").write_text(diff)
            try:
                with self._write() as db:
                    now = time.time()
                    db.execute("INSERT INTO runs (id, name, status, config, start_time, provenance, tags, heartbeat, "
                               "pid, host) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                               (run_id, name, text, now, json.dumps(dict(provenance)), json.dumps(tags), now,
                                os.getpid(), socket.gethostname()))
            except sqlite3.IntegrityError:
                shutil.rmtree(folder)
                continue
            return run_id
        if given is not None:
            raise FileExistsError(f"run id {given!r} is taken in {self.runs_dir}")
        raise FileExistsError(f"no free run id in {self.runs_dir}: {ID_ATTEMPTS} ids drawn in a row were taken "
                              f"(each is the second and two random bytes)")

    def run_dir(self, run_id: str) -> Path:
        """The folder of run ``run_id``."""
        return self.runs_dir / run_id

    def resolve(self, run_id: str) -> str:
        """The full id of the run that ``run_id`` names: itself, or the one run it is a prefix of.

        Raises:
            KeyError: no run has that id or prefix (the message lists the runs sharing the
                longest prefix with it), or several do (the message lists them).
        """
        with self._lock:
            ids = [row[0] for row in self._db.execute("SELECT id FROM runs ORDER BY id")]
        if run_id in ids:
            return run_id
        matches = [i for i in ids if i.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise KeyError(f"run id {run_id!r} is ambiguous in {self.path}: {len(matches)} runs start with it: "
                           f"{_candidates(matches)}")
        for length in range(len(run_id) - 1, 0, -1):
            near = [i for i in ids if i.startswith(run_id[:length])]
            if near:
                raise KeyError(f"no run {run_id!r} in {self.path}; runs starting with {run_id[:length]!r}: "
                               f"{_candidates(near)}")
        raise KeyError(self._unknown(run_id))

    def get_run(self, run_id: str) -> RunSummary:
        """The run ``run_id`` (or a unique prefix of it); an unknown or ambiguous id raises ``KeyError``."""
        [run] = self._summaries(self.resolve(run_id))
        return run

    def list_runs(self) -> list[RunSummary]:
        """Every run, newest first, with the final value of each of its series."""
        return self._summaries()

    def set_tags(self, run_id: str, tags: Iterable[str]) -> None:
        """Replace run ``run_id``'s tags."""
        tags = _checked_tags(tags)
        self._update(run_id, "tags = ?", json.dumps(tags))

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Record ``config`` as run ``run_id``'s (a resumed run's, with the changes it was resumed with)."""
        text = json.dumps(dict(config), indent=2, sort_keys=False)
        self._update(run_id, "config = ?", text)
        (self.run_dir(run_id) / "config.json").write_text(text + "\n")

    def finish(self, run_id: str, status: str, error: str | None = None) -> None:
        """Mark run ``run_id`` as ended with ``status`` (one of :data:`END_STATES`) and an optional error."""
        if status not in END_STATES:
            raise ValueError(f"run status {status!r} is not an end state; expected one of {', '.join(END_STATES)}")
        self._update(run_id, "status = ?, end_time = ?, error = ?", status, time.time(), error)

    def beat(self, run_id: str) -> None:
        """Record a heartbeat of run ``run_id`` from this process: the time, its process id and host."""
        self._update(run_id, "heartbeat = ?, pid = ?, host = ?", time.time(), os.getpid(), socket.gethostname())

    def plan(self, run_id: str, steps: int) -> None:
        """Record that run ``run_id`` is to take ``steps`` optimizer steps in all (for its time left)."""
        self._update(run_id, "planned_steps = ?", int(steps))

    def version(self, run_id: str) -> tuple[int, int]:
        """What changes when run ``run_id`` records anything: its newest chunk's and event's row ids (a reader
        polling for new values compares it with the one it last read)."""
        with self._lock:
            chunk, event = self._db.execute(
                "SELECT (SELECT max(rowid) FROM chunks WHERE run_id = ?), (SELECT max(rowid) FROM events WHERE run_id = ?)",
                (run_id,) * 2).fetchone()
        return chunk or 0, event or 0

    def add_event(self, run_id: str, kind: str, message: str, step: int | None = None) -> None:
        """Record an :class:`Event` of run ``run_id``, now."""
        with self._write() as db:
            db.execute("INSERT INTO events (run_id, time, step, kind, message) VALUES (?, ?, ?, ?, ?)",
                       (run_id, time.time(), step, kind, message))

    def events(self, run_id: str) -> list[Event]:
        """Run ``run_id``'s events, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT time, step, kind, message FROM events WHERE run_id = ? ORDER BY rowid",
                                    (run_id,)).fetchall()
        return [Event(*row) for row in rows]

    def delete_run(self, run_id: str) -> None:
        """Delete run ``run_id``: its records, values, events and folder."""
        with self._write() as db:
            for table in ("chunks", "series", "events"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            self._described = {pair for pair in self._described if pair[0] != run_id}
            changed = db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
        if not changed:
            raise KeyError(self._unknown(run_id))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # -- values --------------------------------------------------------------------------------

    def add_values(self, run_id: str, columns: Columns, series: Mapping[str, Series] | None = None) -> None:
        """Record the values of run ``run_id`` in ``columns`` (``{key: (steps, values)}``), a chunk per key,
        in one transaction, with what their keys are: ``series`` records (or changes) the kinds of keys;
        a key recorded for the first time without one is a ``"value"`` key."""
        chunks = []
        for key, (steps, values) in columns.items():
            steps, values = np.asarray(steps, dtype=STEP), np.asarray(values, dtype=VALUE)
            if len(steps) != len(values):
                raise ValueError(f"run {run_id}: {len(steps)} steps but {len(values)} values for {key!r}")
            if len(steps):
                chunks.append((run_id, key, int(steps.min()), int(steps.max()), steps.tobytes(), values.tobytes()))
        series = dict(series or {})
        unknown = [key for key in columns if key not in series and (run_id, key) not in self._described]
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO series (run_id, key, kind, window) VALUES (?, ?, ?, ?)",
                           [(run_id, key, s.kind, s.window) for key, s in series.items()])
            db.executemany("INSERT OR IGNORE INTO series (run_id, key, kind) VALUES (?, ?, 'value')",
                           [(run_id, key) for key in unknown])
            db.executemany("INSERT INTO chunks (run_id, key, first_step, last_step, steps, vals) "
                           "VALUES (?, ?, ?, ?, ?, ?)", chunks)
        self._described.update((run_id, key) for key in [*series, *unknown])

    def truncate(self, run_id: str, step: int) -> None:
        """Delete run ``run_id``'s values recorded after ``step`` and mark it running again: it resumes
        from a checkpoint at ``step``, and records the later values anew."""
        step = int(step)
        with self._write() as db:
            changed = db.execute("UPDATE runs SET status = 'running', end_time = NULL, error = NULL WHERE id = ?",
                                 (run_id,)).rowcount
            db.execute("DELETE FROM chunks WHERE run_id = ? AND first_step > ?", (run_id, step))
            straddling = db.execute("SELECT rowid, steps, vals FROM chunks WHERE run_id = ? AND last_step > ?",
                                    (run_id, step)).fetchall()
            for rowid, packed_steps, packed_values in straddling:
                steps, values = _unpack(packed_steps, packed_values)
                kept = steps <= step
                db.execute("UPDATE chunks SET last_step = ?, steps = ?, vals = ? WHERE rowid = ?",
                           (int(steps[kept].max()), steps[kept].tobytes(), values[kept].tobytes(), rowid))
        if not changed:
            raise KeyError(self._unknown(run_id))

    def values(self, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The steps (int64) and values (float64) of ``key`` in run ``run_id``, by step (values of one
        step in the order recorded)."""
        with self._lock:
            chunks = self._db.execute("SELECT steps, vals FROM chunks WHERE run_id = ? AND key = ? ORDER BY rowid",
                                      (run_id, key)).fetchall()
        unpacked = [_unpack(s, v) for s, v in chunks]
        steps = np.concatenate([s for s, _ in unpacked]) if unpacked else np.zeros(0, dtype=STEP)
        values = np.concatenate([v for _, v in unpacked]) if unpacked else np.zeros(0, dtype=VALUE)
        order = np.argsort(steps, kind="stable")
        return steps[order], values[order]

    def series(self, run_id: str) -> dict[str, Series]:
        """What each key of run ``run_id`` is, by key."""
        with self._lock:
            rows = self._db.execute("SELECT key, kind, window FROM series WHERE run_id = ? ORDER BY key", (run_id,))
            return {key: Series(kind, window) for key, kind, window in rows}

    # -- the connection ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting up to the
        timeout for another writer), so that it cannot fail half-way on a lock upgrade."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _update(self, run_id: str, assignments: str, *values: Any) -> None:
        """``UPDATE runs SET <assignments>`` of run ``run_id`` with ``values``; an unknown run is a ``KeyError``."""
        with self._write() as db:
            if not db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id)).rowcount:
                raise KeyError(self._unknown(run_id))

    def _create_or_check_schema(self) -> None:
        """Create the tables in a new (empty) database; refuse one of another schema than :data:`SCHEMA_VERSION`."""
        if self._schema_version() == SCHEMA_VERSION:
            return
        with self._write() as db:  # checked again under the write lock: another process may have just created it
            version = self._schema_version()
            if version == SCHEMA_VERSION:
                return
            if version != 0 or db.execute("SELECT 1 FROM sqlite_master").fetchone():
                raise ValueError(self._other_schema(version))
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _other_schema(self, version: int) -> str:
        """Why a database of schema ``version`` is refused, and what to do with it."""
        elsewhere = (f"move {self.runs_dir} aside (cadence then starts a new database there), or choose another "
                     f"runs directory (--runs-dir or CADENCE_RUNS)")
        advice = (f"A newer cadence wrote it: upgrade cadence to read it, or {elsewhere}" if version > SCHEMA_VERSION
                  else f"An earlier, unreleased cadence (or another program) wrote it: {elsewhere}")
        unversioned = " (tables without a version)" if not version else ""
        return (f"its schema version is {version}{unversioned}; this cadence reads and writes schema version "
                f"{SCHEMA_VERSION} only. {advice}")

    def _schema_version(self) -> int:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return version

    def _summaries(self, run_id: str | None = None) -> list[RunSummary]:
        one = run_id is not None
        args = (run_id,) if one else ()
        where = "WHERE id = ?" if one else ""
        with self._lock:
            rows = self._db.execute("SELECT id, name, status, config, start_time, end_time, error, tags, provenance, "
                                    f"heartbeat, pid, host, planned_steps FROM runs {where} "
                                    "ORDER BY start_time DESC, id DESC", args).fetchall()
            series: dict[str, dict[str, Series]] = {}
            for rid, key, kind, window in self._db.execute(
                    f"SELECT run_id, key, kind, window FROM series {'WHERE run_id = ?' if one else ''} "
                    "ORDER BY run_id, key", args):
                series.setdefault(rid, {})[key] = Series(kind, window)
            last = {rid: {key: self._final(rid, key, s) for key, s in keys.items()} for rid, keys in series.items()}
            steps = dict(self._db.execute(f"SELECT run_id, max(last_step) FROM chunks "
                                          f"{'WHERE run_id = ?' if one else ''} GROUP BY run_id", args).fetchall())
        now, host = time.time(), socket.gethostname()
        return [RunSummary(r[0], r[1], status(r[2], r[9], r[10], r[11], now, host), json.loads(r[3]), r[4], r[5],
                           r[6], {k: v for k, v in last.get(r[0], {}).items() if v is not None},
                           tuple(json.loads(r[7])), json.loads(r[8]), series.get(r[0], {}), r[9], r[11],
                           steps.get(r[0]), r[12]) for r in rows]

    def _final(self, run_id: str, key: str, series: Series) -> float | None:
        """The value of ``key`` at its largest step, as its kind defines it (a moving series: the mean of
        its last ``window`` values); ``None`` without values. Reads the newest chunks only."""
        n = series.window if series.kind == "moving" and series.window else 1
        found, count = [], 0
        for packed_steps, packed_values in self._db.execute(
                "SELECT steps, vals FROM chunks WHERE run_id = ? AND key = ? ORDER BY last_step DESC, rowid DESC",
                (run_id, key)):
            found.append(_unpack(packed_steps, packed_values))
            count += len(found[-1][0])
            if count >= n:
                break
        if not found:
            return None
        steps = np.concatenate([s for s, _ in reversed(found)])
        values = np.concatenate([v for _, v in reversed(found)])
        return float(values[np.argsort(steps, kind="stable")][-n:].mean())

    def _unknown(self, run_id: str) -> str:
        return f"no run {run_id!r} in {self.path} (`cadence runs` lists the runs)"


def _candidates(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:MAX_CANDIDATES])
    return shown + (f" and {len(ids) - MAX_CANDIDATES} more" if len(ids) > MAX_CANDIDATES else "")


def _checked_tags(tags: Iterable[str]) -> list[str]:
    """``tags`` without repeats, in order; each a non-empty string without spaces or commas."""
    if isinstance(tags, str):
        raise TypeError(f"tags={tags!r} is a string; expected a list of tags, such as [{tags!r}]")
    checked = []
    for tag in tags:
        if not isinstance(tag, str) or not tag or any(c.isspace() or c == "," for c in tag):
            raise ValueError(f"tag {tag!r} is not a tag; expected a non-empty string without spaces or commas")
        if tag not in checked:
            checked.append(tag)
    return checked


def new_run_id() -> str:
    """A fresh run id: the local time to the second, then two random bytes in hex."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _unpack(steps: bytes, values: bytes) -> tuple[np.ndarray, np.ndarray]:
    return np.frombuffer(steps, dtype=STEP), np.frombuffer(values, dtype=VALUE)
