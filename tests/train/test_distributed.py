"""Data parallel training: 2 gloo processes on loopback with batch 32 each take the steps of 1 process with batch 64.

The model has no batch normalization (each process would normalize by its own half of the
batch); a LayerNorm, which normalizes each sample alone, is the same either way.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest
import torch
import torch.distributed as dist
from torch import nn

from cadence.data import InMemoryLoader
from cadence.metrics import Accuracy
from cadence.optim import Adam
from cadence.train import Trainer
from cadence.optim.sharded import local, whole
from cadence.train.distributed import shard_model, world
from tests.processes import free_port, spawn

STEPS, TIMEOUT = 50, 180


def data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    # 201 validation samples: 2 processes of 101, rank 1's last one a repeat of rank 0's first, left out.
    x, xv = torch.randn(64 * STEPS, 10, generator=g), torch.randn(201, 10, generator=g)
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
          stop_at: int = 0, stop_rank: int | None = None, strategy: str = "ddp") -> dict:
    """Train the model (``strategy="fsdp"``: sharded); return its (whole) parameters, the step it ended at, the
    epoch's accuracies, the bytes of parameters, gradients and optimizer state this process held and, fused, how
    often its optimizer ran compiled and eagerly."""
    torch.set_num_threads(1)
    x, y, xv, yv = data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 4))
    if strategy == "fsdp":
        shard_model(model)
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
    held = [*model.parameters(), *(p.grad for p in model.parameters() if p.grad is not None),
            *(t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor))]
    return {"params": [whole(p).detach().clone() for p in model.parameters()], "step": trainer.global_step,
            "bytes": sum({local(t).untyped_storage().data_ptr(): local(t).untyped_storage().nbytes()
                          for t in held}.values()),  # each storage once
            "accuracy": trainer.latest("valid.accuracy") if finished else None,
            "loss": trainer.latest("valid.loss") if finished else None,
            "train_accuracy": trainer.latest("train.accuracy") if finished else None,
            "compiled": (optimizer.fused_step.compiled_runs, optimizer.fused_step.eager_runs) if fused else None}


def worker(rank: int, port: int, fused: bool, out: str, run_dir: str | None = None, stop_at: int = 0,
           stop_rank: int | None = None, strategy: str = "ddp") -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        assert world() == (2, rank)
        torch.save(train(32, fused, 2, rank, run_dir, stop_at, stop_rank, strategy), f"{out}.{rank}")
        dist.barrier()  # neither leaves while the other may still read what it sent
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's shutdown, where gloo's threads can abort the process ("terminate called
    # without an active exception") after its work is done and saved.
    os._exit(0)


def launch(*args) -> list[dict]:
    """Run ``worker(rank, port, *args)`` in 2 processes; return what each saved, by rank."""
    spawn(worker, (free_port(), *args), TIMEOUT)
    return [torch.load(f"{args[1]}.{rank}", weights_only=True) for rank in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
def test_two_processes_of_32_take_the_steps_of_one_of_64(tmp_path, fused):
    results = launch(fused, str(tmp_path / "result"))
    single = train(64, fused=False)
    for result in results:
        for p, q in zip(result["params"], single["params"]):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
        # Validation was split between the processes and its counts summed: the accuracy and the loss over all 201
        # samples, each counted once though the world size does not divide them (rank 1 ran a padded batch).
        assert result["accuracy"] == pytest.approx(single["accuracy"], abs=1e-9)
        assert result["loss"] == pytest.approx(single["loss"], rel=1e-6)
        if fused:  # the fused path ran compiled in every process, never eagerly
            compiled, eager = result["compiled"]
            assert compiled == STEPS and eager == 0


@pytest.mark.slow
def test_two_fsdp_processes_of_32_take_the_steps_of_one_of_64_holding_half_the_bytes(tmp_path):
    """FSDP2 shards every parameter, gradient and optimizer state: each process holds half of DDP's bytes (the
    model's first dimensions are even), and the run is one process's to 1e-5. (The fused path on shards:
    tests/optim/test_sharded.py.)"""
    sharded = launch(False, str(tmp_path / "fsdp"), None, 0, None, "fsdp")
    single = train(64, fused=False)
    replicated = single
    for result in sharded:
        for p, q in zip(result["params"], single["params"]):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
        assert result["accuracy"] == pytest.approx(single["accuracy"], abs=1e-9)
        assert result["loss"] == pytest.approx(single["loss"], rel=1e-6)
        assert result["bytes"] <= 0.55 * replicated["bytes"], (result["bytes"], replicated["bytes"])


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
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
@pytest.mark.parametrize("saved_by, resumed_by", [(2, 1), (1, 2)], ids=["2-to-1", "1-to-2"])
def test_a_checkpoint_resumes_on_another_number_of_processes_as_the_run_never_stopped(tmp_path, strategy, saved_by,
                                                                                     resumed_by):
    """The global batch stays 64 and the loader's position is a global batch, so the run continues where it was;
    the weights and optimizer state are resharded (DCP) or gathered, the metrics' partial sums merged to rank 0.
    Under fsdp the checkpoint is DCP's shards, written in the background."""
    run_dir = str(tmp_path / "run")

    def run(processes: int, stop_at: int = 0) -> list[dict]:
        if processes == 1:
            return [train(64, False, run_dir=run_dir, stop_at=stop_at)]  # one process holds no shard: whole
        return launch(False, str(tmp_path / f"out-{stop_at}"), run_dir, stop_at, None, strategy)

    run(saved_by, stop_at=30)
    checkpoint = os.path.join(run_dir, "checkpoints", "step-30")
    assert os.path.isfile(os.path.join(checkpoint, ".metadata")) == (strategy == "fsdp" and saved_by == 2)
    single = train(64, fused=False)
    for result in run(resumed_by):
        assert result["step"] == STEPS
        for p, q in zip(result["params"], single["params"]):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
        # The epoch's metrics, half of them from before the stop, summed as the run never stopped sums them.
        assert result["train_accuracy"] == pytest.approx(single["train_accuracy"], abs=1e-9)
        assert result["accuracy"] == pytest.approx(single["accuracy"], abs=1e-9)


