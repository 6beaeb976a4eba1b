"""No per-step host reads: the default loop reads a value back from the device at most once per max(20 optimizer
steps, the tracker's flush interval) on the training thread (the tracker and the console read on a thread of their
own). A ``TorchFunctionMode`` counts every ``.item()``, ``float()``, ``int()``, ``bool()``, ``.tolist()`` and
index of a tensor made on the thread that runs the loop.

The mode does not see a read made inside C++ (a boolean-mask index, ``nonzero``): the training path uses none.
On a machine with a GPU, the same loop runs under ``torch.cuda.set_sync_debug_mode("error")`` too.
"""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.overrides import TorchFunctionMode

from cadence.track import RunContext, RunStore, Tracker
from cadence.train import Trainer

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")
STEPS = 200


class HostReads(TorchFunctionMode):
    """Counts the reads of tensor values made on this thread while entered."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def default_loop(tmp_path, flush_seconds: float) -> Trainer:
    """200 optimizer steps of the default loop (non-finite check, tracking to a run store, the console, a validation
    at the end) with torch's SGD, which reads nothing itself."""
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(STEPS)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    store = RunStore(tmp_path)
    tracker = Tracker(store, store.create_run("reads", {}, provenance={}), flush_seconds=flush_seconds)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data, data[:3],
                   loss_fn=nn.functional.cross_entropy, run=RunContext(tracker), console=Console(file=io.StringIO()))


@pytest.mark.parametrize("flush_seconds", [2.0, 1e-9], ids=["flush-every-2s", "flush-every-step"])
def test_the_default_loop_reads_at_most_once_per_20_steps(tmp_path, flush_seconds):
    trainer = default_loop(tmp_path, flush_seconds)
    reads = HostReads()
    with reads:
        assert trainer.run() == "finished"
    assert trainer.global_step == STEPS
    assert reads.count <= STEPS // 20, f"{reads.count} host reads in {STEPS} steps"
    assert 0 < trainer.latest("train.time.compute") < 1 and trainer.latest("train.samples_per_second") > 0  # timed
    if torch.cuda.is_available():
        trainer = default_loop(tmp_path / "cuda", flush_seconds)
        torch.cuda.set_sync_debug_mode("error")
        try:
            trainer.run()
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_the_count_sees_a_read_per_step(tmp_path):
    """The mode counts what it should: ``nonfinite="skip"`` reads its flag at every step, as documented."""
    trainer = default_loop(tmp_path, 2.0)
    trainer.optimizer_step.nonfinite = "skip"
    reads = HostReads()
    with reads:
        trainer.run()
    assert reads.count >= STEPS
