"""The training loop: slicing, accumulation, modes, schedules, per-phase metrics, run status."""

from __future__ import annotations

import io
import os
import re
import signal
import warnings

import pytest
import torch
from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
from rich.console import Console
from torch import nn

from cadence.metrics import Accuracy, ConfusionMatrix, Recall
from cadence.optim import Adam
from cadence.track import RunContext, RunStore, Tracker
from cadence.train import DeviceError, Trainer, latest_checkpoint, list_checkpoints, load_checkpoint


def batches(n: int, size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 6, generator=gen), torch.randint(0, 3, (size,), generator=gen)) for _ in range(n)]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


class Recorder(Trainer):
    """Records (phase, idx, total, is_optimize) of every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def step(self, batch, batch_index):
        phase = "train" if self.mode.is_train else "valid"
        self.calls.append((self.epoch, phase, batch_index.idx, batch_index.total, self.mode.is_optimize))
        return super().step(batch, batch_index)


def test_inner_iterations_alternate_slices_that_end_at_the_loaders_end():
    model = mlp()
    trainer = Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(10, 4, 0), batches(7, 4, 1),
                       loss_fn=nn.functional.cross_entropy, epochs=2, inner_iterations=3)
    trainer.run()
    epoch0 = [(phase, idx) for epoch, phase, idx, total, _ in trainer.calls if epoch == 0]
    assert epoch0 == ([("train", i) for i in range(0, 3)] + [("valid", i) for i in range(0, 2)]
                      + [("train", i) for i in range(3, 6)] + [("valid", i) for i in range(2, 4)]
                      + [("train", i) for i in range(6, 10)] + [("valid", i) for i in range(4, 7)])
    assert {(phase, total) for _, phase, _, total, _ in trainer.calls} == {("train", 10), ("valid", 7)}
    assert len(trainer.calls) == 2 * 17 and trainer.global_step == 20


def test_is_optimize_marks_the_batch_before_each_optimizer_step():
    model = mlp()
    trainer = Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(5, 4, 0),
                       loss_fn=nn.functional.cross_entropy, update_batches=2)
    trainer.run()
    assert [call[4] for call in trainer.calls] == [False, True, False, True, True]


def test_metrics_keep_one_state_per_phase_equal_to_direct_computation():
    model = mlp()
    train_data, valid_data = batches(6, 8, 0), batches(5, 7, 1)
    store_dir_tracker = Tracker()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), train_data, valid_data,
                      loss_fn=nn.functional.cross_entropy, metrics={"accuracy": Accuracy()},
                      inner_iterations=2, run=RunContext(store_dir_tracker), console=False)
    trainer.run()

    def direct(data):
        with torch.no_grad():
            correct = sum((model(x).argmax(-1) == y).sum().item() for x, y in data)
            loss = sum(nn.functional.cross_entropy(model(x), y, reduction="sum").item() for x, y in data)
        n = sum(len(y) for _, y in data)
        return correct / n, loss / n

    train_acc, _ = direct(train_data)
    valid_acc, valid_loss = direct(valid_data)
    assert store_dir_tracker.latest("train.accuracy") == pytest.approx(train_acc)
    assert store_dir_tracker.latest("valid.accuracy") == pytest.approx(valid_acc)
    assert store_dir_tracker.latest("valid.loss") == pytest.approx(valid_loss, rel=1e-6)
    assert train_acc != valid_acc


def test_checkpoints_at_epoch_ends_hold_model_optimizer_and_config(tmp_path):
    model = mlp()
    optimizer = Adam(model.parameters())
    trainer = Trainer(model, optimizer, batches(4, 8, 0), loss_fn=nn.functional.cross_entropy, epochs=2,
                      run=RunContext(run_dir=tmp_path, config={"seed": 0}, experiment="unit"), console=False)
    trainer.run()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-4", "step-8"]
    restored = mlp()
    state, meta = load_checkpoint(tmp_path / "checkpoints" / "step-8", restored, experiment="unit")
    assert meta["epoch"] == 2 and meta["step"] == 8 and state["config"] == {"seed": 0}
    assert state["parts"]["optimizer_step"]["taken"] == 8 and state["parts"]["position"]["epoch"] == 2
    for p, q in zip(model.parameters(), restored.parameters()):
        assert torch.equal(p, q)
    fresh = Adam(restored.parameters())
    # The optimizer's state is keyed by parameter names (torch.distributed.checkpoint's form), so that it restores
    # into any layout of the model: whole, data parallel or sharded.
    assert sorted(state["optimizer"]["state"]) == sorted(name for name, _ in restored.named_parameters())
    set_optimizer_state_dict(restored, fresh, state["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == 8


class Exploding(Trainer):
    def __init__(self, *args, error: BaseException, at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.error, self.at, self.count = error, at, 0

    def step(self, batch, batch_index):
        self.count += 1
        if self.count == self.at:
            raise self.error
        return super().step(batch, batch_index)


@pytest.mark.parametrize("error, status", [(ValueError("loss went NaN at batch 3"), "failed"),
                                           (KeyboardInterrupt(), "interrupted")])


def test_a_failing_step_marks_the_run_and_reraises(tmp_path, error, status):
    model = mlp()
    with RunStore(tmp_path / "runs") as store:
        run_id = store.create_run("unit", {"seed": 0})
        trainer = Exploding(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(4, 8, 0),
                            loss_fn=nn.functional.cross_entropy, epochs=3, error=error, at=6,
                            run=RunContext(Tracker(store, run_id), store.run_dir(run_id)), console=False)
        with pytest.raises(type(error)):
            trainer.run()
        run = store.get_run(run_id)
    assert run.status == status
    if status == "failed":
        assert "ValueError: loss went NaN at batch 3" in run.error
    # The checkpoint of the completed first epoch is intact, and the only one.
    assert [p.name for p in list_checkpoints(trainer.run_dir / "checkpoints")] == ["step-4"]
    assert load_checkpoint(trainer.run_dir / "checkpoints" / "step-4", mlp())[1]["epoch"] == 1


def test_a_finished_run_is_recorded_with_its_metrics(tmp_path):
    model = mlp()
    with RunStore(tmp_path / "runs") as store:
        run_id = store.create_run("unit", {})
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(4, 8, 0), batches(2, 8, 1),
                loss_fn=nn.functional.cross_entropy, run=RunContext(Tracker(store, run_id)), console=False).run()
        run = store.get_run(run_id)
        steps = store.values(run_id, "train.loss")[0].tolist()
    assert run.status == "finished" and run.end_time is not None
    assert steps == [1, 2, 3, 4] and "valid.loss" in run.last_metrics


@pytest.mark.parametrize("options, planned", [({"epochs": 2}, 6), ({"epochs": 3, "max_steps": 4}, 4),
                                              ({"epochs": 2, "update_batches": 1}, 10)])
def test_a_run_tells_the_store_the_steps_it_plans_for_its_time_left(tmp_path, options, planned):
    model = mlp()
    with RunStore(tmp_path / "runs") as store:
        run_id = store.create_run("unit", {})
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(5, 8, 0), batches(2, 8, 1),
                          loss_fn=nn.functional.cross_entropy, run=RunContext(Tracker(store, run_id)), console=False,
                          **{"update_batches": 2, **options})
        trainer.run()
        run = store.get_run(run_id)
    assert run.planned_steps == planned == trainer.global_step  # windows of 2 of 5 batches: 3 steps an epoch


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, r"Trainer: epochs=0 is out of range; expected epochs >= 1"),
    ({"inner_iterations": 1.5}, r"Trainer: inner_iterations=1.5 is a float; expected an integer"),
    ({"update_batches": -2}, r"OptimizerStep: update_batches=-2 is out of range; expected update_batches >= 1"),
    ({"keep_last": 0}, r"Checkpointer: keep_last=0 is out of range; expected keep_last >= 1"),
    ({"grad_clip_norm": 0.0}, r"OptimizerStep: grad_clip_norm=0.0 is out of range; expected grad_clip_norm > 0"),
])


def test_bad_arguments_fail_clearly(kwargs, message):
    model = mlp()
    with pytest.raises((ValueError, TypeError), match=message):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(2, 4, 0), **kwargs)


def test_a_loader_without_len_and_a_missing_loss_fail_clearly():
    model = mlp()
    with pytest.raises(TypeError, match=r"train_loader of type generator has no len\(\)"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), (b for b in batches(2, 4, 0)))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(2, 4, 0))
    with pytest.raises(TypeError, match="no loss_fn given"):
        trainer.run()


# -- precision, devices, the console ------------------------------------------------------------


def test_bf16_autocast_trains_on_the_cpu_with_float32_weights():
    model = mlp()
    dtypes = []
    model.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    with warnings.catch_warnings():  # forced where it is slow: said so (test_precision.py)
        warnings.filterwarnings("ignore", "precision='bf16'", RuntimeWarning)
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(4, 8, 0),
                          loss_fn=nn.functional.cross_entropy, precision="bf16", console=False)
    trainer.run()
    assert set(dtypes) == {torch.bfloat16} and trainer.global_step == 4
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_device_the_machine_lacks_fails_at_construction_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = mlp()
    with pytest.raises(DeviceError, match=r"^device='cuda': this machine has no CUDA device; it has: cpu"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(2, 8, 0), device="cuda")


def test_progress_shows_on_the_console_by_default(capsys):
    model = mlp()
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(4, 8, 0), batches(2, 8, 1),
            loss_fn=nn.functional.cross_entropy).run()
    err = capsys.readouterr().err
    assert "epoch 1 train 4/4" in err and "epoch 1 valid 2/2" in err and "run finished" in err
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(4, 8, 0),
            loss_fn=nn.functional.cross_entropy, console=False).run()
    assert capsys.readouterr().err == ""


# -- the loss's weight, validation every N steps, checkpoints every N steps ----------------------------


def test_the_mean_loss_weights_each_batch_by_the_count_the_step_returns():
    # Text batches [seq_len, batch]: a batch's loss is the mean over its seq_len * batch tokens.
    torch.manual_seed(0)
    embed = nn.Embedding(5, 5)
    sizes = [(8, 4), (8, 4), (3, 4)]
    data = [(torch.randint(0, 5, size), torch.randint(0, 5, size)) for size in sizes]

    class Text(Trainer):
        def step(self, batch, batch_index):
            x, y = batch
            return nn.functional.cross_entropy(self.model(x).flatten(0, 1), y.flatten()), y.numel()

    tracker = Tracker()
    Text(embed, torch.optim.SGD(embed.parameters(), lr=0.0), data, data, run=RunContext(tracker), console=False).run()
    with torch.no_grad():
        total = sum(nn.functional.cross_entropy(embed(x).flatten(0, 1), y.flatten(), reduction="sum").item()
                    for x, y in data)
    assert tracker.latest("valid.loss") == pytest.approx(total / sum(a * b for a, b in sizes), rel=1e-6)


def test_valid_every_validates_every_n_steps_whatever_the_epoch_length():
    model = mlp()
    events = []

    class Watch:
        def on_validation_end(self, trainer):
            events.append((trainer.epoch, trainer.global_step))

    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(5, 8, 0), batches(2, 8, 1),
            loss_fn=nn.functional.cross_entropy, epochs=2, valid_every=3, callbacks=[Watch()], console=False).run()
    assert events == [(0, 3), (1, 6), (1, 9)]
    with pytest.raises(ValueError, match=r"valid_every=3 and inner_iterations=2; validate by one of them"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(5, 8, 0), valid_every=3,
                inner_iterations=2)


def test_checkpoints_every_n_steps_keep_the_last_and_the_best(tmp_path):
    model = mlp()
    losses = {}

    class Watch:
        def on_validation_end(self, trainer):
            losses[trainer.global_step] = trainer.latest("valid.loss")

    # A large learning rate: the validation loss goes up and down, so the best is not simply the newest.
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=3.0), batches(12, 8, 0), batches(2, 8, 1),
                      loss_fn=nn.functional.cross_entropy, valid_every=2, checkpoint_every=2, keep_last=2,
                      keep_best=1, best_metric="valid.loss", run=tmp_path, callbacks=[Watch()], console=False)
    trainer.run()
    best = min(losses, key=losses.get)
    assert best < 10  # so that the best is kept for being the best
    assert sorted(losses) == [2, 4, 6, 8, 10, 12]
    kept = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert kept == [f"step-{s}" for s in sorted({best, 10, 12})]
    for step in sorted({best, 10, 12}):
        _, meta = load_checkpoint(tmp_path / "checkpoints" / f"step-{step}", mlp())
        assert meta["metrics"]["valid.loss"] == losses[step]


def test_a_metric_of_several_values_is_tracked_per_element():
    model = mlp()
    tracker = Tracker()
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(4, 8, 0), batches(2, 8, 1),
            loss_fn=nn.functional.cross_entropy, run=RunContext(tracker), console=False,
            metrics={"recall": Recall(3, average=None), "confusion": ConfusionMatrix(3)}).run()
    keys = set(tracker.keys())
    assert {"valid.recall[0]", "valid.recall[1]", "valid.recall[2]"} <= keys
    assert {f"valid.confusion[{i}][{j}]" for i in range(3) for j in range(3)} <= keys
    assert sum(tracker.latest(f"valid.confusion[{i}][{j}]") for i in range(3) for j in range(3)) == 16


def test_more_inner_iterations_than_batches_visits_each_batch_once_and_shows_no_empty_slices():
    out = io.StringIO()
    model = mlp()
    trainer = Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(2, 4, 0), batches(3, 4, 1),
                       loss_fn=nn.functional.cross_entropy, epochs=2, inner_iterations=5,
                       console=Console(file=out, width=200))
    trainer.run()
    for epoch in (0, 1):
        assert [(phase, idx) for e, phase, idx, _, _ in trainer.calls if e == epoch] == [
            ("valid", 0), ("train", 0), ("valid", 1), ("train", 1), ("valid", 2)]
    assert trainer.global_step == 4
    lines = out.getvalue().splitlines()
    # Each slice shows its position in the epoch's phase.
    assert [line.split(" ")[3] for line in lines if line.startswith("epoch 1 train")] == ["1/2", "2/2"]
    assert [line.split(" ")[3] for line in lines if line.startswith("epoch 1 valid")] == ["1/3", "2/3", "3/3"]
    assert not [line for line in lines if " 0/0" in line], lines


class Probe(Trainer):
    """Records, for each step, the phase, whether the model is in training mode and whether autograd records."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def step(self, batch, batch_index):
        loss, count = super().step(batch, batch_index)
        self.seen.append((self.mode.is_train, self.model.training, torch.is_grad_enabled(), loss.requires_grad))
        return loss, count


