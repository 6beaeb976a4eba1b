r"""Sharded parameters: what an optimizer does when FSDP2 hands it DTensors.

Under ``torch.distributed.fsdp.fully_shard`` (or tensor parallelism) a parameter, its gradient
and each state tensor made ``zeros_like`` it are ``DTensor``\ s: each rank holds one shard, for
FSDP a block of rows of dim 0 (fewer rows on the last ranks, or none, when the world size does
not divide the rows). What an update needs of the whole tensor decides how it runs
(:class:`~cadence.optim.generic.GenericAdaptiveOptimizer` does it, no paper's update sees it):

* **an elementwise update** (the Adam family, Lion, Sophia) computes each element from the
  same element of its inputs, so every rank runs it on its own shards as plain tensors
  (:func:`local`): the shard of the update is the update of the shards, bit for bit. On the
  fused path those local shards are what the flat buffers hold;
* **an update that reduces a whole tensor** (LAMB's norms $\lVert \theta \rVert$, $\lVert r_t \rVert$)
  runs on the DTensors themselves: DTensor computes a norm as a partial norm per rank and
  reduces it across the ranks where a pointwise operation (the trust ratio) needs its value;
* **an update that needs the whole matrix** (Muon's Newton-Schulz iteration) gathers it,
  computes on it on every rank, and keeps each rank's shard of the result (:func:`on_whole`).

State tensors are DTensors placed like their parameter (also the fused path's, as views of
its flat buffers), which is what ``torch.distributed.checkpoint``
(``get_optimizer_state_dict``, ``dcp.save``) writes shard by shard. A state dict of whole
tensors (one process's) loads onto sharded parameters, each rank keeping its shard
(:func:`shard_like`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch


def _dtensor() -> Any:
    """``torch.distributed.tensor``, or ``None`` before anything imported it: then no DTensor exists yet (importing
    it here would add half a second to every start)."""
    return sys.modules.get("torch.distributed.tensor")


def is_sharded(x: torch.Tensor) -> bool:
    """Whether ``x`` is a DTensor (a parameter sharded by FSDP, or a state or gradient of one)."""
    dtensor = _dtensor()
    return dtensor is not None and isinstance(x, dtensor.DTensor)


def local(x: torch.Tensor) -> torch.Tensor:
    """This rank's shard of ``x`` as a plain tensor sharing its storage (``x`` itself when it is not sharded): an
    in-place update of it updates ``x``."""
    return x.to_local() if is_sharded(x) else x


def whole(x: torch.Tensor) -> torch.Tensor:
    """``x`` whole on every rank, as a plain tensor (gathered, or reduced when partial; ``x`` itself when it is
    not sharded)."""
    return x.full_tensor() if is_sharded(x) else x


def like(param: torch.Tensor, shard: torch.Tensor) -> torch.Tensor:
    """``shard``, this rank's part of a tensor shaped and placed like ``param``, as a DTensor over it (no copy);
    ``shard`` itself when ``param`` is not sharded."""
    if not is_sharded(param):
        return shard
    return _dtensor().DTensor.from_local(shard, param.device_mesh, param.placements, run_check=False,
                                         shape=param.shape, stride=param.stride())


def shard_like(param: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value``, a whole tensor shaped like the sharded ``param``, as a DTensor placed like it: every rank keeps
    its own shard of its own copy, without communication. ``value`` itself otherwise."""
    if not is_sharded(param) or is_sharded(value) or value.shape != param.shape:
        return value
    return _dtensor().distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)


def on_whole(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """$f(x)$ for an $f$ of the whole tensor (a matrix function): ``x`` gathered on every rank, $f$ computed there,
    and each rank's shard of the result kept, placed as ``x`` is. ``f(x)`` when ``x`` is not sharded."""
    if not is_sharded(x):
        return f(x)
    return _dtensor().distribute_tensor(f(x.full_tensor()), x.device_mesh, x.placements, src_data_rank=None)
