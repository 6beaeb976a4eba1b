"""A running run whose process is gone reads back dead: from a stale heartbeat, or at once on this host."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import textwrap

import pytest

from cadence.track import heartbeat
from cadence.track.heartbeat import DEAD_AFTER, Heartbeat, process_alive, status
from cadence.track.store import RunStore
from cadence.track.tracker import Tracker

HOST = socket.gethostname()


def test_status_reads_a_run_dead_only_when_running_and_gone():
    now = 1000.0
    me = os.getpid()
    assert status("running", now - 5, me, HOST, now, HOST) == "running"
    assert status("running", now - DEAD_AFTER - 1, me, HOST, now, HOST) == "dead"  # stale, though alive
    assert status("running", now - 5, me, "elsewhere", now, HOST) == "running"  # another host: by heartbeat only
    assert status("running", now - DEAD_AFTER - 1, me, "elsewhere", now, HOST) == "dead"
    assert status("running", None, None, None, now, HOST) == "dead"
    for ended in ("finished", "failed", "interrupted"):
        assert status(ended, now - 10 * DEAD_AFTER, me, HOST, now, HOST) == ended


def test_a_process_gone_or_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while child.poll() is None and time.monotonic() < deadline:  # ends, and is reaped by poll()
        time.sleep(0.05)
    assert not process_alive(child.pid)
    zombie = subprocess.Popen([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"])
    time.sleep(0.5)
    deadline = time.monotonic() + 30
    while process_alive(zombie.pid) and time.monotonic() < deadline:  # killed, not yet reaped: a zombie
        time.sleep(0.05)
    assert not process_alive(zombie.pid)
    zombie.wait(timeout=30)
    assert process_alive(os.getpid())


def test_the_heartbeat_beats_until_stopped(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("x", {})
        first = store.get_run(run_id).heartbeat
        time.sleep(0.02)
        beat = Heartbeat(store, run_id, seconds=0.05)
        try:
            deadline = time.monotonic() + 10
            seen = {store.get_run(run_id).heartbeat}
            while len(seen) < 3 and time.monotonic() < deadline:
                seen.add(store.get_run(run_id).heartbeat)
                time.sleep(0.01)
            assert len(seen) >= 3 and min(seen) > first
        finally:
            beat.stop()
        stopped = store.get_run(run_id).heartbeat
        time.sleep(0.2)
        assert store.get_run(run_id).heartbeat == stopped


def test_a_failing_heartbeat_is_reported_once_and_never_raised(caplog):
    class Failing:
        calls = 0

        def beat(self, run_id):
            Failing.calls += 1
            raise OSError("disk full")

    with caplog.at_level(logging.WARNING, logger="cadence.track"):
        beat = Heartbeat(Failing(), "r", seconds=0.01)
        deadline = time.monotonic() + 10
        while Failing.calls < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        beat.stop()
    assert Failing.calls >= 5
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "heartbeat of run r failed: OSError: disk full" in caplog.records[0].message


def test_a_stale_heartbeat_reads_dead_in_the_store(tmp_path, monkeypatch):
    with RunStore(tmp_path) as store, Tracker(store, store.create_run("x", {}), heartbeat_seconds=3600) as tracker:
        assert store.get_run(tracker.run_id).status == "running"
        monkeypatch.setattr(heartbeat, "DEAD_AFTER", -1.0)
        assert store.get_run(tracker.run_id).status == "dead"
        assert [r.status for r in store.list_runs()] == ["dead"]
        tracker.finish("finished")
        assert store.get_run(tracker.run_id).status == "finished"


RECORDING = textwrap.dedent("""
    import sys, time
    from cadence.track import recorded_run
    with recorded_run("victim", {"lr": 1.0}, runs_dir=sys.argv[1]) as run:
        run.tracker.add(1, {"train.loss": 1.0})
        run.tracker.flush()
        print(run.run_id, flush=True)
        time.sleep(600)
""")


@pytest.mark.slow
def test_a_run_killed_outright_shows_dead_at_once_in_cadence_runs(tmp_path):
    victim = subprocess.Popen([sys.executable, "-c", RECORDING, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        run_id = victim.stdout.readline().strip()
        assert run_id, "the recording process printed no run id"
        listed = subprocess.run([sys.executable, "-m", "cadence", "runs", "--runs-dir", str(tmp_path)],
                                capture_output=True, text=True, timeout=60)
        assert "running" in listed.stdout and "dead" not in listed.stdout
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        victim.stdout.close()
    listed = subprocess.run([sys.executable, "-m", "cadence", "runs", "--runs-dir", str(tmp_path), "--status", "dead"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and "dead" in listed.stdout


def test_a_recorded_runs_tracker_beats_its_heartbeat_until_closed(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("x", {})
        created = store.get_run(run_id).heartbeat
        with Tracker(store, run_id, heartbeat_seconds=0.05):
            deadline = time.monotonic() + 10
            while store.get_run(run_id).heartbeat <= created + 0.1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert store.get_run(run_id).heartbeat > created + 0.1
        closed = store.get_run(run_id).heartbeat
        time.sleep(0.2)
        assert store.get_run(run_id).heartbeat == closed
