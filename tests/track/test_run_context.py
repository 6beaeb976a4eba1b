"""A run's context, and recording a run from Python in one call (recorded_run)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from cadence.track import RunContext, RunStore, Tracker, recorded_run, resolve_runs_dir
from cadence.track.run_context import ended_by
from cadence.train import Trainer


@dataclass
class Config:
    lr: float = 0.1
    epochs: int = 2


def train(run: RunContext, epochs: int = 2) -> Trainer:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    data = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(3)]
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data, data[:1],
                      loss_fn=nn.functional.cross_entropy, epochs=epochs, run=run, console=False)
    trainer.run()
    return trainer


def test_a_recorded_run_has_its_record_its_folder_and_its_values(tmp_path):
    with recorded_run("tiny", Config(), runs_dir=tmp_path, tags=["smoke"]) as run:
        assert run.experiment == "tiny" and run.config == {"lr": 0.1, "epochs": 2}
        assert run.run_dir == tmp_path / run.run_id and run.run_dir.is_dir()
        trainer = train(run)
    with RunStore(tmp_path) as store:
        summary = store.get_run(run.run_id)
        steps, _ = store.values(run.run_id, "train.loss")
    assert summary.status == "finished" and summary.tags == ("smoke",) and summary.config == {"lr": 0.1, "epochs": 2}
    assert summary.provenance["cadence"] and steps.tolist() == [1, 2, 3, 4, 5, 6]
    assert trainer.checkpointer.folder == run.run_dir / "checkpoints" and (trainer.checkpointer.folder / "step-6").is_dir()
    with pytest.raises(RuntimeError, match="the tracker's writer is closed"):  # closed with the block
        run.tracker.add(7, {"train.loss": 1.0})


@pytest.mark.parametrize("error, status, message", [
    (ValueError("bad data"), "failed", "ValueError: bad data"),
    (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt (a second Ctrl+C: no checkpoint saved)"),
])
def test_a_block_that_raises_before_the_trainer_records_the_run_as_it_ended(tmp_path, error, status, message):
    with pytest.raises(type(error)):
        with recorded_run("tiny", {}, runs_dir=tmp_path) as run:
            raise error
    with RunStore(tmp_path) as store:
        summary = store.get_run(run.run_id)
    assert (summary.status, summary.error) == (status, message) == ended_by(error)


def test_a_run_resumed_continues_in_its_own_record(tmp_path):
    with recorded_run("tiny", Config(epochs=2), runs_dir=tmp_path) as run:
        train(run)
    with recorded_run("tiny", Config(epochs=3), runs_dir=tmp_path, resume=run.run_id[:15]) as resumed:
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        data = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(3)]
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data, data[:1],
                          loss_fn=nn.functional.cross_entropy, epochs=3, run=resumed, console=False)
        assert trainer.resume(resumed.run_dir).name == "step-6"
        trainer.run()
    assert resumed.run_id == run.run_id
    with RunStore(tmp_path) as store:
        summary = store.get_run(run.run_id)
        steps, _ = store.values(run.run_id, "train.loss")
    assert summary.status == "finished" and summary.config["epochs"] == 3 and steps.tolist() == list(range(1, 10))


def test_a_context_without_a_store_records_nothing_and_a_folder_holds_checkpoints(tmp_path):
    assert RunContext().run_dir is None and isinstance(RunContext().tracker, Tracker)
    trainer = train(RunContext(run_dir=str(tmp_path)))
    assert trainer.run_dir == tmp_path and (tmp_path / "checkpoints" / "step-6").is_dir()


def test_the_runs_directory_is_the_argument_then_the_environment_then_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("CADENCE_RUNS", str(tmp_path / "env"))
    assert resolve_runs_dir(tmp_path / "arg") == tmp_path / "arg" and resolve_runs_dir() == tmp_path / "env"
    monkeypatch.delenv("CADENCE_RUNS")
    assert str(resolve_runs_dir()) == "runs"


def test_a_process_other_than_rank_0_records_nothing_and_writes_no_event_files(tmp_path, monkeypatch):
    class Rank1:
        """torch.distributed as process 1 of 2 sees it: rank 0 broadcasts the run's id."""
        is_available = is_initialized = staticmethod(lambda: True)
        get_world_size, get_rank = staticmethod(lambda: 2), staticmethod(lambda: 1)

        @staticmethod
        def broadcast_object_list(objects, src):
            objects[0] = "20261124-101010-abcd"

    monkeypatch.setattr("cadence.track.run_context.dist", Rank1)
    with recorded_run("tiny", Config(), runs_dir=tmp_path, tensorboard_dir=True) as run:
        assert run.run_id == "20261124-101010-abcd" and run.tracker.store is None
        run.tracker.add(1, {"train.loss": 1.0})
    assert not (tmp_path / "20261124-101010-abcd").exists() and not (tmp_path / "runs.sqlite").exists()
