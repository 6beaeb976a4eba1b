"""The metric protocol: ``update``, ``compute``, ``reset``, and declared states.

A metric is written as users already write them (as in torchmetrics): its constructor
declares its states with :meth:`Metric.add_state`, :meth:`Metric.update` adds a batch to
them, and :meth:`Metric.compute` turns them into the value,

.. code-block:: python

    class Accuracy(Metric):
        def __init__(self):
            super().__init__()
            self.add_state("correct", torch.zeros((), dtype=torch.long))
            self.add_state("total", torch.zeros((), dtype=torch.long))

        def update(self, output, target):
            self.correct = self.correct + (output.argmax(-1) == target).sum()
            self.total = self.total + target.numel()

        def compute(self):
            return self.correct / self.total

Every state is an exact sum (``int64`` counts, ``float64`` totals), never an average of
averages, so that the value over several phases' slices or several processes is the
value of the summed states. Declaring them is what lets the base class reset them
(:meth:`Metric.reset`), sum them across processes (:meth:`Metric.sync`), save and
restore them (:meth:`Metric.state_dict`) and move them (:meth:`Metric.to`).

Training and validation interleave within an epoch and each reports its own value, so the
trainer keeps one copy of each metric per phase (``copy.deepcopy``) and resets them at the
start of each epoch. A ``torchmetrics.Metric`` has the same ``update`` / ``compute`` /
``reset`` and works the same way; :func:`sync_metric` syncs either kind.

An update never waits for the device (no ``.item()``, no Python branch on a tensor's
value): the states are tensors on the device of the updates, and the host synchronises
only when the computed value is read.
"""

from __future__ import annotations

import datetime
import functools
from abc import ABC, abstractmethod
from typing import Any, Callable

import torch

from cadence.metrics.sync import DEFAULT_TIMEOUT, all_reduce_sum, is_distributed


def check_logits(where: str, output: torch.Tensor, target: torch.Tensor, classes: int | None = None) -> None:
    """Refuse logits ``output`` that are not ``[..., C]`` (``C = classes`` when given) over targets ``target``
    ``[...]``: such shapes would broadcast into a wrong count. Shapes only: nothing is read from the device."""
    expected = (*target.shape, classes) if classes is not None else (*target.shape, *output.shape[-1:])
    if output.dim() != target.dim() + 1 or output.shape != expected:
        raise ValueError(f"{where}: output of shape {list(output.shape)} and target of shape {list(target.shape)}; "
                         f"expected logits [..., {classes if classes is not None else 'C'}] and targets [...]")


