"""Every random number generator a training run draws from, captured as tensors and restored.

A run resumed from a checkpoint must draw the same random numbers as the run that was
never stopped: dropout masks, sampled labels (Sophia's Hessian estimate), anything user
code draws. Python's :mod:`random`, NumPy's global generator, torch's CPU generator and
every CUDA device's generator are saved. Their states are stored as tensors and plain
numbers only, so that a checkpoint loads with ``torch.load(weights_only=True)``: nothing in
the file can run code (NumPy's own state holds an ndarray, which that refuses).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["RandomGenerators", "rng_state", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's, torch's CPU and every CUDA generator, as tensors and numbers."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore every generator from :func:`rng_state`'s result.

    CUDA states are restored when this machine has as many devices as the saved run had;
    otherwise (resuming a GPU run on another machine) they are left as they are.
    """
    python = state["python"]
    random.setstate((python["version"], tuple(python["words"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomGenerators:
    """Every random generator of this process as one stateful part of a checkpoint (:mod:`cadence.train.checkpointer`)."""

    def state_dict(self) -> dict[str, Any]:
        """:func:`rng_state`."""
        return rng_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """:func:`set_rng_state`."""
        set_rng_state(state)

    def load_state_dicts(self, states: list[dict[str, Any]], rank: int, world_size: int) -> None:
        """Resumed on another number of processes: process ``rank`` takes the generators saved by that rank, and a
        process beyond those saved keeps its own (seeded) ones."""
        if rank < len(states):
            set_rng_state(states[rank])
