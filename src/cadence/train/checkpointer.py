"""The checkpointer: a run's checkpoints written from, and restored into, a dict of stateful parts.

As torchtitan's checkpointer is, it is handed the parts of a training run that have a state
(``state_dict()`` / ``load_state_dict()``) by name, and knows nothing else of them:

* ``model``: its weights go to ``model.safetensors`` (readable by any safetensors reader);
* ``parts``: the state every process shares (the optimizer, the loop's position, the
  tracker, the callbacks, the loaders): rank 0's is saved, and every process restores it;
* ``per_process``: the state that differs from process to process (random generators, the
  metrics' partial sums, state a step carries): every process's own is saved, gathered to
  rank 0, and each process restores its own. A checkpoint of ``P`` processes resumes on ``P``.

Tensors are saved from the CPU; each part puts the ones it restores where it keeps them.

The files and their layout are :mod:`cadence.track.checkpoints`'s (atomic writes, the
newest and the best, loading without running code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from cadence.checks import check_number
from cadence.track.checkpoints import CheckpointError, load_checkpoint, prune_checkpoints, save_checkpoint

__all__ = ["Attributes", "Checkpointer", "Each", "Stateful"]


class Stateful(Protocol):
    """A part of a run with a state to save and restore."""

    def state_dict(self) -> Any:
        """The state, as tensors, numbers, strings and containers of them."""

    def load_state_dict(self, state: Any) -> None:
        """Restore :meth:`state_dict`."""


class Checkpointer:
    """Writes ``folder/step-<N>/`` checkpoints of ``model`` and the stateful ``parts`` and ``per_process`` parts
    (see the module docstring), keeping the ``keep_last`` newest and the ``keep_best`` best by ``best_metric``
    (``best_mode`` ``"min"`` or ``"max"``); ``experiment`` and ``config`` say what the run is. Without a
    ``folder`` it only loads checkpoints, from wherever they are."""

    def __init__(self, folder: str | Path | None, model: nn.Module, parts: Mapping[str, Stateful],
                 per_process: Mapping[str, Stateful], *, keep_last: int = 3, keep_best: int = 0,
                 best_metric: str = "valid.loss", best_mode: str = "min", experiment: str | None = None,
                 config: Mapping[str, Any] | None = None):
        check_number("Checkpointer", "keep_last", keep_last, low=1, integer=True)
        check_number("Checkpointer", "keep_best", keep_best, low=0, integer=True)
        if best_mode not in ("min", "max"):
            raise ValueError(f"Checkpointer: best_mode={best_mode!r}; expected 'min' or 'max'")
        self.folder = Path(folder) if folder is not None else None
        self.model = model
        self.parts = dict(parts)
        self.per_process = dict(per_process)
        self.keep_last, self.keep_best = keep_last, keep_best
        self.best_metric, self.best_mode = best_metric, best_mode
        self.experiment = experiment
        self.config = dict(config or {})

    def save(self, step: int, meta: Mapping[str, Any]) -> Path | None:
        """Write the checkpoint of optimizer step ``step`` (with ``meta``: epoch, metrics), then prune; return its
        path on rank 0, ``None`` elsewhere. Every process calls it: each hands over its own per-process state."""
        processes = _gathered({name: _to_cpu(part.state_dict()) for name, part in self.per_process.items()})
        if processes is None:
            return None
        state = {"config": self.config, "parts": {name: part.state_dict() for name, part in self.parts.items()},
                 "processes": processes}
        path = save_checkpoint(self.folder, step, self.model, state, {"experiment": self.experiment, **meta})
        prune_checkpoints(self.folder, self.keep_last, self.keep_best, self.best_metric if self.keep_best else None,
                          self.best_mode)
        return path

    def load(self, path: str | Path) -> dict[str, Any]:
        """Restore checkpoint ``path`` (a ``step-<N>`` folder) into the model and every part; return its meta.

        The model must fit its weights, the checkpoint must be of :attr:`experiment` (when set) and of
        as many processes as this run has; nothing is changed when it is refused.
        """
        state, meta = load_checkpoint(path, self.model, experiment=self.experiment)
        processes, world_size = state["processes"], _world()[0]
        if len(processes) != world_size:
            raise CheckpointError(f"checkpoint {path} holds the state of {len(processes)} processes (their random "
                                  f"generators, partial metrics, carried state); this run has {world_size}: resume "
                                  f"it with {len(processes)}")
        for name, part in self.parts.items():
            part.load_state_dict(state["parts"][name])
        own = processes[_world()[1]]
        for name, part in self.per_process.items():
            part.load_state_dict(own[name])
        return meta


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _gathered(state: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every process's ``state``, in rank order, on rank 0; ``None`` on the others."""
    world_size, rank = _world()
    if world_size == 1:
        return [state]
    states: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(state, states, dst=0)
    return states


def _to_cpu(state: Any) -> Any:
    """``state`` with every tensor copied to the CPU (to be gathered and saved from any device)."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {key: _to_cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(value) for value in state)
    return state


class Each:
    """Several objects as one stateful part: the states of those that have one, by key (or position)."""

    def __init__(self, objects: Sequence[Any] | Mapping[Any, Any]):
        self.objects = objects if isinstance(objects, Mapping) else dict(enumerate(objects))

    def state_dict(self) -> dict[Any, Any]:
        """Each object's state, ``None`` for one without."""
        return {key: obj.state_dict() if hasattr(obj, "state_dict") else None for key, obj in self.objects.items()}

    def load_state_dict(self, state: Mapping[Any, Any]) -> None:
        """Restore :meth:`state_dict` into the objects that have a state."""
        for key, obj in self.objects.items():
            if state.get(key) is not None and hasattr(obj, "load_state_dict"):
                obj.load_state_dict(state[key])


class Attributes:
    """Attributes of ``owner`` named in ``names`` (a list the owner may add to) as one stateful part; restored with
    their tensors on ``device``."""

    def __init__(self, owner: Any, names: list[str], device: torch.device):
        self.owner, self.names, self.device = owner, names, device

    def state_dict(self) -> dict[str, Any]:
        """The attributes' values."""
        return {name: getattr(self.owner, name) for name in self.names}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Set the attributes to their saved values."""
        for name in self.names:
            if name in state:
                setattr(self.owner, name, _to(state[name], self.device))


def _to(value: Any, device: torch.device) -> Any:
    """``value`` with its tensors on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(item, device) for item in value)
    return value