@pytest.mark.slow
def test_a_stop_in_one_process_stops_every_process_at_the_same_step(tmp_path):
    run_dir = str(tmp_path / "run")
    results = launch(False, str(tmp_path / "result"), run_dir, 7, 1)
    assert [result["step"] for result in results] == [7, 7]
    assert os.listdir(os.path.join(run_dir, "checkpoints")) == ["step-7"]


# -- distributed.launch (cadence train --nproc N): the environment, signals and exit statuses ----------------------

#: What each process that launch starts runs in these tests, in place of ``python -m cadence ARGV``: ARGV is
#: ``ACTIONS OUT``, ACTIONS one per rank (``wait``: until a signal; ``exit-N``: exit N at once; ``exit-N-later`` or
#: ``sigkill-later``: exit N, or kill itself, once every other rank is ready). Each process writes its environment
#: to ``OUT/rank<R>.env`` and, once its handlers are in place, ``OUT/rank<R>.ready``; a SIGINT or SIGTERM is written
#: to ``OUT/rank<R>.signal`` and ends it as ``cadence train`` ends (128 + the signal).
FAKE_CADENCE = """
import json, os, pathlib, signal, sys, time

assert sys.argv[1:3] == ["-m", "cadence"], sys.argv
actions, out = sys.argv[3].split(","), pathlib.Path(sys.argv[4])
rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def stop(signum, frame):
    (out / f"rank{rank}.signal").write_text(signal.Signals(signum).name)
    sys.exit(128 + signum)


for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, stop)
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
(out / f"rank{rank}.env").write_text(json.dumps({key: os.environ.get(key) for key in keys}))
(out / f"rank{rank}.ready").touch()
action, deadline = actions[rank], time.monotonic() + LAUNCH_TIMEOUT
if action.endswith("-later"):  # once every other process is ready (and so can receive a signal)
    while not all((out / f"rank{r}.ready").exists() for r in range(world_size)):
        if time.monotonic() > deadline:
            sys.exit(98)
        time.sleep(0.01)
    if action.startswith("sigkill"):
        os.kill(os.getpid(), signal.SIGKILL)
if action.startswith("exit-"):
    sys.exit(int(action.split("-")[1]))
time.sleep(LAUNCH_TIMEOUT)  # "wait": a signal ends the process before this does
sys.exit(99)
"""

#: Seconds a launched process waits for a signal (then exits 99, failing the test instead of hanging it).
LAUNCH_TIMEOUT = 60


@pytest.fixture
def fake_cadence(tmp_path, monkeypatch):
    """``launch(actions)``: :func:`cadence.train.launcher.launch` of one process per action, each running
    :data:`FAKE_CADENCE`; returns launch's status and, per rank, what the process wrote (``env``, ``signal``)."""
    from cadence.train import launcher

    executable = tmp_path / "python"
    executable.write_text(f"#!{sys.executable}\n" + FAKE_CADENCE.replace("LAUNCH_TIMEOUT", str(LAUNCH_TIMEOUT)))
    executable.chmod(0o755)
    monkeypatch.setattr(launcher.sys, "executable", str(executable))
    out = tmp_path / "out"
    out.mkdir()

    def run(actions: list[str]) -> tuple[int, list[dict]]:
        status = launcher.launch(len(actions), [",".join(actions), str(out)])
        written = []
        for rank in range(len(actions)):
            files = {path.suffix[1:]: path for path in out.glob(f"rank{rank}.*")}
            written.append({"env": json.loads(files["env"].read_text()),
                            "signal": files["signal"].read_text() if "signal" in files else None})
        return status, written

    run.out = out
    return run


