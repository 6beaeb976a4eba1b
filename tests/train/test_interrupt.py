"""Interruption: SIGINT and SIGTERM save a checkpoint, mark the run and exit 130 / 143; a second Ctrl+C stops at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from cadence.track import RunContext, RunStore, Tracker
from cadence.train import Trainer, latest_checkpoint

from .test_resume import SCRIPT, TIMEOUT, assert_same_run, final, run, uninterrupted  # noqa: F401 (a fixture)


def start(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), str(run_dir), *args], stdout=subprocess.PIPE, text=True)


def wait_for_line(process: subprocess.Popen, line: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    for seen in process.stdout:
        if seen.strip() == line:
            return
        assert time.monotonic() < deadline, f"no {line!r} within {TIMEOUT} s"
    pytest.fail(f"the process ended (code {process.wait(TIMEOUT)}) before printing {line!r}")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_the_step_it_finishes_then_exits(tmp_path, uninterrupted, signum, code):
    process = start(tmp_path, "--slow-after", "4")
    wait_for_line(process, "step 5")
    process.send_signal(signum)
    assert process.wait(TIMEOUT) == code
    # The step in progress was finished and saved (steps 5 or 6, whichever the signal met), and nothing after it.
    stopped = final(tmp_path)
    assert stopped["status"] == "interrupted"
    assert latest_checkpoint(tmp_path / "checkpoints").name == f"step-{stopped['step']}"
    # Resumed, the run ends exactly where the uninterrupted one does.
    assert run(tmp_path, "--resume") == 0
    assert_same_run(final(tmp_path), uninterrupted)


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once(tmp_path):
    # Step 5 then sleeps for an hour: only the second Ctrl+C, stopping at once, ends the process within TIMEOUT.
    process = start(tmp_path, "--slow-after", "4", "--sleep", "3600")
    wait_for_line(process, "step 5")
    process.send_signal(signal.SIGINT)
    wait_for_line(process, "SIGINT: finishing the current step, then saving a checkpoint; press Ctrl+C again to stop "
                           "at once")
    process.send_signal(signal.SIGINT)
    code = process.wait(TIMEOUT)
    assert code in (-signal.SIGINT, 130)  # Python's own ending on an uncaught KeyboardInterrupt
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-3"  # no checkpoint of the step cut short


def test_from_python_the_first_ctrl_c_returns_control_to_the_caller(tmp_path):
    class CtrlC:
        def on_optimizer_step(self, trainer):
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(10)]
    with RunStore(tmp_path / "runs") as store:
        run_id = store.create_run("unit", {})
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data, loss_fn=nn.functional.cross_entropy,
                          epochs=2, callbacks=[CtrlC()], run=RunContext(Tracker(store, run_id), store.run_dir(run_id)),
                          console=False)
        assert trainer.run() == "interrupted"  # no KeyboardInterrupt: the caller (a notebook cell) goes on
        assert trainer.stopped_by == signal.SIGINT and trainer.global_step == 3
        assert store.get_run(run_id).status == "interrupted"
        assert latest_checkpoint(store.run_dir(run_id) / "checkpoints").name == "step-3"
    # The handlers are Python's own again once the run is over.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_message_that_cannot_be_shown_from_the_handler_is_shown_at_the_next_safe_point_never_failing():
    """The signal may come while the main thread is inside what the message needs (seen: rich importing its emoji
    table lazily, the handler's own print then finding the module half made). The run must not fail for it."""
    from cadence.train.interrupt import Interrupts

    shown, broken = [], [True]

    def notify(message: str) -> None:
        if broken[0]:
            raise ImportError("cannot import name 'EMOJI' from partially initialized module 'rich._emoji_codes'")
        shown.append(message)

    with Interrupts(notify=notify) as interrupts:
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this thread, before kill returns
        broken[0] = False
        assert shown == []
        assert interrupts.signal == signal.SIGTERM  # the loop's safe point reads it
        assert shown == ["SIGTERM: finishing the current step, then saving a checkpoint"]
        assert interrupts.signal == signal.SIGTERM and len(shown) == 1
