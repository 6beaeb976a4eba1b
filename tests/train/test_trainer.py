"""The training loop: slicing, accumulation, modes, schedules, per-phase metrics, run status."""

from __future__ import annotations

import io
import re

import pytest
import torch
from rich.console import Console
from torch import nn

import cadence.train.optimizer_step as optimizer_step_module
from cadence.metrics import Accuracy, ConfusionMatrix, Recall
from cadence.optim import Adam
from cadence.schedule import Piecewise
from cadence.track import RunContext, RunStore, Tracker
from cadence.train import DeviceError, NonFiniteError, Trainer, list_checkpoints, load_checkpoint


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


def _train_sgd(data, update_batches, epochs=1):
    model = mlp()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), data, loss_fn=nn.functional.cross_entropy,
                      update_batches=update_batches, epochs=epochs)
    trainer.run()
    return model, trainer


def test_two_batches_of_32_accumulate_to_the_update_of_one_batch_of_64():
    big = batches(6, 64, 2)
    halves = [(x[i:i + 32], y[i:i + 32]) for x, y in big for i in (0, 32)]
    model_big, trainer_big = _train_sgd(big, update_batches=1)
    model_acc, trainer_acc = _train_sgd(halves, update_batches=2)
    assert trainer_big.global_step == trainer_acc.global_step == 6
    for p, q in zip(model_big.parameters(), model_acc.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_a_short_last_window_is_a_mean_over_its_own_batches_and_still_applied():
    data = batches(5, 16, 3)
    model_acc, trainer = _train_sgd(data, update_batches=2)
    assert trainer.global_step == 3
    # The same three updates by hand: mean of batches (0, 1), mean of (2, 3), then batch 4 alone.
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.5)
    for window in (data[0:2], data[2:4], data[4:5]):
        sgd.zero_grad()
        for x, y in window:
            (nn.functional.cross_entropy(model(x), y) / len(window)).backward()
        sgd.step()
    for p, q in zip(model.parameters(), model_acc.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_is_optimize_marks_the_batch_before_each_optimizer_step():
    model = mlp()
    trainer = Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(5, 4, 0),
                       loss_fn=nn.functional.cross_entropy, update_batches=2)
    trainer.run()
    assert [call[4] for call in trainer.calls] == [False, True, False, True, True]


def test_schedules_and_tracked_steps_count_optimizer_steps_not_batches():
    model = mlp()
    schedule = Piecewise([(0, 1.0), (4, 0.0)])
    tracker = Tracker()
    seen = []
    optimizer = torch.optim.SGD(model.parameters(), lr=123.0)
    original_step = optimizer.step

    def spy_step(*args, **kwargs):
        seen.append(optimizer.param_groups[0]["lr"])
        return original_step(*args, **kwargs)

    optimizer.step = spy_step
    trainer = Trainer(model, optimizer, batches(8, 4, 0), loss_fn=nn.functional.cross_entropy, update_batches=2,
                      schedules={"lr": schedule}, run=RunContext(tracker), console=False)
    trainer.run()
    assert seen == [1.0, 0.75, 0.5, 0.25]
    assert trainer.global_step == 4


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
    fresh.load_state_dict(state["parts"]["optimizer"])
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


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, r"Trainer: epochs=0 is out of range; expected epochs >= 1"),
    ({"inner_iterations": 1.5}, r"Trainer: inner_iterations=1.5 is a float; expected an integer"),
    ({"update_batches": -2}, r"Trainer: update_batches=-2 is out of range; expected update_batches >= 1"),
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


def test_gradients_are_clipped_before_each_step_and_the_norm_tracked():
    model = mlp()
    tracker = Tracker()
    seen = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    original_step = optimizer.step

    def spy_step(*args, **kwargs):
        seen.append(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item())
        return original_step(*args, **kwargs)

    optimizer.step = spy_step
    data = [(x * 100, y) for x, y in batches(4, 8, 0)]
    Trainer(model, optimizer, data, loss_fn=nn.functional.cross_entropy, grad_clip_norm=0.5, run=RunContext(tracker), console=False).run()
    assert all(n == pytest.approx(0.5, rel=1e-4) for n in seen)
    assert tracker.latest("train.grad_norm") > 0.5