def test_launch_gives_each_process_the_environment_torchrun_would_and_returns_0_when_all_succeed(fake_cadence):
    status, written = fake_cadence(["exit-0", "exit-0", "exit-0"])
    assert status == 0
    envs = [w["env"] for w in written]
    assert [(e["RANK"], e["LOCAL_RANK"]) for e in envs] == [("0", "0"), ("1", "1"), ("2", "2")]
    assert all(e["WORLD_SIZE"] == e["LOCAL_WORLD_SIZE"] == "3" and e["MASTER_ADDR"] == "127.0.0.1" for e in envs)
    assert len({e["MASTER_PORT"] for e in envs}) == 1 and int(envs[0]["MASTER_PORT"]) > 0


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_launch_passes_a_signal_on_to_every_process_and_exits_as_they_do(fake_cadence, signum, code):
    """The launcher gets the signal (a Ctrl+C reaches the whole foreground group; a scheduler's SIGTERM only the
    launcher): each process is sent it, stops, and the launcher's status is theirs."""
    reached_us = []
    previous = signal.signal(signum, lambda *args: reached_us.append(args))  # launch's handler replaces it meanwhile
    try:
        def send_once_ready() -> None:
            deadline = time.monotonic() + LAUNCH_TIMEOUT
            while not (all((fake_cadence.out / f"rank{r}.ready").exists() for r in range(2))
                       and signal.getsignal(signum) is not ours):
                if time.monotonic() > deadline:
                    return  # the processes end by themselves (99) and the test fails on their status
                time.sleep(0.01)
            os.kill(os.getpid(), signum)

        ours = signal.getsignal(signum)
        sender = threading.Thread(target=send_once_ready, daemon=True)
        sender.start()
        status, written = fake_cadence(["wait", "wait"])
        sender.join(LAUNCH_TIMEOUT)
        assert signal.getsignal(signum) is ours  # launch put the handler it found back
    finally:
        signal.signal(signum, previous)
    assert [w["signal"] for w in written] == [signal.Signals(signum).name] * 2
    assert status == code and not reached_us


@pytest.mark.parametrize("actions, status, terminated", [
    (["wait", "exit-3-later"], 3, [True, False]),
    (["exit-2-later", "wait", "wait"], 2, [False, True, True]),
    (["wait", "sigkill-later"], 128 + signal.SIGKILL, [True, False]),  # killed: as a shell reports it
], ids=["rank-1-fails", "rank-0-fails", "rank-1-killed"])
def test_a_process_that_fails_ends_the_others_and_its_status_is_the_launchers(fake_cadence, actions, status,
                                                                               terminated):
    """The others are terminated (SIGTERM: they stop as on a scheduler's stop, exiting 143) rather than left waiting
    for a peer that is gone; the launcher exits with the first non-zero status, the failure's, not their 143."""
    code, written = fake_cadence(actions)
    assert code == status
    assert [w["signal"] == "SIGTERM" for w in written] == terminated


# -- a collective's timeout, said plainly -----------------------------------------------------------------------------

def test_a_collectives_timeout_is_said_plainly_and_other_errors_pass_through(monkeypatch):
    from cadence.train import distributed

    gloo = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms "
                        "for recv operation to complete")
    nccl = RuntimeError("[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9, OpType=ALLREDUCE, "
                        "NumelIn=10, NumelOut=10, Timeout(ms)=300000) ran for 300012 milliseconds before timing out.")
    closed = RuntimeError("Application timeout caused pair closure")  # gloo, on the side whose peer timed out
    other = RuntimeError("Connection reset by peer")
    assert distributed.explained(gloo) is gloo  # one process: no process group to blame
    monkeypatch.setattr(distributed, "world", lambda: (2, 0))
    said = distributed.explained(gloo)
    assert isinstance(said, distributed.DistributedTimeout)
    assert str(said).startswith("rank 0 of 2: a collective of the process group (its recv) timed out after 5 s: "
                                "another process stopped answering")
    assert "dist_timeout sets the limit" in str(said) and "Timed out waiting 5000ms" in str(said)
    assert "(its allreduce) timed out after 300 s" in str(distributed.explained(nccl))
    monkeypatch.setattr(distributed, "_timeout", 5.0)  # as init_from_environment set it
    assert "(its collective) timed out after 5 s: another process" in str(distributed.explained(closed))
    assert distributed.explained(other) is other
    assert distributed.explained(KeyboardInterrupt()).__class__ is KeyboardInterrupt


def mixed_precision_worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 4))
        shard_model(model, "bf16")
        seen = []
        model[0].register_forward_hook(lambda module, args, output: seen.append(output.dtype))
        model(torch.randn(8, 10)).float().square().mean().backward()
        torch.save({"forward": seen, "stored": [p.dtype for p in model.parameters()],
                    "grads": [p.grad.dtype for p in model.parameters()]}, f"{out}.{rank}")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    os._exit(0)


@pytest.mark.slow
def test_fsdp_in_bf16_computes_with_bf16_parameters_and_keeps_float32_ones_and_gradients(tmp_path):
    """MixedPrecisionPolicy: the gathered parameters (and inputs) are cast to bfloat16, so a layer computes in it;
    the shards the optimizer updates, and the gradients reduced into them, stay float32."""
    out = str(tmp_path / "dtypes")
    spawn(mixed_precision_worker, (free_port(), out), TIMEOUT)
    for rank in range(2):
        dtypes = torch.load(f"{out}.{rank}", weights_only=True)
        assert dtypes["forward"] == [torch.bfloat16]
        assert set(dtypes["stored"]) == set(dtypes["grads"]) == {torch.float32}