def batch_norm_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 3))


def test_validation_runs_in_eval_mode_without_autograd_and_training_resumes_in_train_mode():
    data, valid = batches(4, 8, 0), batches(3, 8, 1)
    model = batch_norm_mlp()
    trainer = Probe(model, torch.optim.SGD(model.parameters(), lr=0.0), data, valid,
                    loss_fn=nn.functional.cross_entropy, inner_iterations=2)
    trainer.run()
    assert trainer.seen == [(True, True, True, True)] * 2 + [(False, False, False, False)] * 1 \
        + [(True, True, True, True)] * 2 + [(False, False, False, False)] * 2
    # Validation left the batch statistics alone: they are those of training alone.
    alone = batch_norm_mlp()
    Trainer(alone, torch.optim.SGD(alone.parameters(), lr=0.0), data, loss_fn=nn.functional.cross_entropy).run()
    assert torch.equal(model[1].running_mean, alone[1].running_mean)
    assert torch.equal(model[1].running_var, alone[1].running_var)
    assert int(model[1].num_batches_tracked) == len(data)


class Shortfall(list):
    """Batches whose ``len()`` promises two more than they yield."""

    def __len__(self) -> int:
        return super().__len__() + 2


@pytest.mark.parametrize("phase", ["train", "valid"])
def test_a_loader_shorter_than_its_len_fails_the_run_with_both_counts(tmp_path, phase):
    loaders = {"train": batches(4, 8, 0), "valid": batches(3, 8, 1)}
    loaders[phase] = Shortfall(loaders[phase])
    model = mlp()
    with RunStore(tmp_path) as store:
        run_id = store.create_run("unit", {})
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loaders["train"], loaders["valid"],
                          loss_fn=nn.functional.cross_entropy, run=RunContext(Tracker(store, run_id)), console=False)
        n = len(list(iter(loaders[phase])))
        message = f"the {phase} loader stopped after {n} batches but len() said {n + 2}"
        with pytest.raises(RuntimeError, match=re.escape(message)):
            trainer.run()
        run = store.get_run(run_id)
    assert run.status == "failed" and message in run.error


