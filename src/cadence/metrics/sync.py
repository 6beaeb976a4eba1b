r"""Summing tensors across processes, with a deadline.

A metric's states are sums, so the value of $P$ processes over all the data is the value
of their summed states: for every state $s$,

$$
s = \sum_{p=1}^{P} s_p .
$$

:func:`all_reduce_sum` computes that with one ``torch.distributed.all_reduce`` per state,
all started at once (``async_op=True``) and then waited for with
``Work.wait(remaining)``. Each process of the group must call it with the same states, in
the same order. A process that has exited breaks the connection (gloo reports the reset at
once); one that is alive but never joins (hung, or not calling ``sync``) leaves the others
waiting, and ``Work.wait`` gives up when the deadline passes. Either way the call raises a
``RuntimeError`` naming its caller, instead of hanging until the process group's own
timeout (30 minutes for gloo). After such an error the process group itself is unusable,
as after any failed collective: the run should end.
"""

from __future__ import annotations

import datetime
import time

import torch
import torch.distributed as dist

from cadence.checks import check_number

#: How long a sync waits for the other processes by default: NCCL's default timeout of a collective.
DEFAULT_TIMEOUT = datetime.timedelta(minutes=10)


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is built in and has a default process group."""
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensors: list[torch.Tensor], timeout: float | datetime.timedelta, where: str) -> list[torch.Tensor]:
    r"""$\sum_p$ of each tensor over the processes of the default group, as new tensors.

    ``timeout`` (seconds, or a ``timedelta``) bounds the whole call; ``where`` names the
    caller in the error (``"Accuracy.sync"``). The inputs are left as they are.
    """
    seconds = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else timeout
    seconds = check_number(where, "timeout", seconds, low=0, low_open=True)
    start = time.monotonic()
    totals = [t.clone() for t in tensors]
    try:
        works = [dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True) for t in totals]
        for work in works:
            # A zero timedelta would mean "no timeout" to Work.wait: wait at least a millisecond.
            remaining = max(seconds - (time.monotonic() - start), 1e-3)
            work.wait(datetime.timedelta(seconds=remaining))
    except RuntimeError as e:
        raise RuntimeError(
            f"{where}: summing its states across the {dist.get_world_size()} processes failed after "
            f"{time.monotonic() - start:.1f} s (timeout {seconds:g} s): {e}. Every process must call sync at "
            f"the same point; one of them has exited, hung, or skipped it") from e
    return totals
