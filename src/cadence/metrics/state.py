"""Metrics with a state per phase.

Training and validation interleave within an epoch (several slices of each), yet each
phase must report its own accuracy and loss. So a metric does not own one running
state: it creates as many as the trainer asks for (one per phase) and accumulates into
whichever it was last given,

.. code-block:: python

    states = {phase: metric.create_state() for phase in ("train", "valid")}
    metric.set_state(states["train"])   # then update() during a training slice
    metric.set_state(states["valid"])   # then update() during a validation slice

as in labml_helpers' ``StateModule``. :meth:`StateModule.on_epoch_start` and
:meth:`StateModule.on_epoch_end` bracket each phase's epoch; a :class:`Metric` resets
its current state at the start of an epoch.

Metrics compute values; they do not log them. The running sums are tensors on the
device of the updates, so an update never waits for the device (no ``.item()``): the
host synchronises only when :meth:`Metric.compute`'s value is read to be reported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import torch

#: The type of a metric's state.
S = TypeVar("S")


class StateModule(ABC):
    """Something that keeps separate states (one per phase) and hears of epoch boundaries."""

    @abstractmethod
    def create_state(self) -> Any:
        """A new, empty state."""

    @abstractmethod
    def set_state(self, state: Any) -> None:
        """Make ``state`` (from :meth:`create_state`) the one that later calls read and update."""

    @abstractmethod
    def on_epoch_start(self) -> None:
        """Called with the phase's state set, before the phase's first batch of an epoch."""

    @abstractmethod
    def on_epoch_end(self) -> None:
        """Called with the phase's state set, after the phase's last batch of an epoch."""


class Metric(StateModule, Generic[S]):
    """A value accumulated over the batches of an epoch, kept separately per phase.

    A subclass implements :meth:`create_state`, :meth:`update`, :meth:`compute` and
    :meth:`reset`. A new metric holds a state of its own, so it also works without a
    trainer: ``metric.update(...)`` over the batches, then ``metric.compute()``.
    """

    def __init__(self) -> None:
        #: The current state: the one :meth:`update` accumulates into.
        self.state: S = self.create_state()

    @abstractmethod
    def create_state(self) -> S:
        """A new state with nothing counted."""

    def set_state(self, state: S) -> None:
        """Accumulate into ``state`` from now on; it must come from this metric's :meth:`create_state`."""
        if type(state) is not type(self.state):
            raise TypeError(f"{type(self).__name__}.set_state: got a {type(state).__name__}; expected a "
                            f"{type(self.state).__name__} from {type(self).__name__}.create_state()")
        self.state = state

    @abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Add one batch to the current state, without synchronising with the device."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Same as :meth:`update`."""
        self.update(*args, **kwargs)

    @abstractmethod
    def compute(self) -> torch.Tensor:
        """The value over everything counted in the current state, as a 0-d tensor."""

    @abstractmethod
    def reset(self) -> None:
        """Empty the current state in place (other holders of the state object see it emptied)."""

    def on_epoch_start(self) -> None:
        """Reset the current state: each epoch of each phase is counted afresh."""
        self.reset()

    def on_epoch_end(self) -> None:
        """Nothing: the trainer reads :meth:`compute` to report the epoch's value."""