# -- errors of a step ---------------------------------------------------------------------------


@pytest.mark.parametrize("returned, message", [
    (lambda loss: loss.expand(3), r"Trainer.step returned a tensor of shape \[3\]; expected the batch's mean loss as a "
                                  r"0-d tensor, or \(loss, count\)"),
    (lambda loss: 0.5, r"Trainer.step returned float; expected the batch's mean loss as a 0-d tensor"),
    (lambda loss: loss.detach(), r"Trainer.step returned a loss that does not require grad in a training phase"),
])


def test_a_step_returning_something_else_than_a_differentiable_scalar_loss_fails_clearly(returned, message):
    class Wrong(Trainer):
        def step(self, batch, batch_index):
            x, y = batch
            return returned(nn.functional.cross_entropy(self.model(x), y))

    model = mlp()
    with pytest.raises(TypeError, match=message):
        Wrong(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(2, 4, 0), console=False).run()


# -- max_steps, stop(), evaluate(), latest() ------------------------------------------------------


def full_pass(model: nn.Module, data) -> tuple[float, float]:
    """The mean loss and accuracy of ``model`` over every sample of ``data``."""
    with torch.no_grad():
        loss = sum(nn.functional.cross_entropy(model(x), y, reduction="sum").item() for x, y in data)
        correct = sum((model(x).argmax(-1) == y).sum().item() for x, y in data)
    n = sum(len(y) for _, y in data)
    return loss / n, correct / n


