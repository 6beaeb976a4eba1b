"""``cadence train --nproc N``: the processes of a data parallel run, started and watched by torch's elastic agent.

:func:`launch` runs ``python -m cadence ARGV`` in ``nproc`` processes on this machine through
``torch.distributed.launcher.elastic_launch``, the agent ``torchrun`` runs, so a run gains
what torchrun gives: ``max_restarts`` (a process that dies ends the others, and the agent
starts the group again: the run resumes from its newest complete checkpoint), several machines
(``nnodes``, this machine's ``node_rank``, and the ``endpoint`` ``HOST:PORT`` that node 0 listens
on), and its supervision of the processes. Plain ``torchrun ... -m cadence train X`` runs the
same processes.

The rendezvous is torch's static one: node ``r`` holds ranks ``r·nproc .. (r+1)·nproc - 1``,
so node 0's first process is rank 0, which records the run. **One run across restarts:** the
launcher draws the new run's id and hands it to every process (:data:`RUN_ID_ENV`); rank 0
creates the run under that id at the first attempt and joins it at every restart (torchelastic's
own run id names the rendezvous, not the run).

**Stopping.** SIGINT or SIGTERM to the launcher (Ctrl+C, a cluster's preemption) reaches the
agent, which passes it on to every process and waits up to its grace
(``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``, 30 s) for them: each stops at its next safe point, the run
saves one checkpoint, and the launcher exits 130 or 143, as one process would (plain torchrun
exits 1). A process that fails otherwise ends the group; the launcher exits with its status
(128 + the signal of one killed), unless a restart is left.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from torch.distributed.elastic.multiprocessing import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from cadence.checks import check_number
from cadence.track.run_context import RUN_ID_ENV

__all__ = ["launch"]


def launch(nproc: int, argv: Sequence[str], *, nnodes: int = 1, node_rank: int = 0, endpoint: str | None = None,
           max_restarts: int = 0, run_id: str | None = None) -> int:
    """Run ``python -m cadence argv`` in ``nproc`` processes on this machine, node ``node_rank`` of ``nnodes``, under
    torch's elastic agent (see the module docstring); return the exit status: 0, the first failure's, or 130 / 143
    after SIGINT / SIGTERM. ``run_id``, when given, is handed to the processes as :data:`RUN_ID_ENV`.

    ``endpoint`` (``HOST:PORT``, where node 0 listens) is needed with several nodes; one node takes a free port of
    the loopback address."""
    check_number("launch", "nproc", nproc, low=1, integer=True)
    check_number("launch", "nnodes", nnodes, low=1, integer=True)
    check_number("launch", "max_restarts", max_restarts, low=0, integer=True)
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"--node-rank {node_rank}; expected 0 .. {nnodes - 1} for --nnodes {nnodes}")
    if endpoint is None:
        if nnodes > 1:
            raise ValueError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT: the address node 0 listens on, "
                             f"the same on every node")
        endpoint = f"127.0.0.1:{_free_port()}"
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--rdzv-endpoint {endpoint!r}; expected HOST:PORT, e.g. 10.0.0.1:29500")
    config = LaunchConfig(min_nodes=nnodes, max_nodes=nnodes, nproc_per_node=nproc, rdzv_backend="static",
                          rdzv_endpoint=endpoint, rdzv_configs={"rank": node_rank}, run_id="cadence",
                          max_restarts=max_restarts, monitor_interval=0.1, start_method="spawn")
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_run_id = os.environ.get(RUN_ID_ENV)
    if run_id is not None:
        os.environ[RUN_ID_ENV] = run_id  # the agent's processes inherit the launcher's environment
    logging.getLogger("torch.distributed.elastic").setLevel(logging.WARNING)
    try:
        elastic_launch(config, sys.executable)("-m", "cadence", *argv)
        return 0
    except SignalException as e:
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        code = e.get_first_failure()[1].exitcode
        return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if run_id is not None:
            if saved_run_id is None:
                os.environ.pop(RUN_ID_ENV, None)
            else:
                os.environ[RUN_ID_ENV] = saved_run_id


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
