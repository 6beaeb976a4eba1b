"""The optimizer step: accumulation windows, schedules, clipping, the non-finite policy, the gradient scaler and
what each step tracks, driven by a trainer as a run drives them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cadence.train.optimizer_step as optimizer_step_module
from cadence.optim import Adam
from cadence.schedule import Piecewise
from cadence.track import RunContext, RunStore, Tracker
from cadence.train import NonFiniteError, Trainer, list_checkpoints, load_checkpoint

from .test_trainer import Recorder, batches, mlp


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
    with pytest.raises(NonFiniteError, match=r"^step 4: the loss is not finite \(NaN or infinite\); nonfinite='skip'"):
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


def test_model_statistics_every_n_steps_only(tmp_path):
    model = mlp()
    with RunStore(tmp_path) as store:
        run_id = store.create_run("unit", {}, provenance={})
        tracker = Tracker(store, run_id)
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(7, 8, 0),
                loss_fn=nn.functional.cross_entropy, track_model_every=3, run=RunContext(tracker), console=False).run()
        recorded = {key: store.values(run_id, key)[0].tolist() for key in store.series(run_id)
                    if key.startswith("model.")}
    assert {"model.0.param_norm", "model.0.grad_norm", "model.2.update_ratio"} <= set(recorded)
    assert all(steps == [3, 6] for steps in recorded.values()), recorded
    assert 0 < tracker.latest("model.0.update_ratio") < 1


# -- the non-finite flag, kept on the device -------------------------------------------------------


class CountingSGD(torch.optim.SGD):
    """torch's SGD, counting its steps."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        return super().step(closure)


class FoundInfSGD(torch.optim.Optimizer):
    """Plain SGD that declares it honours ``found_inf`` (as cadence's and torch's fused optimizers do): an update with
    the flag set leaves the parameters as they are, without reading the flag."""

    supports_found_inf = True

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})
        self.steps = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.steps += 1
        for group in self.param_groups:
            for p in group["params"]:
                p.copy_(torch.where(self.found_inf.bool(), p, p - group["lr"] * p.grad))


@pytest.mark.parametrize("optimizer", [CountingSGD, FoundInfSGD], ids=["masked-gradients", "found-inf"])
def test_a_non_finite_step_masks_every_update_until_the_flag_is_read_and_raised(optimizer):
    """The bad step and the ones after it until the read leave the parameters finite and as they were; the error
    names the first bad step though the read came later."""
    model = mlp()
    data = poisoned(3, "loss") + batches(20, 8, 5)
    sgd = optimizer(model.parameters(), lr=0.1)
    seen = []

    class Watch:
        def on_optimizer_step(self, trainer):
            seen.append([p.detach().clone() for p in model.parameters()])

    trainer = Trainer(model, sgd, data, loss_fn=nn.functional.cross_entropy, callbacks=[Watch()], console=False)
    trainer.optimizer_step.check_every, trainer.optimizer_step.check_seconds = 10, 0.0
    with pytest.raises(NonFiniteError, match=r"^step 4: the loss is not finite"):
        trainer.run()
    assert trainer.global_step == 10 and sgd.steps == 10  # read at step 10, raised there
    for after in seen[3:]:
        assert all(torch.isfinite(p).all() for p in after)
        assert all(torch.equal(p, q) for p, q in zip(after, seen[2])), "an update after the bad step moved the model"


def test_no_checkpoint_holds_a_non_finite_state(tmp_path):
    model = mlp()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), poisoned(3, "loss") + batches(30, 8, 5),
                      loss_fn=nn.functional.cross_entropy, checkpoint_every=5, run=tmp_path, console=False)
    with pytest.raises(NonFiniteError, match=r"^step 4: the loss is not finite"):
        trainer.run()
    assert trainer.global_step == 5  # the flag read before the checkpoint of step 5, which was never written
    assert list_checkpoints(tmp_path) == []


# -- the learning rate as the optimizer has it, torch's schedulers ------------------------------------


def test_the_tracked_learning_rate_is_the_optimizers_own_whoever_set_it():
    model = mlp()
    tracker = Tracker()

    class Halve:
        def on_optimizer_step(self, trainer):
            for group in trainer.optimizer.param_groups:
                group["lr"] /= 2

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.8), batches(4, 8, 0),
                      loss_fn=nn.functional.cross_entropy, callbacks=[Halve()], run=RunContext(tracker), console=False)
    trainer.run()
    tracker.flush()
    assert tracker.latest("train.lr") == 0.1  # the rate step 4 was taken at: 0.8 halved three times


@pytest.mark.parametrize("every", ["step", "epoch"])
def test_a_torch_lr_scheduler_steps_per_step_or_per_epoch_as_torchs_own_loop_does(every, tmp_path):
    data = batches(3, 8, 0)

    def scheduler(optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)

    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.8)
    with RunStore(tmp_path) as store:
        run_id = store.create_run("unit", {}, provenance={})
        Trainer(model, sgd, data, loss_fn=nn.functional.cross_entropy, epochs=3, lr_scheduler=scheduler(sgd),
                lr_scheduler_every=every, run=RunContext(Tracker(store, run_id)), console=False).run()
        rates = store.values(run_id, "train.lr")[1].tolist()
    by_hand, expected = mlp(), []
    sgd = torch.optim.SGD(by_hand.parameters(), lr=0.8)
    steps = scheduler(sgd)
    for _ in range(3):
        for x, y in data:
            expected.append(sgd.param_groups[0]["lr"])
            sgd.zero_grad()
            nn.functional.cross_entropy(by_hand(x), y).backward()
            sgd.step()
            if every == "step":
                steps.step()
        if every == "epoch":
            steps.step()
    assert rates == pytest.approx(expected)
    for p, q in zip(model.parameters(), by_hand.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_a_torch_lr_scheduler_resumes_with_the_run(tmp_path):
    def run(run_dir, stop_at=0, resume=False):
        class StopAt:
            def on_optimizer_step(self, trainer):
                if trainer.global_step == stop_at:
                    trainer.stop("stopped for the test")

        model = mlp()
        sgd = torch.optim.SGD(model.parameters(), lr=0.8)
        trainer = Trainer(model, sgd, batches(6, 8, 0), loss_fn=nn.functional.cross_entropy, epochs=2,
                          lr_scheduler=torch.optim.lr_scheduler.ExponentialLR(sgd, gamma=0.7), run=run_dir,
                          callbacks=[StopAt()], console=False)
        if resume:
            trainer.resume(run_dir)
        trainer.run()
        return model, sgd.param_groups[0]["lr"]

    straight, rate = run(tmp_path / "a")
    run(tmp_path / "b", stop_at=4)
    resumed, resumed_rate = run(tmp_path / "b", resume=True)
    assert resumed_rate == rate == pytest.approx(0.8 * 0.7 ** 12)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_two_schedules_of_the_learning_rate_are_refused():
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.8)
    with pytest.raises(ValueError, match=r"OptimizerStep: lr_scheduler and schedules=\{'lr': ...\} would both set"):
        Trainer(model, sgd, batches(2, 8, 0), lr_scheduler=torch.optim.lr_scheduler.StepLR(sgd, 2),
                schedules={"lr": Piecewise([(0, 1.0)])})
    with pytest.raises(ValueError, match=r"lr_scheduler_every='batch'; expected one of 'step', 'epoch'"):
        Trainer(model, sgd, batches(2, 8, 0), lr_scheduler_every="batch")
