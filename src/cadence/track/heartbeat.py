"""Alive or dead: a running run's heartbeat, and what a reader makes of it.

A process recording a run beats a heartbeat into the run's row every :data:`HEARTBEAT_SECONDS`
(:class:`Heartbeat`, started by the :class:`~cadence.track.tracker.Tracker` of a recorded run),
with its process id and host. A run whose row still says ``running`` after its process was
killed outright (SIGKILL, the out-of-memory killer, a reboot) would otherwise say so forever:
a reader calls it ``dead`` (:func:`status`) when its heartbeat is older than :data:`DEAD_AFTER`,
or at once when its process is gone from the reader's own host.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Protocol

logger = logging.getLogger("cadence.track")

#: Seconds between the heartbeats of a running run's process.
HEARTBEAT_SECONDS = 10.0

#: Seconds without a heartbeat after which a ``running`` run is read back ``dead``.
DEAD_AFTER = 60.0


def status(recorded: str, heartbeat: float | None, pid: int | None, host: str | None, now: float,
           this_host: str) -> str:
    """A run's status: as ``recorded``, but ``dead`` for a ``running`` run whose ``heartbeat`` is older than
    :data:`DEAD_AFTER` at ``now``, or whose process ``pid`` is gone from ``host`` when that is this host."""
    if recorded != "running":
        return recorded
    stale = heartbeat is None or now - heartbeat > DEAD_AFTER
    return "dead" if stale or (host == this_host and pid is not None and not process_alive(pid)) else "running"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or a platform that cannot tell: alive as far as we know
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:][:1] != "Z"


class _Beating(Protocol):
    def beat(self, run_id: str) -> None: ...


class Heartbeat:
    """A daemon thread that calls ``store.beat(run_id)`` now and every ``seconds`` until :meth:`stop`.

    A beat that fails (a database locked past its timeout, a full disk) is reported once, a
    warning of the ``cadence.track`` logger, and the next is tried all the same: a run is not
    stopped for its heartbeat.
    """

    def __init__(self, store: _Beating, run_id: str, seconds: float = HEARTBEAT_SECONDS):
        self.store, self.run_id, self.seconds = store, run_id, seconds
        self._stopped = threading.Event()
        self._reported = False
        self._beat()  # at once: a resumed or restarted run is this process's from now on
        self._thread = threading.Thread(target=self._run, name="cadence-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (waits for a beat under way)."""
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.seconds):
            self._beat()

    def _beat(self) -> None:
        try:
            self.store.beat(self.run_id)
        except Exception as e:  # a heartbeat's failure never stops the run
            if not self._reported:
                self._reported = True
                logger.warning(f"tracker: the heartbeat of run {self.run_id} failed: {type(e).__name__}: {e}; "
                               f"training goes on (readers may call the run dead; reported once)")