def test_betas_can_follow_a_schedule_and_are_tracked():
    model = mlp()
    tracker = Tracker()
    optimizer = Adam(model.parameters())
    Trainer(model, optimizer, batches(4, 8, 0), loss_fn=nn.functional.cross_entropy, run=RunContext(tracker), console=False,
            schedules={"betas[0]": Piecewise([(0, 0.8), (4, 0.9)])}).run()
    assert tracker.latest("train.betas[0]") == pytest.approx(0.875)
    assert optimizer.param_groups[0]["betas"][0] == pytest.approx(0.875)


def test_an_unknown_scheduled_hyper_parameter_fails_at_construction():
    model = mlp()
    with pytest.raises(ValueError, match="cannot schedule 'momentum'"):
        Trainer(model, Adam(model.parameters()), batches(2, 4, 0), schedules={"momentum": Piecewise([(0, 1.0)])})


# -- non-finite values -------------------------------------------------------------------------


def poisoned(at: int, where: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of which batch ``at`` makes the loss NaN (``where="loss"``) or only a gradient infinite."""
    data = batches(6, 8, 0)
    x, y = data[at]
    data[at] = (torch.full_like(x, float("nan")) if where == "loss" else x * 1e38, y)
    return data


class InfiniteGradient(torch.autograd.Function):
    """Zero forward; an infinite gradient backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, w):
        return w * 0

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


