"""The checkpointer in one process: asynchronous saves (torch.distributed.checkpoint's format), never two in flight,
waited for at the run's end, never visible before complete; a checkpoint of another number of processes."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future

import pytest
import safetensors.torch
import torch
import torch.distributed.checkpoint as dcp
from torch import nn

from cadence.data import InMemoryLoader
from cadence.optim import Adam
from cadence.track.checkpoints import CheckpointError, is_sharded, list_checkpoints, read_weights
from cadence.train import Trainer


def loader() -> InMemoryLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    return InMemoryLoader(x, (x.sum(1) > 0).long(), 8, shuffle=True, seed=0)


def trainer(run_dir, **options) -> Trainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))
    return Trainer(model, Adam(model.parameters(), lr=1e-2), loader(), loss_fn=nn.functional.cross_entropy,
                   epochs=2, console=False, run=run_dir, **options)


def test_an_asynchronous_run_writes_dcp_checkpoints_waits_for_the_last_and_resumes_exactly(tmp_path):
    straight = trainer(tmp_path / "straight")
    straight.run()
    stopped = trainer(tmp_path / "async", checkpoint_async=True, checkpoint_every=5, max_steps=17)
    stopped.run()
    # The run's end waited for its last save: every checkpoint is complete, the last one that of step 17.
    saved = list_checkpoints(tmp_path / "async")
    assert [p.name for p in saved] == ["step-12", "step-15", "step-17"]  # the newest 3 (12: the epoch's end)
    assert all(is_sharded(p) and (p / "meta.json").is_file() for p in saved)
    assert not [name for name in os.listdir(tmp_path / "async" / "checkpoints") if name.startswith(".")]
    resumed = trainer(tmp_path / "async", checkpoint_async=True)
    resumed.resume(tmp_path / "async")
    resumed.run()
    for p, q in zip(resumed.raw_model.parameters(), straight.raw_model.parameters()):
        assert torch.equal(p, q)
    # Any reader gets the whole weights of a DCP checkpoint back.
    weights = read_weights(list_checkpoints(tmp_path / "async")[-1], {"step": 24})
    assert torch.equal(weights["2.weight"], straight.raw_model[2].weight.detach())


def slow_async_save(monkeypatch, seconds: float, fail: bool = False) -> dict:
    """``dcp.async_save`` writing on a thread of its own after ``seconds`` (and failing, ``fail``); counts the saves
    in flight."""
    seen = {"in_flight": 0, "most": 0}

    def async_save(state_dict, *, checkpoint_id, **kwargs):
        future: Future = Future()
        seen["in_flight"] += 1
        seen["most"] = max(seen["most"], seen["in_flight"])
        staged = {key: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in value.items()}
                  for key, value in state_dict.items()}

        def write():
            time.sleep(seconds)
            seen["in_flight"] -= 1
            if fail:
                future.set_exception(OSError("No space left on device"))
                return
            dcp.save(staged, checkpoint_id=checkpoint_id, no_dist=True)
            future.set_result(None)

        threading.Thread(target=write).start()
        return future

    monkeypatch.setattr(dcp, "async_save", async_save)
    return seen


def test_two_saves_are_never_in_flight_and_a_checkpoint_is_visible_only_once_written(tmp_path, monkeypatch):
    seen = slow_async_save(monkeypatch, 0.2)
    run = trainer(tmp_path, checkpoint_async=True, checkpoint_every=3, max_steps=9)
    run.checkpointer.save(3, {"epoch": 0})
    assert list_checkpoints(tmp_path) == []  # being written: not there yet
    run.run()
    assert seen["most"] == 1
    assert [p.name for p in list_checkpoints(tmp_path)][-1] == "step-9"


def test_a_save_that_fails_in_the_background_leaves_no_checkpoint_and_fails_the_run(tmp_path, monkeypatch):
    run = trainer(tmp_path, checkpoint_async=True, checkpoint_every=3, max_steps=9)
    run.run()
    before = [p.name for p in list_checkpoints(tmp_path)]
    slow_async_save(monkeypatch, 0.05, fail=True)
    again = trainer(tmp_path, checkpoint_async=True, checkpoint_every=3, max_steps=12)
    again.resume(tmp_path)
    with pytest.raises(OSError, match="No space left on device"):
        again.run()
    assert [p.name for p in list_checkpoints(tmp_path)] == before
    assert not [name for name in os.listdir(tmp_path / "checkpoints") if name.startswith(".")]


def test_state_a_step_carries_refuses_another_number_of_processes_and_nothing_changes(tmp_path):
    run = trainer(tmp_path, max_steps=6)
    run.register_state("hidden", torch.ones(3))
    run.run()
    [path] = list_checkpoints(tmp_path)
    state = torch.load(path / "state.pt", weights_only=True)
    state["processes"] = state["processes"] * 2  # as two processes would have saved it
    torch.save(state, path / "state.pt")
    other = trainer(tmp_path)
    other.register_state("hidden")
    before = [p.detach().clone() for p in other.raw_model.parameters()]
    with pytest.raises(CheckpointError, match=r"holds the state of 2 processes and this run has 1: the state a step "
                                              r"carries \(hidden\) belongs to each process's share of the data. "
                                              r"Resume it with 2 processes$"):
        other.resume(path)
    assert all(torch.equal(p, q) for p, q in zip(other.raw_model.parameters(), before))
    assert other.hidden is None and other.global_step == 0
    # Without carried state, the same checkpoint resumes on one process: the metrics' sums of both go to it.
    for process in state["processes"]:
        process["state"]["hidden"] = None
    torch.save(state, path / "state.pt")
    plain = trainer(tmp_path)
    plain.resume(path)
    assert plain.global_step == 6 and torch.equal(plain.raw_model[0].weight,
                                                  safetensors.torch.load_file(path / "model.safetensors")["0.weight"])
    correct = state["processes"][0]["metrics"]["train"]["loss"]
    assert all(torch.equal(2 * value, plain.phase_metrics.state_dict()["train"]["loss"][key])
               for key, value in correct.items())
