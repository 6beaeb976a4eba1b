"""Data parallel training on ``torch.distributed``: joining the process group, the rank's share, launching.

A data parallel run is ``P`` processes, each with a replica of the model and a shard of every
epoch (the loaders' ``world_size`` and ``rank``); ``torch.nn.parallel.DistributedDataParallel``
averages the gradients across them in the backward pass, so ``P`` processes of batch ``B``
take the steps of one process of batch ``P·B``. Processes find each other through the
environment that ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); :func:`launch` sets the same for ``cadence train --nproc``.
The backend is gloo on CPUs and NCCL on CUDA devices.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["StopAgreement", "data_parallel", "init_from_environment", "launch", "world"]


def world() -> tuple[int, int]:
    """``(world_size, rank)`` of this process: ``(1, 0)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` when this run has several processes, else itself."""
    if world()[0] == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index or 0] if device.type == "cuda" else None)


class StopAgreement:
    """Every process's reasons to stop, agreed at a safe point of the loop: the first signal any process received
    (by number, or ``None``) and whether any asked to stop. The processes stop together, at the same step.

    It is one all-reduce of two numbers on the CPU, through gloo (a gloo group of its own beside an NCCL
    one), so it never waits for a device: a data parallel run's one read per safe point.
    """

    def __init__(self) -> None:
        self.group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def agree(self, signum: int | None, stop: bool) -> tuple[int | None, bool]:
        """``(signal, stop)`` over every process, given this process's own."""
        flags = torch.tensor([signum or 0, int(stop)])
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.group)
        agreed_signal, agreed_stop = flags.tolist()
        return agreed_signal or None, bool(agreed_stop)


def init_from_environment(device: torch.device) -> bool:
    """Join the process group the environment describes (``WORLD_SIZE > 1``), once; return whether this run is
    data parallel. Selects this process's CUDA device by ``LOCAL_RANK`` on CUDA."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m cadence argv`` in ``nproc`` processes on this machine, as ``torchrun --standalone`` would;
    return their exit status.

    SIGINT and SIGTERM are passed on to every process (each then stops at its next safe point,
    together, and exits 130 or 143). The status is the first non-zero one (0 when all succeed); when
    one process fails otherwise, the others are terminated rather than left waiting for it.
    """
    port = _free_port()
    processes = []
    for rank in range(nproc):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc),
               "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(nproc)}
        processes.append(subprocess.Popen([sys.executable, "-m", "cadence", *argv], env=env))

    def forward(signum: int, frame: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = 0
        pending = list(processes)
        while pending:
            for process in list(pending):
                try:
                    code = process.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
                pending.remove(process)
                code = code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it
                if code != 0 and status == 0:
                    status = code
                if code not in (0, 130, 143):  # a failure, not a stop the others are making too
                    for other in pending:
                        other.terminate()
        return status
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for process in processes:
            if process.poll() is None:
                process.kill()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
