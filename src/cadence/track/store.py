"""The run store: every run's config, status and metrics in one SQLite database.

Layout of a runs directory::

    runs/
      runs.sqlite          runs (id, name, status, config, times, error) and metrics (run, step, key, value)
      <run id>/            one folder per run
        config.json        the resolved config
        checkpoint.pt      written by the trainer

Metric rows are written in batches, one transaction per :meth:`RunStore.add_metrics` call.
SQLite stores NaN as NULL; it is read back as NaN.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The states a run can end in (a run is ``running`` until then).
END_STATES = ("finished", "failed", "interrupted")

#: Ids drawn for a new run before :meth:`RunStore.create_run` gives up (two random bytes per second: a
#: clash takes runs started in the same second, and 100 in a row does not happen short of a bug).
ID_ATTEMPTS = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS metrics_by_run_key_step ON metrics (run_id, key, step);
"""


@dataclass(frozen=True)
class RunSummary:
    """One run as the store knows it; times are seconds since the epoch."""

    id: str
    name: str
    status: str
    config: dict[str, Any]
    start_time: float
    end_time: float | None
    error: str | None
    last_metrics: dict[str, float]

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while running."""
        return None if self.end_time is None else self.end_time - self.start_time


class RunStore:
    """The SQLite database ``<runs_dir>/runs.sqlite`` and the run folders beside it."""

    def __init__(self, runs_dir: str | os.PathLike):
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.runs_dir / "runs.sqlite"
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ValueError(f"{self.path} is not a usable cadence run database: {e}") from e

    def create_run(self, name: str, config: dict[str, Any]) -> str:
        """Record a new ``running`` run of experiment ``name``; create its folder; return its id.

        An id is the second and two random bytes (``20261124-101010-abcd``). One already taken,
        by a run started in the same second (its folder exists) or by a recorded run whose folder
        was deleted (its row exists), is drawn again, up to :data:`ID_ATTEMPTS` times.

        Raises:
            FileExistsError: every id drawn was taken.
        """
        text = json.dumps(config, indent=2, sort_keys=False)
        for _ in range(ID_ATTEMPTS):
            run_id = _new_run_id()
            folder = self.run_dir(run_id)
            try:
                folder.mkdir(parents=True)
            except FileExistsError:
                continue
            (folder / "config.json").write_text(text + "\n")
            try:
                with self._db:
                    self._db.execute("INSERT INTO runs (id, name, status, config, start_time) "
                                     "VALUES (?, ?, 'running', ?, ?)", (run_id, name, text, time.time()))
            except sqlite3.IntegrityError:
                shutil.rmtree(folder)
                continue
            return run_id
        raise FileExistsError(f"no free run id in {self.runs_dir}: {ID_ATTEMPTS} ids drawn in a row were taken "
                              f"(each is the second and two random bytes)")

    def run_dir(self, run_id: str) -> Path:
        """The folder of run ``run_id``."""
        return self.runs_dir / run_id

    def add_metrics(self, run_id: str, rows: Iterable[tuple[int, str, float]]) -> None:
        """Record ``(step, key, value)`` rows of run ``run_id`` in one transaction."""
        with self._db:
            self._db.executemany("INSERT INTO metrics (run_id, step, key, value) VALUES (?, ?, ?, ?)",
                                 ((run_id, int(step), key, float(value)) for step, key, value in rows))

    def update_config(self, run_id: str, config: dict[str, Any]) -> None:
        """Record ``config`` as run ``run_id``'s (a resumed run's, with the changes it was resumed with)."""
        text = json.dumps(config, indent=2, sort_keys=False)
        with self._db:
            changed = self._db.execute("UPDATE runs SET config = ? WHERE id = ?", (text, run_id)).rowcount
        if not changed:
            raise KeyError(self._unknown(run_id))
        (self.run_dir(run_id) / "config.json").write_text(text + "\n")

    def truncate(self, run_id: str, step: int) -> None:
        """Delete run ``run_id``'s values recorded after ``step`` and mark it running again (it resumes there)."""
        with self._db:
            self._db.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, int(step)))
            self._db.execute("UPDATE runs SET status = 'running', end_time = NULL, error = NULL WHERE id = ?",
                             (run_id,))

    def finish(self, run_id: str, status: str, error: str | None = None) -> None:
        """Mark run ``run_id`` as ended with ``status`` (one of :data:`END_STATES`) and an optional error."""
        if status not in END_STATES:
            raise ValueError(f"run status {status!r} is not an end state; expected one of {', '.join(END_STATES)}")
        with self._db:
            changed = self._db.execute("UPDATE runs SET status = ?, end_time = ?, error = ? WHERE id = ?",
                                       (status, time.time(), error, run_id)).rowcount
        if not changed:
            raise KeyError(self._unknown(run_id))

    def list_runs(self) -> list[RunSummary]:
        """Every run, newest first, with the value of each metric at its largest step."""
        last: dict[str, dict[str, float]] = {}
        for run_id, key, value in self._db.execute(
                "SELECT run_id, key, value FROM (SELECT run_id, key, value, ROW_NUMBER() OVER "
                "(PARTITION BY run_id, key ORDER BY step DESC, rowid DESC) AS rank FROM metrics) WHERE rank = 1"):
            last.setdefault(run_id, {})[key] = _float(value)
        rows = self._db.execute("SELECT id, name, status, config, start_time, end_time, error FROM runs "
                                "ORDER BY start_time DESC, id DESC").fetchall()
        return [RunSummary(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], last.get(r[0], {})) for r in rows]

    def get_run(self, run_id: str) -> RunSummary:
        """The run ``run_id``; an unknown id raises ``KeyError``."""
        for run in self.list_runs():
            if run.id == run_id:
                return run
        raise KeyError(self._unknown(run_id))

    def metrics(self, run_id: str, key: str | None = None) -> list[tuple[int, str, float]]:
        """The ``(step, key, value)`` rows of run ``run_id`` (only ``key``'s, if given), by step."""
        query, args = "SELECT step, key, value FROM metrics WHERE run_id = ?", [run_id]
        if key is not None:
            query, args = query + " AND key = ?", args + [key]
        return [(s, k, _float(v)) for s, k, v in self._db.execute(query + " ORDER BY step, rowid", args)]

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unknown(self, run_id: str) -> str:
        return f"no run {run_id!r} in {self.path} (`cadence runs` lists the runs)"


def _new_run_id() -> str:
    """A fresh run id: the local time to the second, then two random bytes in hex."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _float(value: float | None) -> float:
    return math.nan if value is None else value
