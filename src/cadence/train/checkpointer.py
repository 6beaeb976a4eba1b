"""The checkpointer: a run's checkpoints written from, and restored into, a model, its optimizer and stateful parts.

As torchtitan's checkpointer is, it is handed the parts of a training run that have a state
(``state_dict()`` / ``load_state_dict()``) by name, and knows nothing else of them:

* ``model`` and ``optimizer``: their state dicts as ``torch.distributed.checkpoint.state_dict``
  gives them (``get_state_dict``: keyed by parameter name, whole tensors, or each rank's shards
  under FSDP), so that any checkpoint restores into any layout (``set_state_dict``);
* ``parts``: the state every process shares (the optimizer step, the loop's position, the
  tracker, the callbacks, the loaders): rank 0's is saved, and every process restores it;
* ``per_process``: the state that differs from process to process (random generators, the
  metrics' partial sums, state a step carries): every process's own is saved, gathered to
  rank 0, and each process restores its own.

**Two formats, one folder layout** (:mod:`cadence.track.checkpoints`: ``step-<N>/``, atomic).
Whole weights go to ``model.safetensors`` and the optimizer's state into ``state.pt``, written
by rank 0. A sharded model (FSDP), or ``async_save``, writes both with
``torch.distributed.checkpoint`` instead: each rank its own shards (``*.distcp``), beside
DCP's ``.metadata``; rank 0 adds ``state.pt`` and ``meta.json``, and renames the folder into
place once every shard is written. **Asynchronous** saves stage the tensors in memory, then
write them on a thread while training goes on; a save waits for the one before (never two in
flight), and :meth:`Checkpointer.wait` for the last (a run's end).

**Another number of processes.** A checkpoint of ``P`` processes resumes on ``M``: the model
and optimizer are resharded (or gathered) by ``torch.distributed.checkpoint``; the shared
parts do not depend on ``P`` (batch sizes are global, so a loader's position is the same
global batch); a per-process part restores from the ``P`` saved states with its
``load_state_dicts(states, rank, world_size)`` (the metrics' sums go to rank 0), and one
without is refused, naming it.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from cadence.checks import check_number
from cadence.optim.sharded import is_sharded, local
from cadence.track.checkpoints import (CheckpointError, begin_checkpoint, check_fits, commit_checkpoint,
                                       latest_checkpoint, prune_checkpoints, read_checkpoint, read_weights,
                                       save_checkpoint, saved_by, shard_shapes, write_state, write_whole_weights)
from cadence.track.checkpoints import is_sharded as is_sharded_checkpoint
from cadence.train.distributed import from_rank0, world


# One process writes and reads DCP checkpoints without a process group, as asked (no_dist); torch's background writer
# drops that and warns that it assumes so.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized, assuming "
                        "the intent is to", category=UserWarning)

__all__ = ["Attributes", "Checkpointer", "Each", "Stateful"]


class Stateful(Protocol):
    """A part of a run with a state to save and restore."""

    def state_dict(self) -> Any:
        """The state, as tensors, numbers, strings and containers of them."""

    def load_state_dict(self, state: Any) -> None:
        """Restore :meth:`state_dict`."""


class Checkpointer:
    """Writes ``folder/step-<N>/`` checkpoints of ``model``, ``optimizer`` and the stateful ``parts`` and
    ``per_process`` parts (see the module docstring), keeping the ``keep_last`` newest and the ``keep_best`` best by
    ``best_metric`` (``best_mode`` ``"min"`` or ``"max"``); ``experiment`` and ``config`` say what the run is;
    ``async_save`` (default: when the model is sharded) writes in the background. Without a ``folder`` it only
    loads checkpoints, from wherever they are."""

    def __init__(self, folder: str | Path | None, model: nn.Module, parts: Mapping[str, Stateful],
                 per_process: Mapping[str, Stateful], *, optimizer: torch.optim.Optimizer | None = None,
                 keep_last: int = 3, keep_best: int = 0, best_metric: str = "valid.loss", best_mode: str = "min",
                 experiment: str | None = None, config: Mapping[str, Any] | None = None,
                 async_save: bool | None = None):
        check_number("Checkpointer", "keep_last", keep_last, low=1, integer=True)
        check_number("Checkpointer", "keep_best", keep_best, low=0, integer=True)
        if best_mode not in ("min", "max"):
            raise ValueError(f"Checkpointer: best_mode={best_mode!r}; expected 'min' or 'max'")
        self.folder = Path(folder) if folder is not None else None
        self.model, self.optimizer = model, optimizer
        self.parts = dict(parts)
        self.per_process = dict(per_process)
        self.keep_last, self.keep_best = keep_last, keep_best
        self.best_metric, self.best_mode = best_metric, best_mode
        self.experiment = experiment
        self.config = dict(config or {})
        #: Whether the model's parameters are sharded across processes (FSDP): then checkpoints are sharded.
        self.sharded = any(is_sharded(p) for p in model.parameters())
        self.async_save = self.sharded if async_save is None else async_save
        # Background saves talk over a gloo group of their own, never in the way of training's collectives.
        self._group = dist.new_group(backend="gloo") if self.async_save and world()[0] > 1 else None
        self._pending: Future | None = None
        self._has_checkpoint = False

    # -- saving ---------------------------------------------------------------------------

    def save(self, step: int, meta: Mapping[str, Any]) -> Path | None:
        """Write the checkpoint of optimizer step ``step`` (with ``meta``: epoch, metrics), then prune; return its
        path on rank 0 (asynchronous: the path it will have once written), ``None`` elsewhere. Every process calls
        it: each hands over its own per-process state and, sharded, writes its own shards."""
        self.wait()
        self._has_checkpoint = True
        processes = _gathered({name: _to_cpu(part.state_dict()) for name, part in self.per_process.items()})
        weights, optimizer = self._state_dicts()
        rank, meta = world()[1], {"experiment": self.experiment, **meta}
        state = {"config": self.config, "parts": {name: part.state_dict() for name, part in self.parts.items()},
                 "processes": processes}
        if not (self.sharded or self.async_save):
            if rank != 0:
                return None
            path = save_checkpoint(self.folder, step, weights, {**state, "optimizer": optimizer}, meta)
            self._prune()
            return path
        import torch.distributed.checkpoint as dcp  # here: importing it costs every command a second

        partial, final = from_rank0(begin_checkpoint(self.folder, step) if rank == 0 else None)
        try:
            if rank == 0:
                write_state(partial, step, state, meta)
            shards = {"model": weights, "optimizer": optimizer}
            if not self.async_save:
                dcp.save(shards, checkpoint_id=partial, no_dist=world()[0] == 1)
                return self._commit(partial, final)
            written = dcp.async_save(shards, checkpoint_id=partial, process_group=self._group,
                                     no_dist=world()[0] == 1)
        except BaseException:
            _remove(partial, rank)
            raise
        self._pending = committed = Future()  # done once the shards are written and the folder renamed into place

        def commit(written: Future) -> None:
            try:
                if written.exception() is not None:
                    _remove(partial, rank)
                    raise written.exception()
                self._commit(partial, final)
                committed.set_result(None)
            except BaseException as e:
                committed.set_exception(e)

        written.add_done_callback(commit)
        return final if rank == 0 else None

    def wait(self) -> None:
        """Wait for the checkpoint being written in the background, if any (re-raising its error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def finish(self) -> None:
        """At a run's end: wait for the last checkpoint, and, sharded, write the whole weights into the newest one
        (``model.safetensors``, for any reader; every process takes part in gathering them)."""
        self.wait()
        # Decided alike by every process (another one may not see rank 0's folder): whether one was saved or loaded.
        if self.sharded and self.folder is not None and self._has_checkpoint:
            weights = self.full_weights()
            if weights is not None:
                write_whole_weights(latest_checkpoint(self.folder), weights)
        if world()[0] > 1:
            dist.barrier()  # the processes leave together: none exits while another still reads what it sent

    def _commit(self, partial: Path, final: Path) -> Path | None:
        """Once every shard is written: rank 0 renames the checkpoint into place and prunes (for an asynchronous save,
        on the thread that wrote it)."""
        if world()[1] != 0:
            return None
        path = commit_checkpoint(partial, final)
        self._prune()
        return path

    def _prune(self) -> None:
        prune_checkpoints(self.folder, self.keep_last, self.keep_best, self.best_metric if self.keep_best else None,
                          self.best_mode)

    def _state_dicts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The model's and the optimizer's state dicts, keyed by parameter names: whole tensors on the CPU, or each
        rank's shards (DTensors) when sharded."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        options = StateDictOptions(cpu_offload=not self.sharded)
        weights, optimizer = get_state_dict(self.model, self.optimizer or [], options=options)
        return weights, optimizer

    def full_weights(self) -> dict[str, torch.Tensor] | None:
        """The model's whole weights on the CPU, on rank 0 (``None`` elsewhere); gathered from every rank when sharded,
        so every process calls it."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        weights = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return weights if world()[1] == 0 else None

    # -- loading --------------------------------------------------------------------------

    def load(self, path: str | Path) -> dict[str, Any]:
        """Restore checkpoint ``path`` (a ``step-<N>`` folder) into the model, the optimizer and every part; return its
        meta.

        The model must fit its weights and the checkpoint be of :attr:`experiment` (when set); it may be of
        another number of processes (see the module docstring). Nothing is changed when it is refused.
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        self.wait()
        path = Path(path)
        state, meta = read_checkpoint(path, experiment=self.experiment)
        where = f"checkpoint {path} ({saved_by(meta)})"
        processes = self._own_states(state["processes"], where)
        if is_sharded_checkpoint(path):
            shapes = shard_shapes(path, "model.")
            check_fits(self.model, {key: torch.empty(size, device="meta") for key, (size, _) in shapes.items()},
                       where)
            import torch.distributed.checkpoint as dcp

            weights, optimizer = self._state_dicts()
            shards = {"model": weights, "optimizer": optimizer} if self.optimizer else {"model": weights}
            dcp.load(shards, checkpoint_id=path, no_dist=world()[0] == 1)
            set_state_dict(self.model, self.optimizer or [], model_state_dict=weights,
                           optim_state_dict=optimizer if self.optimizer else {})
        else:
            weights = read_weights(path, meta)
            check_fits(self.model, weights, where)
            set_state_dict(self.model, self.optimizer or [], model_state_dict=_with_tied(self.model, weights),
                           optim_state_dict=state.get("optimizer", {}) if self.optimizer else {},
                           options=StateDictOptions(full_state_dict=self.sharded))  # whole, to be sharded
        self._has_checkpoint = True
        for name, part in self.parts.items():
            part.load_state_dict(state["parts"][name])
        for name, part in self.per_process.items():
            if isinstance(processes, dict):
                part.load_state_dict(processes[name])
            else:
                part.load_state_dicts([saved[name] for saved in processes], *reversed(world()))
        return meta

    def _own_states(self, processes: list[dict[str, Any]], where: str) -> dict[str, Any] | list[dict[str, Any]]:
        """This process's saved per-process states, or, saved by another number of processes, all of them (each part
        then takes what is its own), once every part is checked to know how."""
        world_size, rank = world()
        if len(processes) == world_size:
            return processes[rank]
        refused = []
        for name, part in self.per_process.items():
            if not hasattr(part, "load_state_dicts"):
                refused.append(f"{name} (a {type(part).__name__}) cannot be split or merged across another number")
            elif why := getattr(part, "refusal", lambda states: None)([saved[name] for saved in processes]):
                refused.append(why)
        if refused:
            raise CheckpointError(f"{where} holds the state of {len(processes)} processes and this run has "
                                  f"{world_size}: {'; '.join(refused)}. Resume it with {len(processes)} processes")
        return processes


def _with_tied(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` with every key of the model's state dict, a tied one (saved once) under each of its names."""
    own, by_storage = model.state_dict(), {}
    for key, tensor in own.items():
        if key in weights:
            by_storage.setdefault(_identity(tensor), key)
    return {key: weights[key] if key in weights else weights[by_storage[_identity(tensor)]]
            for key, tensor in own.items()}


def _identity(tensor: torch.Tensor) -> tuple[Any, ...]:
    shard = local(tensor)
    return shard.untyped_storage().data_ptr(), shard.storage_offset(), tuple(tensor.shape)


def _remove(partial: Path, rank: int) -> None:
    if rank == 0:
        shutil.rmtree(partial, ignore_errors=True)


def _gathered(state: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every process's ``state``, in rank order, on rank 0; ``None`` on the others."""
    world_size, rank = world()
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
        """Restore :meth:`state_dict`."""
        for name in self.names:
            if name in state:
                setattr(self.owner, name, _to(state[name], self.device))

    def refusal(self, states: Sequence[Mapping[str, Any]]) -> str | None:
        """Why the states of another number of processes cannot be restored: a value held (what a step carries
        belongs to one process's share of the data); ``None`` when none is."""
        held = sorted({name for state in states for name, value in state.items() if value is not None})
        return f"the state a step carries ({', '.join(held)}) belongs to each process's share of the data" if held \
            else None

    def load_state_dicts(self, states: Sequence[Mapping[str, Any]], rank: int, world_size: int) -> None:
        """Restore from the states of another number of processes, none holding a value (:meth:`refusal`)."""


def _to(value: Any, device: torch.device) -> Any:
    """``value`` with its tensors on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(item, device) for item in value)
    return value

