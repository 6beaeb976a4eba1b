"""The run store under real processes: two runs writing at once, and a writer killed with SIGKILL mid-write."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from cadence.track import RunStore

TIMEOUT = 60.0  # seconds any wait on a child process may take before the test fails


def spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def read_line(process: subprocess.Popen, timeout: float = TIMEOUT) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        process.kill()
        raise AssertionError(f"no line from the child within {timeout} s")
    return process.stdout.readline().strip()


def finished(process: subprocess.Popen) -> None:
    try:
        _, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, err


WRITER = """
    import sys, time
    from cadence.track import RunStore, Tracker

    runs_dir, name, other = sys.argv[1:]
    store = RunStore(runs_dir)
    run_id = store.create_run(name, {"name": name}, provenance={})
    print(run_id, flush=True)
    tracker = Tracker(store, run_id, tensorboard_dir=False, flush_every=50)
    tracker.declare("train.loss", "moving")
    for step in range(1, 5001):
        tracker.add(step, {"train.loss": float(step)})
        if step == 50:
            tracker.flush()
            # Go on only once the other run has written too: from here on, both write at once.
            deadline = time.monotonic() + 30
            while not any(r.name == other and r.last_metrics for r in store.list_runs()):
                assert time.monotonic() < deadline, "the other writer never wrote"
                time.sleep(0.01)
    tracker.finish("finished")
    tracker.close()
"""


@pytest.mark.slow
def test_two_runs_write_at_the_same_time(tmp_path):
    runs = tmp_path / "runs"
    RunStore(runs).close()
    children = [spawn(WRITER, str(runs), "a", "b"), spawn(WRITER, str(runs), "b", "a")]
    run_ids = [read_line(child) for child in children]
    for child in children:
        finished(child)
    with RunStore(runs) as store:
        for run_id in run_ids:
            assert list(store.series(run_id)) == ["train.loss"]
            assert store.values(run_id, "train.loss")[0].tolist() == list(range(1, 5001))
            assert store.get_run(run_id).status == "finished"
        assert store._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


KILLED = """
    import sys
    from cadence.track import RunStore

    store = RunStore(sys.argv[1])
    run_id = store.create_run("killed", {}, provenance={})
    print(run_id, flush=True)
    step = 0
    while True:  # one transaction of 2000 values after another, each reported once committed
        steps = range(step + 1, step + 201)
        store.add_values(run_id, {f"train.m{j}": (steps, [float(s) for s in steps]) for j in range(10)})
        step += 200
        print(step, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_mid_write_leaves_every_committed_step(tmp_path):
    child = spawn(KILLED, str(tmp_path))
    run_id = read_line(child)
    committed = [int(read_line(child)) for _ in range(20)]
    os.kill(child.pid, signal.SIGKILL)  # it is writing its next transaction, or about to
    child.wait(timeout=TIMEOUT)
    assert child.returncode == -signal.SIGKILL
    with RunStore(tmp_path) as store:
        assert store._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        steps = store.values(run_id, "train.m0")[0].tolist()
        assert len(store.series(run_id)) == 10  # whole transactions only: every key has every step written
        assert all(store.values(run_id, key)[0].tolist() == steps for key in store.series(run_id))
        assert store.get_run(run_id).status == "dead"  # recorded running, its writer killed
    # Every step reported committed is there, once, and nothing but whole transactions after it.
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= committed[-1] and len(steps) % 200 == 0
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:  # a plain reader opens it as well
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)