class Trap(nn.Module):
    """Adds 0, with an infinite gradient for its ``scale`` on inputs marked by a huge value."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x + (InfiniteGradient.apply(self.scale) if x.abs().max() > 1e30 else self.scale * 0)


def test_a_non_finite_loss_fails_naming_the_step(tmp_path):
    model = mlp()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), poisoned(3, "loss"),
                      loss_fn=nn.functional.cross_entropy, run=tmp_path, checkpoint_every=1, console=False)
    with pytest.raises(NonFiniteError, match=r"^step 4: the loss is nan; nonfinite='skip' skips"):
        trainer.run()
    # Nothing written was corrupted: the checkpoints before it are the steps before it, with finite weights.
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-1", "step-2", "step-3"]
    restored = mlp()
    load_checkpoint(tmp_path / "checkpoints" / "step-3", restored)
    assert all(torch.isfinite(p).all() for p in restored.parameters())


def test_a_non_finite_gradient_fails_naming_the_parameter():
    torch.manual_seed(0)
    model = nn.Sequential(Trap(), nn.Linear(6, 3))
    data = batches(4, 8, 0)
    data[2][0][0, 0] = 1e31
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data, loss_fn=nn.functional.cross_entropy,
                      console=False)
    with pytest.raises(NonFiniteError, match=r"step 3: the gradient of parameter '0.scale' is not finite"):
        trainer.run()


def test_skip_leaves_the_model_as_it_was_and_counts_the_skipped_update():
    model = mlp()
    tracker = Tracker()
    seen = []

    class Watch:
        def on_optimizer_step(self, trainer):
            seen.append((trainer.global_step, [p.detach().clone() for p in model.parameters()]))

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), poisoned(3, "loss"),
                      loss_fn=nn.functional.cross_entropy, nonfinite="skip", run=RunContext(tracker), console=False, callbacks=[Watch()])
    trainer.run()
    assert trainer.global_step == 5 and trainer.optimizer_step.skipped == 1
    assert tracker.latest("train.skipped_steps") == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [step for step, _ in seen] == [1, 2, 3, 4, 5]


# -- precision, devices, the console ------------------------------------------------------------


def test_bf16_autocast_trains_on_the_cpu_with_float32_weights():
    model = mlp()
    dtypes = []
    model.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(4, 8, 0),
                      loss_fn=nn.functional.cross_entropy, precision="bf16", console=False)
    trainer.run()
    assert set(dtypes) == {torch.bfloat16} and trainer.global_step == 4
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_fp16_clips_unscaled_gradients_and_a_skipped_step_moves_no_schedule():
    model = mlp()
    tracker = Tracker()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    seen = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    original = optimizer.step

    def spy(*args, **kwargs):
        seen.append((optimizer.param_groups[0]["lr"],
                     torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item()))
        return original(*args, **kwargs)

    optimizer.step = spy
    data = batches(4, 8, 0)
    data[1] = (data[1][0] * 1e30, data[1][1])  # overflows in float16: the scaler skips this step
    trainer = Trainer(model, optimizer, data, loss_fn=nn.functional.cross_entropy, precision="fp16", scaler=scaler,
                      grad_clip_norm=0.5, schedules={"lr": Piecewise([(0, 1.0), (10, 0.0)])}, run=RunContext(tracker), console=False)
    trainer.run()
    assert trainer.global_step == 3 and trainer.optimizer_step.skipped == 1
    # The schedule's steps 0, 1, 2: the skipped update did not advance it; clipped to 0.5 in unscaled units.
    assert [lr for lr, _ in seen] == pytest.approx([1.0, 0.9, 0.8])
    assert all(norm == pytest.approx(0.5, rel=1e-3) for _, norm in seen)
    assert scaler.get_scale() < 2.0 ** 16


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


def sgd_by_hand(model: nn.Module, windows, lr: float, clip_value: float | None = None) -> list[float]:
    """Train ``model`` with SGD, one step per window of batches (the mean of their losses); return each step's
    gradient 2-norm before clipping."""
    sgd = torch.optim.SGD(model.parameters(), lr=lr)
    norms = []
    for window in windows:
        sgd.zero_grad()
        for x, y in window:
            (nn.functional.cross_entropy(model(x), y) / len(window)).backward()
        norms.append(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item())
        if clip_value is not None:
            for p in model.parameters():
                p.grad.clamp_(-clip_value, clip_value)
        sgd.step()
    return norms


def test_an_accumulation_window_spans_a_validation_slice(tmp_path):
    data, valid = batches(6, 8, 4), batches(4, 8, 5)
    model = mlp()
    with RunStore(tmp_path) as store:
        run_id = store.create_run("unit", {})
        trainer = Recorder(model, torch.optim.SGD(model.parameters(), lr=0.5), data, valid,
                           loss_fn=nn.functional.cross_entropy, inner_iterations=2, update_batches=4,
                           run=RunContext(Tracker(store, run_id)), console=False)
        trainer.run()
        first_validation = [array[0] for array in store.values(run_id, "valid.loss")]
    # Window 0..3 opens before the first validation slice and closes after it; 4..5 is cut short by the epoch's end.
    assert [(phase, idx, optimize) for _, phase, idx, _, optimize in trainer.calls] == [
        ("train", 0, False), ("train", 1, False), ("train", 2, False), ("valid", 0, False), ("valid", 1, False),
        ("train", 3, True), ("train", 4, False), ("train", 5, True), ("valid", 2, False), ("valid", 3, False)]
    assert trainer.global_step == 2
    # The validation inside the window saw the untrained model and left the accumulating gradients alone.
    untrained = mlp()
    with torch.no_grad():
        expected = sum(nn.functional.cross_entropy(untrained(x), y, reduction="sum").item() for x, y in valid[:2]) / 16
    assert first_validation[0] == 0 and first_validation[1] == pytest.approx(expected, rel=1e-6)
    sgd_by_hand(untrained, [data[0:4], data[4:6]], lr=0.5)
    for p, q in zip(untrained.parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


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


def test_grad_clip_value_clamps_the_accumulated_gradient_once_per_window(monkeypatch):
    data = [(x * 100, y) for x, y in batches(5, 8, 0)]
    clips = []
    real_clip = optimizer_step_module.clip_grad_value
    monkeypatch.setattr(optimizer_step_module, "clip_grad_value", lambda *args: clips.append(args[1]) or real_clip(*args))
    model = mlp()
    tracker = Tracker()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data, loss_fn=nn.functional.cross_entropy,
                      update_batches=2, grad_clip_value=0.01, run=RunContext(tracker), console=False)
    trainer.run()
    assert clips == [0.01] * 3 and trainer.global_step == 3
    # Clamping each batch's gradient before accumulating would give another update: the sum is clamped.
    by_hand = mlp()
    norms = sgd_by_hand(by_hand, [data[0:2], data[2:4], data[4:5]], lr=0.1, clip_value=0.01)
    for p, q in zip(by_hand.parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert tracker.latest("train.grad_norm") == pytest.approx(norms[-1], rel=1e-5) and norms[-1] > 0.01


def test_the_tracked_training_loss_is_the_mean_loss_of_each_window(tmp_path):
    data = batches(7, 8, 2)
    model = mlp()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(model(x), y).item() for x, y in data]
    with RunStore(tmp_path) as store:
        run_id = store.create_run("unit", {})
        # lr 0: the model stays as it is, so each batch's loss is known beforehand.
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), data, loss_fn=nn.functional.cross_entropy,
                epochs=2, update_batches=3, run=RunContext(Tracker(store, run_id)), console=False).run()
        tracked = [(step, None, value) for step, value in zip(*store.values(run_id, "train.loss"))]
    windows = [losses[0:3], losses[3:6], losses[6:7]]
    expected = [sum(window) / len(window) for window in windows] * 2
    assert [step for step, _, _ in tracked] == [1, 2, 3, 4, 5, 6]
    assert [value for _, _, value in tracked] == pytest.approx(expected, rel=1e-6)


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


def test_with_both_clippings_the_tracked_norm_is_the_one_before_any_clipping():
    data = [(x * 100, y) for x, y in batches(2, 8, 0)]
    model = mlp()
    tracker = Tracker()
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data, loss_fn=nn.functional.cross_entropy,
            update_batches=2, grad_clip_value=0.01, grad_clip_norm=0.001, run=RunContext(tracker), console=False).run()
    norms = sgd_by_hand(mlp(), [data], lr=0.1)
    assert tracker.latest("train.grad_norm") == pytest.approx(norms[0], rel=1e-5)



def test_the_loss_is_a_moving_average_and_samples_are_counted(tmp_path):
    model = mlp()
    with RunStore(tmp_path) as store:
        run_id = store.create_run("unit", {})
        tracker = Tracker(store, run_id)
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(5, 8, 0),
                loss_fn=nn.functional.cross_entropy, update_batches=2, run=RunContext(tracker), console=False).run()
        tracker.flush()
        samples = list(zip(*(array.tolist() for array in store.values(run_id, "train.samples"))))
    assert tracker.kind("train.loss") == "moving" and tracker.label("train.loss").startswith("train.loss(avg")
    # Windows of 2, 2 and 1 batches of 8 samples: 16, 32, 40 samples by steps 1, 2, 3.
    assert samples == [(1, 16), (2, 32), (3, 40)]


def test_model_statistics_every_n_steps_only():
    model = mlp()
    tracker = Tracker()
    steps = []

    class Watch:
        def on_optimizer_step(self, trainer):
            steps.append((trainer.global_step, "model.0.update_ratio" in tracker.keys()))

    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(6, 8, 0), loss_fn=nn.functional.cross_entropy,
            track_model_every=3, run=RunContext(tracker), console=False, callbacks=[Watch()]).run()
    assert steps == [(1, False), (2, False), (3, True), (4, True), (5, True), (6, True)]
    assert {"model.0.param_norm", "model.0.grad_norm", "model.2.update_ratio"} <= set(tracker.keys())
    assert 0 < tracker.latest("model.0.update_ratio") < 1
