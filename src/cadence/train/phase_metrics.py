"""Each phase's copies of the metrics, and its mean loss over the epoch so far."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from cadence.metrics import Mean, sync_metric

__all__ = ["PhaseMetrics"]


class PhaseMetrics:
    """One copy of every metric per phase (``copy.deepcopy`` of ``metrics``, on ``device``), and each phase's mean
    loss, weighted by the count each batch's loss is the mean over.

    A phase's losses are held as device tensors as the batches come and folded into its mean in one
    exact float64 sum when it is read (:meth:`values`) or saved (:meth:`state_dict`): no host read
    per batch. :meth:`values` syncs every metric across processes before computing it.
    """

    def __init__(self, metrics: Mapping[str, Any], device: torch.device, phases: Iterable[str]):
        self.device = device
        self.metrics = {phase: {name: _on(copy.deepcopy(m), device) for name, m in metrics.items()} for phase in phases}
        self.loss = {phase: Mean().to(device) for phase in self.metrics}
        self._pending: dict[str, list[tuple[torch.Tensor, int | torch.Tensor]]] = {phase: [] for phase in self.metrics}

    def __getitem__(self, phase: str) -> dict[str, Any]:
        """The metrics of ``phase``, by name: what a step updates."""
        return self.metrics[phase]

    def add_loss(self, phase: str, loss: torch.Tensor, count: int | torch.Tensor) -> None:
        """A batch's mean ``loss`` (detached) over ``count`` samples or tokens."""
        self._pending[phase].append((loss.detach(), count))

    def reset(self, phase: str) -> None:
        """Start ``phase``'s metrics and mean loss afresh (an epoch, a whole validation pass)."""
        self._pending[phase].clear()
        self.loss[phase].reset()
        for metric in self.metrics[phase].values():
            metric.reset()

    def values(self, phase: str, loss: bool = True) -> dict[str, Any]:
        """``{"<phase>.<name>": value}`` of every metric of ``phase`` (synced across processes; a tensor of several
        values as one key per element: ``valid.f1[3]``) and, with ``loss``, its mean loss. Values stay tensors."""
        metrics = dict(self.metrics[phase])
        if loss:
            metrics["loss"] = self._folded(phase)
        values: dict[str, Any] = {}
        for name, metric in metrics.items():
            sync_metric(metric)
            values.update(_scalars(f"{phase}.{name}", metric.compute()))
        return values

    def state_dict(self) -> dict[str, Any]:
        """Every phase's metric states and mean loss: this process's partial sums."""
        return {phase: {name: metric.state_dict() for name, metric in {**metrics, "loss": self._folded(phase)}.items()}
                for phase, metrics in self.metrics.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        for phase, metrics in self.metrics.items():
            for name, metric in {**metrics, "loss": self.loss[phase]}.items():
                metric.load_state_dict(state[phase][name])
            self._pending[phase].clear()

    def load_state_dicts(self, states: list[Mapping[str, Any]], rank: int, world_size: int) -> None:
        """Resumed on another number of processes: the partial sums of all those saved go to rank 0, the others start
        from zero, so that the sums across the processes are those saved."""
        self.load_state_dict(_summed(states) if rank == 0 else _zeroed(states[0]))

    def _folded(self, phase: str) -> Mean:
        """``phase``'s mean loss, its pending ``(loss, count)`` pairs added in one exact float64 sum."""
        pending, mean = self._pending[phase], self.loss[phase]
        if pending:
            losses = torch.stack([loss for loss, _ in pending]).double()
            counts = torch.stack([torch.as_tensor(count, device=losses.device) for _, count in pending])
            mean.update((losses * counts).sum() / counts.sum(), counts.sum())
            pending.clear()
        return mean


def _on(metric: Any, device: torch.device) -> Any:
    """``metric`` with its states on ``device`` (cadence's and torchmetrics' metrics have ``to``), so that every
    process's states are where a sync sums them, even one that never updates them."""
    return metric.to(device) if callable(getattr(metric, "to", None)) else metric


def _scalars(key: str, value: Any) -> dict[str, Any]:
    """A computed value as tracked scalars: itself, or one per element of a tensor (``valid.f1[3]``, a confusion
    matrix's ``valid.confusion[2][5]``)."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return {key: value}
    return {key + "".join(f"[{i}]" for i in index): value[index] for index in itertools.product(*map(range, value.shape))}


def _summed(states: list[Any]) -> Any:
    """The states added up, tensor by tensor (each metric's states are sums)."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return sum(states[1:], first.clone())
    if isinstance(first, Mapping):
        return {key: _summed([state[key] for state in states]) for key in first}
    return first


def _zeroed(state: Any) -> Any:
    """``state`` with every tensor zero."""
    if isinstance(state, torch.Tensor):
        return torch.zeros_like(state)
    if isinstance(state, Mapping):
        return {key: _zeroed(value) for key, value in state.items()}
    return state