def test_max_steps_stops_mid_epoch_after_a_whole_validation_pass_of_the_final_model(tmp_path):
    model, valid = mlp(), batches(3, 8, 1)
    with RunStore(tmp_path / "runs") as store:
        run_id = store.create_run("unit", {}, provenance={})
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), batches(5, 8, 0), valid,
                          loss_fn=nn.functional.cross_entropy, metrics={"accuracy": Accuracy()}, epochs=10,
                          max_steps=7, run=RunContext(Tracker(store, run_id), store.run_dir(run_id)), console=False)
        assert trainer.run() == "finished"
        steps, losses = store.values(run_id, "valid.loss")
    assert trainer.global_step == 7 and trainer.epoch == 1 and trainer.position.done["train"] == 2
    # Epoch 1's validation at step 5, then the final model's whole pass at step 7.
    assert steps.tolist() == [5, 7]
    loss, accuracy = full_pass(model, valid)
    assert losses[-1] == pytest.approx(loss, rel=1e-6) and trainer.latest("valid.accuracy") == pytest.approx(accuracy)
    assert latest_checkpoint(tmp_path / "runs" / run_id).name == "step-7"


def test_a_stop_never_reports_a_partial_validation_pass_as_a_whole_one():
    """stop() from on_optimizer_step, the step a valid_every pass follows: the pass runs whole, and the callbacks
    acting on it see the whole pass's loss."""
    model, valid = mlp(), batches(4, 8, 1)
    seen = []

    class StopAt4:
        def on_optimizer_step(self, trainer):
            if trainer.global_step == 4:
                trainer.stop("enough")

        def on_validation_end(self, trainer):
            seen.append((trainer.global_step, trainer.position.done["valid"], trainer.latest("valid.loss")))

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), batches(10, 8, 0), valid,
                      loss_fn=nn.functional.cross_entropy, valid_every=2, callbacks=[StopAt4()], console=False)
    assert trainer.run() == "finished" and trainer.global_step == 4
    assert [(step, done) for step, done, _ in seen] == [(2, 4), (4, 4)]
    assert seen[-1][2] == pytest.approx(full_pass(model, valid)[0], rel=1e-6)


