"""Bind schedules to the hyper-parameters of an optimizer's parameter groups: the one way to schedule them.

Any group hyper-parameter can follow a schedule of the optimizer step: ``lr``,
``weight_decay``, ``momentum``, or one element of a tuple such as ``betas[0]``. Before each
optimizer step the trainer calls :meth:`HyperParameterScheduler.step` with the step, which
writes ``schedule(step)`` into every selected group (for ``lr``, times the group's
``lr_multiplier``, see :func:`cadence.optim.helpers.param_groups.param_groups`) and returns
the values applied, for the tracker.

The optimizers that schedule their own rate (the presets ``AdamWarmup``,
``AdamWarmupCosineDecay`` and ``Noam``) hold a scheduler of this kind too, as
``optimizer.scheduler``, which their ``step()`` applies first. A key that one schedules is
refused to any other scheduler of the same optimizer: two schedules of one rate would fight,
or, written as factors of each other, ramp it twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

_KEY = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(\[(?P<index>\d+)\])?$")


class HyperParameterScheduler:
    """Sets ``optimizer``'s group hyper-parameters from ``schedules`` (key to a callable of the step).

    ``groups`` selects group indices (default: every group, including groups added later).
    Keys name a hyper-parameter present in the groups, optionally indexing a tuple
    (``"betas[0]"``). A key that the optimizer already schedules itself (``optimizer.scheduler``,
    a preset's) is refused, naming both schedules.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedules: Mapping[str, Callable[[float], float]],
                 groups: Sequence[int] | None = None):
        self.optimizer = optimizer
        self.groups = None if groups is None else list(groups)
        for g in self.groups or ():
            if not 0 <= g < len(optimizer.param_groups):
                raise ValueError(f"group index {g} is out of range; the optimizer has {len(optimizer.param_groups)} "
                                 f"parameter groups")
        self.schedules: dict[str, tuple[str, int | None, Callable[[float], float]]] = {}
        for key, schedule in schedules.items():
            match = _KEY.match(key)
            if match is None:
                raise ValueError(f"hyper-parameter key {key!r} is not of the form 'name' or 'name[i]' (e.g. 'lr', "
                                 f"'betas[0]')")
            if not callable(schedule):
                raise TypeError(f"the schedule of {key!r} is a {type(schedule).__name__}; expected a schedule "
                                f"(a callable of the step)")
            name, index = match["name"], None if match["index"] is None else int(match["index"])
            for g in self._indices():
                self._check(key, name, index, optimizer.param_groups[g])
            self._check_not_scheduled(key, name, index, schedule)
            self.schedules[key] = (name, index, schedule)

    def _indices(self) -> Sequence[int]:
        return range(len(self.optimizer.param_groups)) if self.groups is None else self.groups

    def _check_not_scheduled(self, key: str, name: str, index: int | None, schedule: Callable[[float], float]) -> None:
        own = getattr(self.optimizer, "scheduler", None)
        if not isinstance(own, HyperParameterScheduler):
            return
        for own_key, (own_name, own_index, own_schedule) in own.schedules.items():
            if (own_name, own_index) == (name, index):
                optimizer = type(self.optimizer).__name__
                raise ValueError(f"cannot schedule {key!r} with {schedule!r}: the optimizer ({optimizer}) schedules "
                                 f"{own_key!r} itself, with {own_schedule!r} (as the presets AdamWarmup, "
                                 f"AdamWarmupCosineDecay and Noam do), and two schedules of one hyper-parameter "
                                 f"would fight or ramp it twice; schedule it once: build {optimizer} without a "
                                 f"schedule of its own, or drop this one")

    @staticmethod
    def _check(key: str, name: str, index: int | None, group: dict[str, Any]) -> None:
        if name not in group:
            known = ", ".join(k for k in group if k != "params")
            raise ValueError(f"cannot schedule {key!r}: the optimizer's groups have no {name!r}; they have: {known}")
        value = group[name]
        if index is None and isinstance(value, (tuple, list)):
            raise ValueError(f"cannot schedule {key!r}: {name} is a tuple {value!r}; name one element, e.g. "
                             f"'{name}[0]'")
        if index is not None and (not isinstance(value, (tuple, list)) or index >= len(value)):
            raise ValueError(f"cannot schedule {key!r}: {name}={value!r} has no element {index}")

    def step(self, step: float) -> dict[str, float]:
        """Apply every schedule at ``step``; return the applied values (``key`` when all selected groups
        got the same value, else ``key.group<i>`` per group)."""
        applied: dict[str, float] = {}
        for key, (name, index, schedule) in self.schedules.items():
            value = float(schedule(step))
            if name == "lr" and value < 0:
                raise ValueError(f"the schedule of 'lr' gave {value} at step {step}; a learning rate must be >= 0")
            per_group = {}
            for g in self._indices():
                group = self.optimizer.param_groups[g]
                v = value * group.get("lr_multiplier", 1.0) if name == "lr" else value
                if index is None:
                    group[name] = v
                else:
                    items = list(group[name])
                    items[index] = v
                    group[name] = type(group[name])(items)
                per_group[g] = v
            if len(set(per_group.values())) == 1:
                applied[key] = value if name != "lr" else next(iter(per_group.values()))
            else:
                applied.update({f"{key}.group{g}": v for g, v in per_group.items()})
        return applied


class NoamOpt:
    """labml_nn's ``NoamOpt(model_size, factor, warmup, optimizer)``, as a scheduler binding.

    Before each step it sets every group's ``lr`` to the Transformer paper's rate
    ``factor * model_size ** -0.5 * min(t ** -0.5, t * warmup ** -1.5)`` at step ``t``
    (counted from 1), then steps ``optimizer``.
    """

    def __init__(self, model_size: int, factor: float, warmup: int, optimizer: torch.optim.Optimizer):
        from cadence.schedule import Noam

        self.optimizer = optimizer
        self.schedule = Noam(factor, model_size, warmup)
        self.scheduler = HyperParameterScheduler(optimizer, {"lr": self.schedule})
        self._step = 0

    def rate(self, step: int | None = None) -> float:
        """The learning rate at ``step`` (default: the last step taken)."""
        return self.schedule(self._step if step is None else step)

    def step(self) -> None:
        """Set the rate of the next step and take it."""
        self._step += 1
        self.scheduler.step(self._step)
        self.optimizer.step()

    def zero_grad(self) -> None:
        """Zero the wrapped optimizer's gradients."""
        self.optimizer.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        """The step count and the wrapped optimizer's state."""
        return {"step": self._step, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
