"""Data parallel training on ``torch.distributed``: joining the process group, the rank's share, launching.

A data parallel run is ``P`` processes, each with a replica of the model and a shard of every
epoch (the loaders' ``world_size`` and ``rank``); ``torch.nn.parallel.DistributedDataParallel``
averages the gradients across them in the backward pass, so ``P`` processes of batch ``B``
take the steps of one process of batch ``P·B``. Processes find each other through the
environment that ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); :func:`cadence.train.launcher.launch` starts them for
``cadence train --nproc``. The backend is gloo on CPUs and NCCL on CUDA devices.

**Timeouts.** Every collective of the group waits at most ``timeout`` seconds (the run's
``dist_timeout``): a process that stops answering (stopped, hung, cut off) ends the others with an
error naming the operation rather than a hang. A killed process ends them at once.

**Restarts.** Under torch's elastic agent (``torchrun``, ``cadence train --nproc``) the processes
meet through the agent's store, which outlives them. A group the agent started again would find
the keys the dead group left there and dial its stale addresses (gloo's ``connectFullMesh``
fails with "Connection refused" after its timeout, measured at 100 s): each attempt therefore
meets under a prefix of its own, ``TORCHELASTIC_RESTART_COUNT``.
"""

from __future__ import annotations

import datetime
import os
import re
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["STRATEGIES", "DistributedTimeout", "StopAgreement", "data_parallel", "explained", "from_rank0",
           "init_from_environment", "is_sharded_model", "shard_model", "world"]


def world() -> tuple[int, int]:
    """``(world_size, rank)`` of this process: ``(1, 0)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


#: How a data parallel run holds its model: a replica per process (``ddp``), or each process a shard of every
#: parameter, gradient and optimizer state (``fsdp``).
STRATEGIES = ("ddp", "fsdp")


def shard_model(model: nn.Module, precision: str = "32") -> nn.Module:
    """``model`` sharded across the processes by FSDP2 (``fully_shard``), in place: each block (every child module
    with parameters; the items of a ``ModuleList``), then the root. Call it before making the optimizer, which must
    hold the sharded parameters. ``precision="bf16"`` computes with bfloat16 parameters and reduces gradients in
    float32 (``MixedPrecisionPolicy``). One process: ``model`` as it is."""
    if world()[0] == 1:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if precision == "bf16" else MixedPrecisionPolicy()
    for block in _blocks(model):
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The units FSDP shards one by one: ``model``'s children with parameters, a ``ModuleList``'s (or
    ``ModuleDict``'s) items in its place, since only a module that is called gathers its parameters."""
    blocks = []
    for child in model.children():
        items = child.values() if isinstance(child, nn.ModuleDict) else child if isinstance(child, nn.ModuleList) \
            else [child]
        blocks += [item for item in items if any(True for _ in item.parameters())]
    return blocks


def is_sharded_model(model: nn.Module) -> bool:
    """Whether ``model`` was sharded by :func:`shard_model` (FSDP2)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def from_rank0(value: Any) -> Any:
    """Rank 0's ``value`` on every process (a decision every process must take alike, such as one read from rank 0's
    files)."""
    if world()[0] == 1:
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` when this run has several processes and it is not sharded
    (:func:`shard_model`), else itself."""
    if world()[0] == 1 or is_sharded_model(model):
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


def init_from_environment(device: torch.device, timeout: float = 300.0) -> bool:
    """Join the process group the environment describes (``WORLD_SIZE > 1``), once, its collectives waiting at most
    ``timeout`` seconds; return whether this run is data parallel. Selects this process's CUDA device by
    ``LOCAL_RANK`` on CUDA."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    global _timeout
    backend, wait, _timeout = "nccl" if device.type == "cuda" else "gloo", datetime.timedelta(seconds=timeout), timeout
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":  # meet in the agent's store, this attempt's part
        agent_store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                    timeout=wait)
        store = dist.PrefixStore(f"cadence/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", agent_store)
        dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]), timeout=wait)
    else:
        dist.init_process_group(backend, timeout=wait)
    return True


class DistributedTimeout(RuntimeError):
    """A collective of the process group that waited its whole timeout for another process."""


#: How gloo (``Timed out waiting 5000ms for recv operation``, or, its peer's side of a pair timing out, ``Application
#: timeout caused pair closure``) and NCCL's watchdog (``OpType=ALLREDUCE ... Timeout(ms)=5000``) say that a
#: collective waited too long.
_TIMED_OUT = re.compile(r"Timed out waiting (?P<ms>\d+)ms for (?P<op>\w+) operation|OpType=(?P<nccl_op>\w+).*"
                        r"Timeout\(ms\)=(?P<nccl_ms>\d+)|Application timeout caused pair closure", re.S)

#: The process group's timeout, seconds, as :func:`init_from_environment` set it.
_timeout: float | None = None


def explained(error: BaseException) -> BaseException:
    """``error`` said plainly when it is a collective's timeout (a :class:`DistributedTimeout`: which process waited,
    for what, how long, and what it means); else ``error`` itself."""
    found = _TIMED_OUT.search(str(error)) if isinstance(error, RuntimeError) else None
    if found is None or world()[0] == 1:
        return error
    milliseconds = found["ms"] or found["nccl_ms"]
    seconds = int(milliseconds) / 1000 if milliseconds else _timeout
    operation = found["op"] or (found["nccl_op"] or "").lower() or "collective"
    return DistributedTimeout(
        f"rank {world()[1]} of {world()[0]}: a collective of the process group (its {operation}) timed out"
        f"{f' after {seconds:g} s' if seconds else ''}: another process stopped answering (stopped, hung, or cut off "
        f"from the network); the run ends here rather than hang (dist_timeout sets the limit). {type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else ''}")
