"""Checkpoints of a 50M-parameter model under FSDP: how long a save stalls training, synchronous against asynchronous,
and what resuming on another number of processes costs against resuming on the same.

    python benchmarks/checkpoint.py [--repeats 3] [--width 2048] [--layers 12]

Two processes (gloo on loopback, one thread each) shard a stack of ``layers`` bias-free ``width`` x ``width``
``Linear`` layers (12 x 2048² = 50.3M parameters) with FSDP2 and take an Adam step, so that a checkpoint holds the
weights and both moments (600 MB in float32). Then, rounds interleaved, medians after a warm-up round:

* **stall**: the time ``Checkpointer.save`` keeps the training loop waiting: the whole write when synchronous
  (``torch.distributed.checkpoint.save``); the staging copy when asynchronous (``async_save``), the write going on
  on a thread; and the time until the asynchronous checkpoint is complete (renamed into place);
* **resume**: ``Checkpointer.load`` of the 2-process checkpoint into 2 processes (the peer), and into 1 process
  (the shards gathered into whole tensors); then a 1-process checkpoint (``model.safetensors`` and ``state.pt``)
  into 1 process, and into 2 (each keeping its shards).

A training step of the same model (forward and backward of 64 rows, Adam) is timed too, to read a stall in steps.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args  # noqa: E402

from cadence.optim import Adam  # noqa: E402
from cadence.train.checkpointer import Checkpointer  # noqa: E402
from cadence.train.distributed import shard_model, world  # noqa: E402


def model_and_optimizer(width: int, layers: int, sharded: bool) -> tuple[nn.Module, Adam, callable]:
    """The model (sharded across the group when asked), its Adam with state, and one training step of it."""
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Linear(width, width, bias=False) for _ in range(layers)))
    if sharded:
        shard_model(model)
    optimizer = Adam(model.parameters(), lr=1e-4)
    rows = torch.randn(64 // world()[0], width)

    def step() -> None:
        optimizer.zero_grad()
        model(rows).square().mean().backward()
        optimizer.step()

    step()
    return model, optimizer, step


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def worker(rank: int, port: int, folder: str, width: int, layers: int, repeats: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model, optimizer, step = model_and_optimizer(width, layers, sharded=True)
    savers = {mode: Checkpointer(Path(folder) / mode, model, {}, {}, optimizer=optimizer, async_save=mode == "async",
                                 keep_last=1) for mode in ("sync", "async")}
    times: dict[str, list[float]] = {"step": [], "sync": [], "async": [], "async complete": [], "resume 2 -> 2": [],
                                     "resume 1 -> 2": []}
    for round_ in range(repeats + 1):
        keep = round_ > 0  # the first round warms up
        for mode, saver in savers.items():
            dist.barrier()
            start = time.perf_counter()
            saver.save(round_, {})
            stall = time.perf_counter() - start
            saver.wait()
            complete = time.perf_counter() - start
            if keep:
                times[mode].append(stall)
                if mode == "async":
                    times["async complete"].append(complete)
        dist.barrier()
        if keep:
            times["step"].append(timed(step))
        for name, source in (("resume 2 -> 2", Path(folder) / "async"), ("resume 1 -> 2", Path(folder) / "whole")):
            dist.barrier()
            if keep and source.is_dir():
                times[name].append(timed(lambda: savers["sync"].load(sorted(source.glob("step-*"))[-1])))
    if rank == 0:
        torch.save(times, out)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--width", type=int, default=2048)
        parser.add_argument("--layers", type=int, default=12)

    args = parse_args(__doc__, repeats=3, add_arguments=options)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        # A 1-process checkpoint first (whole weights), for the 1 -> 2 resume.
        model, optimizer, _ = model_and_optimizer(args.width, args.layers, sharded=False)
        whole = Checkpointer(Path(folder) / "whole", model, {}, {}, optimizer=optimizer, async_save=False)
        whole.save(0, {})
        out = str(Path(folder) / "times.pt")
        mp.spawn(worker, args=(free_port(), folder, args.width, args.layers, args.repeats, out), nprocs=2)
        times = torch.load(out)
        one = Checkpointer(None, model, {}, {}, optimizer=optimizer, async_save=False)
        sharded = sorted((Path(folder) / "async").glob("step-*"))[-1]
        times["resume 2 -> 1"] = [timed(lambda: one.load(sharded)) for _ in range(args.repeats)]
        times["resume 1 -> 1"] = [timed(lambda: one.load(Path(folder) / "whole" / "step-0"))
                                  for _ in range(args.repeats)]
    median = {name: statistics.median(values) for name, values in times.items()}
    params = args.width * args.width * args.layers
    table = Table(title=f"checkpoints of {params / 1e6:.1f}M parameters + Adam's moments "
                        f"({params * 12 / 1e6:.0f} MB), FSDP on 2 gloo processes, median of {args.repeats}")
    for column in ("what", "seconds", "ratio"):
        table.add_column(column)
    rows = [("training step", "step", None), ("save stall, synchronous", "sync", None),
            ("save stall, asynchronous", "async", "sync"), ("asynchronous save complete", "async complete", "sync"),
            ("resume 2 -> 2 processes", "resume 2 -> 2", None), ("resume 2 -> 1 process", "resume 2 -> 1", "resume 2 -> 2"),
            ("resume 1 -> 1 process", "resume 1 -> 1", None), ("resume 1 -> 2 processes", "resume 1 -> 2", "resume 1 -> 1")]
    for label, key, peer in rows:
        ratio = f"{median[key] / median[peer]:.2f}x {peer}" if peer else ""
        table.add_row(label, f"{median[key]:.3f}", ratio)
    Console().print(table)


if __name__ == "__main__":
    main()
