"""Hooks and callbacks: the same names overridden by a subclass and given as callbacks; early stopping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.train import HOOKS, Callback, EarlyStopping, Trainer, latest_checkpoint, load_checkpoint

from .test_trainer import batches, mlp


class Recording(Trainer):
    """Records every hook of its own, with the phase and step it came at."""

    def __init__(self, *args, **kwargs):
        self.events = []
        super().__init__(*args, **kwargs)

    def on_run_start(self):
        self.events.append(("run_start", self.global_step))

    def on_epoch_start(self):
        self.events.append(("epoch_start", self.epoch))

    def on_optimizer_step(self):
        self.events.append(("optimizer_step", self.global_step))

    def sample(self):
        self.events.append(("sample", self.global_step))

    def on_validation_end(self):
        self.events.append(("validation_end", self.global_step))

    def on_epoch_end(self):
        self.events.append(("epoch_end", self.epoch))

    def on_run_end(self):
        self.events.append(("run_end", self.global_step))


class RecordingCallback(Callback):
    def __init__(self, events):
        self.events = events

    def __getattribute__(self, name):
        if name in HOOKS:
            return lambda trainer: self.events.append(("callback", name, trainer.global_step))
        return super().__getattribute__(name)


def test_hooks_come_in_order_on_the_trainer_then_on_each_callback():
    model = mlp()
    events = []
    trainer = Recording(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(4, 8, 0), batches(2, 8, 1),
                        loss_fn=nn.functional.cross_entropy, inner_iterations=2, console=False,
                        callbacks=[RecordingCallback(events)])
    trainer.run()
    assert trainer.events == [("run_start", 0), ("epoch_start", 0), ("optimizer_step", 1), ("optimizer_step", 2),
                              ("sample", 2), ("validation_end", 2), ("optimizer_step", 3), ("optimizer_step", 4),
                              ("sample", 4), ("validation_end", 4), ("epoch_end", 1), ("run_end", 4)]
    # The callback saw the same hooks at the same optimizer steps (epoch_end after the epoch's 4 steps).
    assert [(name.removeprefix("on_"), step) for _, name, step in events] == [
        ("run_start", 0), ("epoch_start", 0), ("optimizer_step", 1), ("optimizer_step", 2), ("sample", 2),
        ("validation_end", 2), ("optimizer_step", 3), ("optimizer_step", 4), ("sample", 4), ("validation_end", 4),
        ("epoch_end", 4), ("run_end", 4)]


def test_a_callback_needs_a_hook():
    model = mlp()
    with pytest.raises(TypeError, match=r"callback 42 has none of the hooks on_run_start"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(2, 8, 0), callbacks=[42])


def test_early_stopping_stops_after_patience_validations_without_improvement(tmp_path):
    model = mlp()
    # A learning rate of 0: the validation loss never improves on its first value.
    stopper = EarlyStopping("valid.loss", patience=2)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), batches(4, 8, 0), batches(2, 8, 1),
                      loss_fn=nn.functional.cross_entropy, epochs=10, inner_iterations=2, callbacks=[stopper],
                      run=tmp_path, console=False)
    assert trainer.run() == "finished"
    # Validations at steps 2 (the best), 4 and 6: the third is the second without improvement.
    assert trainer.global_step == 6 and stopper.bad == 2
    state, _ = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"), mlp())
    assert state["parts"]["callbacks"] == {0: {"best": stopper.best, "bad": 2}}


def test_early_stopping_arguments_and_unknown_metric():
    with pytest.raises(ValueError, match=r"EarlyStopping: mode='down'; expected 'min' or 'max'"):
        EarlyStopping(mode="down")
    with pytest.raises(ValueError, match=r"EarlyStopping: patience=0 is out of range; expected patience >= 1"):
        EarlyStopping(patience=0)
    model = mlp()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(2, 8, 0), batches(2, 8, 1),
                      loss_fn=nn.functional.cross_entropy, callbacks=[EarlyStopping("valid.acuracy")], console=False)
    with pytest.raises(KeyError, match=r"tracker has no values for 'valid.acuracy'; it has: .*valid.loss"):
        trainer.run()
