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
    """Stops the run after optimizer step ``step`` (it then saves a checkpoint)."""

    def __init__(self, step: int):
        self.step = step

    def on_optimizer_step(self, trainer):
        if trainer.global_step == self.step:
            trainer.stop(f"stopped at step {self.step} by the test")


def train(batch_size: int, fused: bool, world_size: int = 1, rank: int = 0, run_dir: str | None = None,
          stop_at: int = 0) -> tuple[list[torch.Tensor], float]:
    torch.set_num_threads(1)
    x, y, xv, yv = data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 4))
    trainer = Trainer(model, Adam(model.parameters(), lr=1e-2, fused=fused),
                      InMemoryLoader(x, y, batch_size, shuffle=True, seed=0, world_size=world_size, rank=rank),
                      InMemoryLoader(xv, yv, 50, world_size=world_size, rank=rank),
                      loss_fn=nn.functional.cross_entropy, metrics={"accuracy": Accuracy()}, console=False,
                      run=run_dir, callbacks=[StopAt(stop_at)] if stop_at else ())
    if run_dir is not None and os.path.isdir(os.path.join(run_dir, "checkpoints")):
        trainer.resume(run_dir)
    trainer.run()
    assert trainer.global_step == (stop_at or STEPS)
    return [p.detach().clone() for p in model.parameters()], trainer.latest("valid.accuracy") if not stop_at else None


def worker(rank: int, port: int, fused: bool, out: str, run_dir: str | None = None, stop_at: int = 0) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        assert world() == (2, rank)
        params, accuracy = train(32, fused, 2, rank, run_dir, stop_at)
        torch.save({"params": params, "accuracy": accuracy}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's shutdown, where gloo's threads can abort the process ("terminate called
    # without an active exception") after its work is done and saved.
    os._exit(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args) -> None:
    context = mp.start_processes(worker, args=(free_port(), *args), nprocs=2, join=False, start_method="spawn")
    deadline = TIMEOUT
    while not context.join(timeout=1):
        deadline -= 1
        if deadline <= 0:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the data parallel run did not end within {TIMEOUT} s")


@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
def test_two_processes_of_32_take_the_steps_of_one_of_64(tmp_path, fused):
    out = str(tmp_path / "result")
    launch(fused, out)
    single, single_accuracy = train(64, fused=False)
    for rank in range(2):
        result = torch.load(f"{out}.{rank}", weights_only=True)
        for p, q in zip(result["params"], single):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
        # Validation was split between the processes and its counts summed: the accuracy over all 200 samples.
        assert result["accuracy"] == pytest.approx(single_accuracy, abs=1e-9)
    assert os.path.exists(f"{out}.1")


def test_a_data_parallel_run_resumes_from_rank_0s_checkpoint(tmp_path):
    run_dir, out = str(tmp_path / "run"), str(tmp_path / "result")
    launch(False, out, run_dir, 30)
    # Only rank 0 wrote, one checkpoint of the stop at step 30; both processes' generators are in it.
    checkpoints = os.listdir(os.path.join(run_dir, "checkpoints"))
    assert checkpoints == ["step-30"]
    state = torch.load(os.path.join(run_dir, "checkpoints", "step-30", "state.pt"), weights_only=True)
    assert len(state["processes"]) == 2
    launch(False, out, run_dir)
    single, _ = train(64, fused=False)
    for rank in range(2):
        for p, q in zip(torch.load(f"{out}.{rank}", weights_only=True)["params"], single):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