def test_evaluate_gives_the_metrics_of_any_loader_and_tracks_them(tmp_path):
    model = mlp()
    test = batches(3, 7, 9)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), batches(4, 8, 0), batches(2, 8, 1),
                      loss_fn=nn.functional.cross_entropy, metrics={"accuracy": Accuracy()}, run=tmp_path,
                      console=False)
    before = trainer.evaluate(test)  # before run(), as after a resume
    trainer.run()
    model.train()
    after = trainer.evaluate(test, phase="test")
    loss, accuracy = full_pass(model, test)
    assert set(after) == {"loss", "accuracy"} and after["loss"] == pytest.approx(loss, rel=1e-6)
    assert after["accuracy"] == pytest.approx(accuracy) and before["loss"] != after["loss"]
    assert trainer.latest("test.loss") == after["loss"] and model.training  # tracked; the model's mode given back
    # The training's own validation metrics were left alone.
    assert trainer.latest("valid.loss") == pytest.approx(full_pass(model, batches(2, 8, 1))[0], rel=1e-6)


def test_latest_answers_for_every_tracked_key():
    model = mlp()
    data = batches(3, 8, 0)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), data, loss_fn=nn.functional.cross_entropy,
                      console=False)
    trainer.run()
    with torch.no_grad():
        assert trainer.latest("train.loss") == pytest.approx(nn.functional.cross_entropy(model(data[-1][0]),
                                                                                          data[-1][1]).item())
    assert trainer.latest("train.lr") == 0.0 and trainer.latest("train.samples") == 24
    with pytest.raises(KeyError, match=r"tracker has no values for 'train.los' \(did you mean 'train.loss'\?\)"):
        trainer.latest("train.los")


