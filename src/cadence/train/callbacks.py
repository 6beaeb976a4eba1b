"""Callbacks: reusable pieces of a training run, with the trainer's own hook names.

The trainer's hooks are its methods (a subclass overrides them, labml's way):

* ``on_run_start()`` / ``on_run_end()``: around :meth:`Trainer.run` (a resumed run starts again);
* ``on_epoch_start()`` / ``on_epoch_end()``: around each epoch;
* ``on_optimizer_step()``: after each optimizer step (``trainer.global_step`` counts it);
* ``on_validation_end()``: after each validation pass or slice, its values reported;
* ``sample()``: at each switch from training to validation (to generate text, say).

A callback (Lightning's and Keras' way) is any object with some of these methods, each
taking the trainer: ``on_epoch_end(self, trainer)``. Pass them as ``callbacks=[...]``; the
trainer calls each hook on itself first, then on every callback that has it, in order. A
callback with ``state_dict()`` / ``load_state_dict()`` is saved in checkpoints and restored
on resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cadence.checks import check_number

if TYPE_CHECKING:
    from cadence.train.trainer import Trainer

__all__ = ["HOOKS", "Callback", "EarlyStopping", "Hooks", "TrainerHooks"]

#: The hook names, in the order a run meets them.
HOOKS = ("on_run_start", "on_epoch_start", "on_optimizer_step", "sample", "on_validation_end", "on_epoch_end",
         "on_run_end")


class TrainerHooks:
    """The trainer's own hooks, each doing nothing: a subclass of :class:`~cadence.train.Trainer` overrides those it
    needs."""

    def on_run_start(self) -> None:
        """Before the first step of :meth:`run`."""

    def on_run_end(self) -> None:
        """After the run ended, finished or interrupted."""

    def on_epoch_start(self) -> None:
        """Before the first batch of an epoch."""

    def on_epoch_end(self) -> None:
        """After the last batch of an epoch."""

    def on_optimizer_step(self) -> None:
        """After each optimizer step (:attr:`batch_index` is the batch that ended its window)."""

    def on_validation_end(self) -> None:
        """After each validation pass or slice, its values reported."""

    def sample(self) -> None:
        """At each switch from training to validation: generate text, show predictions."""


class Hooks:
    """The calls each hook makes in a run of ``trainer``: its own method when its class overrides ``base``'s (a no-op,
    :class:`TrainerHooks`), then each callback's that has it, in order. ``hooks("on_epoch_end")`` makes them."""

    def __init__(self, trainer: Trainer, base: type, callbacks: Sequence[Any]):
        for callback in callbacks:
            if not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
                raise TypeError(f"Trainer: callback {callback!r} has none of the hooks {', '.join(HOOKS)}")
        self.calls: dict[str, list[Callable[[], None]]] = {}
        for hook in HOOKS:
            calls = [getattr(trainer, hook)] if getattr(type(trainer), hook) is not getattr(base, hook) else []
            calls += [lambda method=getattr(callback, hook): method(trainer)
                      for callback in callbacks if callable(getattr(callback, hook, None))]
            self.calls[hook] = calls

    def __call__(self, hook: str) -> None:
        for call in self.calls[hook]:
            call()


class Callback:
    """An optional base class: every hook does nothing, and there is no state to save."""

    def on_run_start(self, trainer: Trainer) -> None:
        """Before the first step of :meth:`Trainer.run`."""

    def on_run_end(self, trainer: Trainer) -> None:
        """After the run ended, finished or interrupted."""

    def on_epoch_start(self, trainer: Trainer) -> None:
        """Before the first batch of an epoch."""

    def on_epoch_end(self, trainer: Trainer) -> None:
        """After the last batch of an epoch."""

    def on_optimizer_step(self, trainer: Trainer) -> None:
        """After each optimizer step."""

    def on_validation_end(self, trainer: Trainer) -> None:
        """After each validation pass or slice, once its values are reported."""

    def sample(self, trainer: Trainer) -> None:
        """At each switch from training to validation."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class EarlyStopping(Callback):
    """Stop the run when ``metric`` has not improved for ``patience`` validations.

    * ``metric``: a reported key (``"valid.loss"``, ``"valid.accuracy"``),
    * ``mode``: ``"min"`` (lower is better) or ``"max"``,
    * ``patience``: validations without improvement before the run stops,
    * ``min_delta``: how much better than the best a value must be to count as an improvement.

    The run then ends ``finished`` after a checkpoint, with a line saying why.
    """

    def __init__(self, metric: str = "valid.loss", patience: int = 3, mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode={mode!r}; expected 'min' or 'max'")
        self.metric = metric
        self.patience = check_number("EarlyStopping", "patience", patience, low=1, integer=True)
        self.mode = mode
        self.min_delta = check_number("EarlyStopping", "min_delta", min_delta, low=0)
        self.best = math.inf if mode == "min" else -math.inf
        self.bad = 0

    def on_validation_end(self, trainer: Trainer) -> None:
        """Compare the metric's latest value with the best so far; stop the run after ``patience`` misses."""
        value = trainer.latest(self.metric)
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            trainer.stop(f"early stopping: {self.metric} has not improved on {self.best:.6g} for {self.bad} "
                         f"validations")

    def state_dict(self) -> dict[str, Any]:
        """The best value and the validations since it."""
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best, self.bad = float(state["best"]), int(state["bad"])
