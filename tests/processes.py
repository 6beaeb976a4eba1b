"""What the tests of several processes share: a free loopback port, and spawning processes with a deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port of the loopback address free now, for a process group to meet on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn: Callable[..., None], args: tuple, timeout: float, nprocs: int = 2) -> None:
    """Run ``fn(rank, *args)`` in ``nprocs`` spawned processes; fail the test (killing them) if they are not done
    within ``timeout`` seconds, rather than hang; a process's error is raised here."""
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {nprocs} processes did not end within {timeout} s")