# -- state a step carries, resumed ---------------------------------------------------------------


class Carrying(Trainer):
    """A step that carries state across batches: a running sum of its inputs, which shifts the model's input."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_state("running", torch.zeros(6))

    def step(self, batch, batch_index):
        x, y = batch
        self.running = 0.9 * self.running + 0.1 * x.mean(0)
        return nn.functional.cross_entropy(self.model(x + self.running), y)


def carrying_run(run_dir, stop_at: int = 0, resume: bool = False) -> Carrying:
    class StopAt:
        def on_optimizer_step(self, trainer):
            if trainer.global_step == stop_at:
                trainer.stop("stopped for the test")

    model = mlp()
    trainer = Carrying(model, torch.optim.SGD(model.parameters(), lr=0.5), batches(6, 8, 0), batches(2, 8, 1),
                       loss_fn=nn.functional.cross_entropy, epochs=2, run=run_dir, console=False,
                       callbacks=[StopAt()] if stop_at else ())
    if resume:
        trainer.resume(run_dir)
    trainer.run()
    return trainer


def test_registered_state_is_saved_and_restored_so_that_a_resumed_run_is_exact(tmp_path):
    straight = carrying_run(tmp_path / "straight")
    stopped = carrying_run(tmp_path / "stopped", stop_at=4)  # mid-epoch
    assert stopped.global_step == 4 and not torch.equal(stopped.running, straight.running)
    resumed = carrying_run(tmp_path / "stopped", resume=True)
    assert resumed.global_step == 12 and torch.equal(resumed.running, straight.running)
    for p, q in zip(straight.raw_model.parameters(), resumed.raw_model.parameters()):
        assert torch.equal(p, q)


def test_registering_a_trainer_attribute_is_refused():
    model = mlp()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(2, 8, 0), console=False)
    for name in ("model", "global_step", "not an identifier"):
        with pytest.raises(ValueError, match=rf"Trainer.register_state: {name!r} is not a free attribute name"):
            trainer.register_state(name, 0)


def test_a_mid_epoch_resume_with_a_plain_list_loader_skips_the_batches_done(tmp_path):
    """A loader without a state of its own (a list): the resumed epoch starts after the batches already done."""
    def run(run_dir, stop_at=0, resume=False):
        seen = []

        class Watch:
            def on_optimizer_step(self, trainer):
                seen.append(trainer.batch_index.idx)
                if trainer.global_step == stop_at:
                    trainer.stop("stopped for the test")

        model = mlp()
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), batches(7, 8, 0),
                          loss_fn=nn.functional.cross_entropy, epochs=2, run=run_dir, console=False,
                          callbacks=[Watch()])
        if resume:
            trainer.resume(run_dir)
        trainer.run()
        return model, seen

    straight, order = run(tmp_path / "straight")
    run(tmp_path / "stopped", stop_at=3)
    resumed, rest = run(tmp_path / "stopped", resume=True)
    assert order == list(range(7)) * 2 and rest == list(range(3, 7)) + list(range(7))
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_a_run_interrupted_during_validation_resumes_within_it_and_reports_the_whole_pass(tmp_path):
    """The first Ctrl+C in the middle of a validation slice: no partial pass is reported, the checkpoint is of the
    middle of the pass, and the resumed run reports the pass whole, as the run never stopped does."""
    def run(run_dir, interrupt=False, resume=False):
        class CtrlCInValidation(Trainer):
            def step(self, batch, batch_index):
                if interrupt and not self.mode.is_train and self.epoch == 1 and batch_index.idx == 1:
                    os.kill(os.getpid(), signal.SIGINT)
                return super().step(batch, batch_index)

        model = mlp()
        validations = []

        class Watch:
            def on_validation_end(self, trainer):
                validations.append((trainer.global_step, trainer.latest("valid.loss")))

        trainer = CtrlCInValidation(model, torch.optim.SGD(model.parameters(), lr=0.5), batches(4, 8, 0),
                                    batches(4, 8, 1), loss_fn=nn.functional.cross_entropy, epochs=3, run=run_dir,
                                    console=False, callbacks=[Watch()])
        if resume:
            trainer.resume(run_dir)
        return trainer, trainer.run(), validations

    straight, _, all_validations = run(tmp_path / "straight")
    stopped, status, before = run(tmp_path / "stopped", interrupt=True)
    assert status == "interrupted" and stopped.position.validating is False and stopped.position.done["valid"] == 2
    assert before == all_validations[:1]  # epoch 2's pass, cut, was not reported: neither to the hooks
    assert stopped.latest("valid.loss") == before[-1][1]  # nor to the tracker
    resumed, status, after = run(tmp_path / "stopped", resume=True)
    assert status == "finished" and after == all_validations[1:]
    for p, q in zip(straight.raw_model.parameters(), resumed.raw_model.parameters()):
        assert torch.equal(p, q)


# -- hooks and what they see -----------------------------------------------------------------------


def test_hooks_see_the_batch_that_ended_each_window():
    model = mlp()
    seen = []

    class Watch:
        def on_optimizer_step(self, trainer):
            seen.append((trainer.global_step, trainer.batch_index.idx, trainer.batch_index.total))

    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(7, 4, 0), loss_fn=nn.functional.cross_entropy,
            update_batches=3, callbacks=[Watch()], console=False).run()
    assert seen == [(1, 2, 7), (2, 5, 7), (3, 6, 7)]


@pytest.mark.slow
def test_compile_trains_as_the_eager_model_does():
    eager, compiled = mlp(), mlp()
    for model, compile in ((eager, False), (compiled, True)):
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), batches(6, 8, 0),
                          loss_fn=nn.functional.cross_entropy, compile=compile, console=False)
        trainer.run()
        assert (trainer.model is not trainer.raw_model) == compile
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
