"""``cadence train --nproc N`` under torch's elastic agent, driving real processes: two machines (two launchers on
the loopback address), a worker killed and restarted, the launcher preempted (SIGTERM) and resumed, a worker
frozen (SIGSTOP) ending the others within the process group's timeout.

One reference run (two nodes of one process each, never interrupted) is trained once per module; the runs that are
restarted or resumed end with parameters bit-identical to it: ranks, data and every collective are the same.
Every wait has a deadline, so that a hang fails the test rather than the suite.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch

from cadence.track import RunStore
from cadence.track.checkpoints import latest_checkpoint
from tests.processes import free_port

pytestmark = pytest.mark.slow

#: Seconds any process of these tests may take; a wait for a file or a line never exceeds it.
TIMEOUT = 60
#: The run: MNIST's CNN, 80 steps of the global batch 64, a checkpoint every 20.
RUN = ["train", "mnist", "max_steps=80", "checkpoint_every=20", "num_threads=1", "batch_size=64"]


def cadence(runs: Path, data_dir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cadence", *RUN, "--runs-dir", str(runs), "--data-dir",
                             str(data_dir), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(TIMEOUT)
        pytest.fail(f"still running after {TIMEOUT} s: {err[-2000:]}")
    return process.returncode, out, err


def wait_for(pattern: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not glob.glob(pattern):
        assert process.poll() is None, f"ended ({process.returncode}) before {pattern} appeared"
        assert time.monotonic() < deadline, f"no {pattern} after {TIMEOUT} s"
        time.sleep(0.02)


def worker(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of the launcher's process of ``rank`` (its child whose environment says ``RANK=rank``)."""
    for folder in glob.glob("/proc/[0-9]*"):
        try:
            parent = int(Path(folder, "stat").read_text().rsplit(")", 1)[1].split()[1])
            environment = Path(folder, "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == launcher.pid and f"RANK={rank}".encode() in environment:
            return int(folder[len("/proc/"):])
    raise AssertionError(f"the launcher has no process of rank {rank}")


def weights(run_dir: Path) -> dict:
    return safetensors.torch.load_file(latest_checkpoint(run_dir) / "model.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> dict:
    """The run on two machines, each launching one process (``--nnodes 2``, node 0 listening on the loopback
    address): its final weights, and what the two launchers returned."""
    runs, endpoint = tmp_path_factory.mktemp("two-nodes") / "runs", f"127.0.0.1:{free_port()}"
    nodes = [cadence(runs, data_dir, "--nproc", "1", "--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint",
                     endpoint) for rank in (0, 1)]
    ended = [finish(node) for node in nodes]
    [run] = RunStore(runs).list_runs()
    return {"ended": ended, "run": run, "weights": weights(runs / run.id)}


def test_two_machines_train_one_run_recorded_by_node_0(reference):
    (code0, out0, err0), (code1, out1, err1) = reference["ended"]
    assert (code0, code1) == (0, 0), err0[-2000:] + err1[-2000:]
    run = reference["run"]
    assert run.status == "finished" and run.last_metrics["valid.accuracy"] > 0.9
    assert f"run {run.id} finished" in out0 and run.id not in out1  # node 1's process is rank 1: it records nothing


def test_a_killed_worker_is_restarted_and_the_run_ends_finished_bit_identical_in_the_same_record(tmp_path, data_dir,
                                                                                               reference):
    runs = tmp_path / "runs"
    launcher = cadence(runs, data_dir, "--nproc", "2", "--max-restarts", "1")
    wait_for(str(runs / "*/checkpoints/step-40"), launcher)
    os.kill(worker(launcher, 1), signal.SIGKILL)
    code, out, err = finish(launcher)
    assert code == 0, err[-3000:]
    [run] = RunStore(runs).list_runs()  # one run across both attempts
    assert run.status == "finished"
    events = RunStore(runs).events(run.id)
    assert [e.kind for e in events] == ["restarted", "resumed"], events
    assert events[1].step >= 40 and events[1].message.startswith(f"from step-{events[1].step} ")
    # The group resumed from the newest complete checkpoint and ended where an uninterrupted run ends, bit for bit.
    final, expected = weights(runs / run.id), reference["weights"]
    assert final.keys() == expected.keys() and all((final[k] == expected[k]).all() for k in final)


def test_sigterm_to_the_launcher_saves_once_and_exits_143_then_resume_continues(tmp_path, data_dir, reference):
    """A cluster's preemption: the agent passes the signal on, every process stops at the same step, one checkpoint
    is saved within torchrun's 30 s grace, and the launcher exits 143 (plain torchrun: 1)."""
    runs = tmp_path / "runs"
    launcher = cadence(runs, data_dir, "--nproc", "2")
    wait_for(str(runs / "*/checkpoints/step-20"), launcher)
    sent = time.monotonic()
    launcher.send_signal(signal.SIGTERM)
    code, out, err = finish(launcher)
    assert code == 143 and time.monotonic() - sent < 30, err[-3000:]
    [run] = RunStore(runs).list_runs()
    assert run.status == "interrupted" and run.error.startswith("SIGTERM: stopped at step "), (run.error, err[-3000:])
    step = int(run.error.rsplit(" ", 1)[1])
    assert latest_checkpoint(runs / run.id).name == f"step-{step}"
    assert [e.kind for e in RunStore(runs).events(run.id)] == ["interrupted"]
    code, out, err = finish(cadence(runs, data_dir, "--nproc", "2", "--resume", run.id))
    assert code == 0, err[-3000:]
    assert RunStore(runs).get_run(run.id).status == "finished"
    final, expected = weights(runs / run.id), reference["weights"]
    assert all((final[k] == expected[k]).all() for k in expected)


def test_a_frozen_worker_ends_the_others_within_the_timeout_with_an_error_not_a_hang(tmp_path, data_dir):
    runs = tmp_path / "runs"
    launcher = cadence(runs, data_dir, "--nproc", "2", "dist_timeout=5")
    try:
        wait_for(str(runs / "*/checkpoints/step-20"), launcher)
        rank0, rank1 = worker(launcher, 0), worker(launcher, 1)
        os.kill(rank1, signal.SIGSTOP)
        frozen = time.monotonic()
        while Path(f"/proc/{rank0}").exists() and Path(f"/proc/{rank0}/stat").read_text().split(")")[-1].split()[0] \
                != "Z":
            assert time.monotonic() - frozen < 5 + 20, "rank 0 still waits for the frozen rank"
            time.sleep(0.05)
        os.kill(rank1, signal.SIGKILL)  # the agent would kill it after its 30 s grace
        code, out, err = finish(launcher)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert code == 1
    assert "timed out after 5 s" in err, err[-3000:]
    [run] = RunStore(runs).list_runs()
    assert run.status == "failed" and "timed out after 5 s" in run.error
