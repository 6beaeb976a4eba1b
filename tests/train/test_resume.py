"""Exact resume: a run killed with SIGKILL and resumed from its checkpoint ends bit-identical to one never stopped.

Each run is a real subprocess (tests/train/resumable_run.py) that draws on every source of
randomness a run has (shuffled and augmented batches, dropout, NumPy's and Python's
generators), validates twice an epoch, accumulates two batches per step, follows a schedule
and writes a checkpoint every 3 optimizer steps; an epoch is 7 optimizer steps.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cadence.train import latest_checkpoint, list_checkpoints

SCRIPT = Path(__file__).with_name("resumable_run.py")
TIMEOUT = 120


def run(run_dir: Path, *args: str) -> int:
    return subprocess.run([sys.executable, str(SCRIPT), str(run_dir), *args], timeout=TIMEOUT).returncode


def final(run_dir: Path) -> dict:
    return torch.load(run_dir / "final.pt", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    assert run(run_dir) == 0
    result = final(run_dir)
    assert result["step"] == 21 and result["status"] == "finished"
    return result


def assert_same_run(result: dict, reference: dict) -> None:
    assert result["step"] == reference["step"] and result["status"] == "finished"
    for p, q in zip(result["params"], reference["params"]):
        assert torch.equal(p, q)
    # The values reported at the end (each phase's epoch means) are those of the uninterrupted run too.
    assert result["latest"] == reference["latest"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [5, 7, 11, 19], ids=lambda s: f"step{s}")
def test_killed_at_a_step_and_resumed_ends_bit_identical(tmp_path, uninterrupted, kill_at):
    # Resumed from the checkpoint of step 3 (mid-epoch 1), 6 (mid-epoch 1, its second training slice), 9 (epoch 2)
    # and 18 (epoch 3).
    assert run(tmp_path, "--kill-at", str(kill_at)) == -signal.SIGKILL
    assert not (tmp_path / "final.pt").exists()
    assert latest_checkpoint(tmp_path / "checkpoints").name == f"step-{kill_at // 3 * 3}"
    assert run(tmp_path, "--resume") == 0
    assert_same_run(final(tmp_path), uninterrupted)


@pytest.mark.slow
def test_killed_twice_within_one_epoch_ends_bit_identical(tmp_path, uninterrupted):
    # Step 4 resumes from step 3 mid-epoch (within the first training slice); step 6 then resumes from step 6,
    # also within epoch 1, in its second training slice: the second resume is where loaders drift elsewhere.
    assert run(tmp_path, "--kill-at", "4") == -signal.SIGKILL
    assert run(tmp_path, "--resume", "--kill-at", "7") == -signal.SIGKILL
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-6"
    assert run(tmp_path, "--resume") == 0
    assert_same_run(final(tmp_path), uninterrupted)


@pytest.mark.slow
def test_killed_while_writing_a_checkpoint_resumes_from_the_one_before(tmp_path, uninterrupted):
    assert run(tmp_path, "--kill-in-save", "9") == -signal.SIGKILL
    # The write of step 9 died half way: step 7 (an epoch's end) is the newest complete checkpoint.
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-3", "step-6", "step-7"]
    assert any(p.name.startswith(".step-9.") for p in (tmp_path / "checkpoints").iterdir())
    assert run(tmp_path, "--resume") == 0
    assert_same_run(final(tmp_path), uninterrupted)