def counted(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Which samples a metric counts: those whose target is not ``ignore_index`` (all of them for ``None``)."""
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


class Metric(ABC):
    """A value accumulated over the batches of a phase, from declared, summable states.

    A subclass calls ``super().__init__()``, declares its states with :meth:`add_state`
    and implements :meth:`update` and :meth:`compute`. Its :meth:`update` runs without
    autograd, with the states first moved to the device of its first tensor argument, so
    the states live where the updates do (created on the CPU, or placed by :meth:`to`).
    Write each update of a state as a new tensor (``self.total = self.total + n``), not in
    place, so that a value computed earlier never changes under its holder.
    """

    def __init__(self) -> None:
        #: Each state's value after :meth:`reset`, in the order declared.
        self._defaults: dict[str, torch.Tensor] = {}
        #: The process's own states while :meth:`sync` has put the group's sums in their place.
        self._local: dict[str, torch.Tensor] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Run a subclass's own ``update`` through :func:`_updating`."""
        super().__init_subclass__(**kwargs)
        if "update" in vars(cls):
            cls.update = _updating(vars(cls)["update"])

    def add_state(self, name: str, default: torch.Tensor) -> None:
        """Declare a state: a tensor that starts at (and :meth:`reset` returns to) ``default``,
        and that :meth:`sync` sums across processes."""
        if not isinstance(default, torch.Tensor):
            raise TypeError(f"{type(self).__name__}.add_state: default of {name!r} is a {type(default).__name__}; "
                            f"expected a tensor")
        if hasattr(self, name):
            raise ValueError(f"{type(self).__name__}.add_state: {name!r} is already an attribute of the metric")
        self._defaults[name] = default.detach().clone()
        setattr(self, name, default.detach().clone())

    @abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Add one batch to the states, without synchronising with the device."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Same as :meth:`update`."""
        self.update(*args, **kwargs)

    @abstractmethod
    def compute(self) -> torch.Tensor:
        """The value over everything counted (over every process after :meth:`sync`)."""

    def reset(self) -> None:
        """Return every state to its default, on the device the states are on."""
        device = self._device()
        self._local = None
        for name, default in self._defaults.items():
            setattr(self, name, default.to(device, copy=True))

    def sync(self, timeout: float | datetime.timedelta = DEFAULT_TIMEOUT) -> None:
        r"""Make :meth:`compute` give the value of all processes over all their data: each state
        becomes $\sum_p s_p$ over the processes of ``torch.distributed``'s default group.

        A no-op without an initialised process group. Every process must call it at the same
        point. The process's own states are kept: the next :meth:`update` continues from them,
        and a later sync sums them afresh. A sum that does not complete within ``timeout``
        (seconds, or a ``timedelta``) raises a ``RuntimeError`` naming this metric (a process
        has exited, hung, or not called sync); the states are then left as they were.
        """
        if not is_distributed():
            return
        local = self._own_states()
        totals = all_reduce_sum(list(local.values()), timeout, where=f"{type(self).__name__}.sync")
        self._local = local
        for name, total in zip(local, totals):
            setattr(self, name, total)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """This process's states (not the group's sums of a :meth:`sync`), as copies: plain tensors
        that ``torch.save`` stores and ``torch.load(weights_only=True)`` reads."""
        return {name: state.detach().clone() for name, state in self._own_states().items()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Restore the states of a :meth:`state_dict`, onto the device the states are on."""
        where = f"{type(self).__name__}.load_state_dict"
        if set(state_dict) != set(self._defaults):
            raise ValueError(f"{where}: got states {sorted(state_dict)}; expected {sorted(self._defaults)}")
        for name, default in self._defaults.items():
            value = state_dict[name]
            if not isinstance(value, torch.Tensor) or value.shape != default.shape:
                got = f"shape {list(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
                raise ValueError(f"{where}: state {name!r} has {got}; expected a tensor of shape {list(default.shape)}")
        device = self._device()
        self._local = None
        for name, default in self._defaults.items():
            setattr(self, name, state_dict[name].to(device, default.dtype, copy=True))

    def to(self, device: str | torch.device) -> Metric:
        """Move the states to ``device``; returns the metric."""
        if self._local is not None:
            self._local = {name: state.to(device) for name, state in self._local.items()}
        for name in self._defaults:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _own_states(self) -> dict[str, torch.Tensor]:
        """The states as this process counted them."""
        if self._local is not None:
            return dict(self._local)
        return {name: getattr(self, name) for name in self._defaults}

    def _device(self) -> torch.device:
        """Where the states are (the CPU for a metric without states)."""
        return next((getattr(self, name).device for name in self._defaults), torch.device("cpu"))

    def _prepare_update(self, args: tuple, kwargs: dict) -> None:
        """Before an update: take back this process's own states after a :meth:`sync`, and move
        the states to the device of the first tensor argument."""
        if self._local is not None:
            for name, state in self._local.items():
                setattr(self, name, state)
            self._local = None
        device = next((a.device for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if device is not None and device != self._device():
            self.to(device)


def _updating(update: Callable[..., None]) -> Callable[..., None]:
    """A subclass's ``update``, run on its own states, on the inputs' device, without autograd."""
    @functools.wraps(update)
    def prepared(self: Metric, *args: Any, **kwargs: Any) -> None:
        self._prepare_update(args, kwargs)
        with torch.no_grad():
            update(self, *args, **kwargs)
    return prepared


def sync_metric(metric: Any, timeout: float | datetime.timedelta = DEFAULT_TIMEOUT) -> None:
    """Sync ``metric`` before its value is read: a cadence :class:`Metric` by :meth:`Metric.sync`
    (bounded by ``timeout``); a torchmetrics metric syncs itself inside its ``compute``, so it is
    left to that.

    torchmetrics' sync has no timeout of its own (only the process group's), and its ``compute``
    returns a cached value without joining the other processes when the metric has not been
    updated since its last ``compute``: a process without batches between two reports then
    leaves the others waiting in their gather.
    """
    if isinstance(metric, Metric):
        metric.sync(timeout)
