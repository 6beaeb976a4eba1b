"""Data parallel training: 2 gloo processes on loopback with batch 32 each take the steps of 1 process with batch 64.

The model has no batch normalization (each process would normalize by its own half of the
batch); a LayerNorm, which normalizes each sample alone, is the same either way.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from cadence.data import InMemoryLoader
from cadence.metrics import Accuracy
from cadence.optim import Adam
from cadence.train import Trainer
from cadence.train.distributed import world

STEPS, TIMEOUT = 50, 180


def data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(64 * STEPS, 10, generator=g), torch.randn(200, 10, generator=g)
    teacher = torch.randn(10, 4, generator=g)
    return x, (x @ teacher).argmax(-1), xv, (xv @ teacher).argmax(-1)


class StopAt:
    """Stops the run after optimizer step ``step`` (it then saves a checkpoint), in every process or in process
    ``rank`` only."""

    def __init__(self, step: int, rank: int | None = None):
        self.step, self.rank = step, rank

    def on_optimizer_step(self, trainer):
        if trainer.global_step == self.step and self.rank in (None, trainer.rank):
            trainer.stop(f"stopped at step {self.step} by the test")


def train(batch_size: int, fused: bool, world_size: int = 1, rank: int = 0, run_dir: str | None = None,
          stop_at: int = 0, stop_rank: int | None = None) -> dict:
    """Train the model; return its parameters, the step it ended at, the epoch's accuracies and, fused, how often
    its optimizer ran compiled and eagerly."""
    torch.set_num_threads(1)
    x, y, xv, yv = data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 4))
    optimizer = Adam(model.parameters(), lr=1e-2, fused=fused)
    trainer = Trainer(model, optimizer,
                      InMemoryLoader(x, y, batch_size, shuffle=True, seed=0, world_size=world_size, rank=rank),
                      InMemoryLoader(xv, yv, 50, world_size=world_size, rank=rank),
                      loss_fn=nn.functional.cross_entropy, metrics={"accuracy": Accuracy()}, console=False,
                      run=run_dir, callbacks=[StopAt(stop_at, stop_rank)] if stop_at else ())
    if run_dir is not None and os.path.isdir(os.path.join(run_dir, "checkpoints")):
        trainer.resume(run_dir)
    trainer.run()
    finished = trainer.global_step == STEPS
    return {"params": [p.detach().clone() for p in model.parameters()], "step": trainer.global_step,
            "accuracy": trainer.latest("valid.accuracy") if finished else None,
            "train_accuracy": trainer.latest("train.accuracy") if finished else None,
            "compiled": (optimizer.fused_step.compiled_runs, optimizer.fused_step.eager_runs) if fused else None}


def worker(rank: int, port: int, fused: bool, out: str, run_dir: str | None = None, stop_at: int = 0,
           stop_rank: int | None = None) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        assert world() == (2, rank)
        torch.save(train(32, fused, 2, rank, run_dir, stop_at, stop_rank), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's shutdown, where gloo's threads can abort the process ("terminate called
    # without an active exception") after its work is done and saved.
    os._exit(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args) -> list[dict]:
    """Run ``worker(rank, port, *args)`` in 2 processes; return what each saved, by rank."""
    context = mp.start_processes(worker, args=(free_port(), *args), nprocs=2, join=False, start_method="spawn")
    deadline = TIMEOUT
    while not context.join(timeout=1):
        deadline -= 1
        if deadline <= 0:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the data parallel run did not end within {TIMEOUT} s")
    return [torch.load(f"{args[1]}.{rank}", weights_only=True) for rank in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
def test_two_processes_of_32_take_the_steps_of_one_of_64(tmp_path, fused):
    results = launch(fused, str(tmp_path / "result"))
    single = train(64, fused=False)
    for result in results:
        for p, q in zip(result["params"], single["params"]):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
        # Validation was split between the processes and its counts summed: the accuracy over all 200 samples.
        assert result["accuracy"] == pytest.approx(single["accuracy"], abs=1e-9)
        if fused:  # the fused path ran compiled in every process, never eagerly
            compiled, eager = result["compiled"]
            assert compiled == STEPS and eager == 0


@pytest.mark.slow
def test_a_data_parallel_run_resumed_mid_epoch_ends_as_the_run_never_stopped(tmp_path):
    """Rank 0's checkpoint holds every process's own state (generators, the metrics' partial sums): resumed, each
    process takes its own back, and the epoch's metrics are those of the run never stopped, as its weights are."""
    straight = launch(False, str(tmp_path / "straight"))
    run_dir = str(tmp_path / "run")
    launch(False, str(tmp_path / "stopped"), run_dir, 30)
    # Only rank 0 wrote, one checkpoint of the stop at step 30, with both processes' own states.
    assert os.listdir(os.path.join(run_dir, "checkpoints")) == ["step-30"]
    state = torch.load(os.path.join(run_dir, "checkpoints", "step-30", "state.pt"), weights_only=True)
    assert len(state["processes"]) == 2
    partial = [process["metrics"]["train"]["accuracy"] for process in state["processes"]]
    assert not torch.equal(partial[0]["correct"], partial[1]["correct"])
    resumed = launch(False, str(tmp_path / "resumed"), run_dir)
    single = train(64, fused=False)
    for rank in range(2):
        assert resumed[rank]["train_accuracy"] == straight[rank]["train_accuracy"]
        assert resumed[rank]["accuracy"] == straight[rank]["accuracy"]
        for p, q in zip(resumed[rank]["params"], single["params"]):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_a_stop_in_one_process_stops_every_process_at_the_same_step(tmp_path):
    run_dir = str(tmp_path / "run")
    results = launch(False, str(tmp_path / "result"), run_dir, 7, 1)
    assert [result["step"] for result in results] == [7, 7]
    assert os.listdir(os.path.join(run_dir, "checkpoints")) == ["step-7"]
