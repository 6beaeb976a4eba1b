"""Where each phase's time goes: the clock's arithmetic on a fake time source (shares that sum to 1, a nested
validation left out of training's time, counts started afresh after a pass, the speed), its sampling on a device
that needs a synchronisation (an injected one), and the trainer's loop marking it: a slow loader, step, optimizer
or checkpoint shows in its share."""

from __future__ import annotations

import io
import re
import time

import pytest
import torch
from rich.console import Console
from torch import nn

from cadence.track import RunContext, RunStore, Tracker
from cadence.train import Trainer
from cadence.train.phase_clock import (CHECKPOINT, COMPUTE, OPTIMIZER, OTHER, PARTS, SAMPLE_EVERY, TRACKING,
                                       PhaseClock)

SLEEP = 0.004


class FakeTime:
    """A time source that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def pass_(self, seconds: float) -> None:
        self.now += seconds


def shares_of(report: dict, phase: str = "train") -> list[float]:
    return [report[f"{phase}.time.{part}"] for part in PARTS]


def a_batch(clock: PhaseClock, now: FakeTime, data=1.0, compute=2.0, optimizer=0.5, tracking=0.25, other=0.25):
    clock.batch()
    now.pass_(data)
    clock.to(COMPUTE)
    now.pass_(compute)
    clock.to(OPTIMIZER)
    now.pass_(optimizer)
    clock.to(TRACKING)
    now.pass_(tracking)
    clock.to(OTHER)
    now.pass_(other)


# -- the clock -------------------------------------------------------------------------------------

def test_the_parts_are_shares_of_the_phases_wall_time_that_sum_to_one():
    now = FakeTime()
    clock = PhaseClock(("train", "valid"), clock=now)
    now.pass_(1.0)  # before the slice: training's, none of its parts
    clock.enter("train")
    for _ in range(4):
        a_batch(clock, now)  # 4 s a batch
    with clock.timed(CHECKPOINT):
        now.pass_(3.0)
    clock.leave()
    report = clock.report("train")
    assert shares_of(report) == pytest.approx([4 / 20, 8 / 20, 2 / 20, 1 / 20, 3 / 20, (1 + 1) / 20])
    assert sum(shares_of(report)) == pytest.approx(1.0) and all(0 <= s <= 1 for s in shares_of(report))


def test_a_validation_within_a_training_batch_counts_as_validation_only():
    now = FakeTime()
    clock = PhaseClock(("train", "valid"), clock=now)
    clock.enter("train")
    clock.batch()
    now.pass_(1.0)
    clock.to(COMPUTE)
    now.pass_(1.0)
    clock.to(OTHER)
    clock.enter("valid")  # valid_every: a whole pass after an optimizer step
    for _ in range(2):
        clock.batch()
        now.pass_(3.0)  # waiting for validation data
        clock.to(COMPUTE)
        now.pass_(1.0)
    clock.leave()
    now.pass_(2.0)
    clock.leave()
    assert shares_of(clock.report("train")) == pytest.approx([0.25, 0.25, 0, 0, 0, 0.5])
    assert shares_of(clock.report("valid"), "valid") == pytest.approx([0.75, 0.25, 0, 0, 0, 0])


def test_a_phase_counts_afresh_after_a_complete_pass_and_its_reporting_counts_in_the_next():
    now = FakeTime()
    clock = PhaseClock(("train", "valid"), clock=now)
    clock.enter("valid")
    a_batch(clock, now, data=3.0, compute=1.0, optimizer=0, tracking=0, other=0)
    with clock.timed(TRACKING):
        first = clock.report("valid", restart=True)
        now.pass_(1.0)  # the display's flush, after the values are taken
    clock.leave()
    assert shares_of(first, "valid") == pytest.approx([0.75, 0.25, 0, 0, 0, 0])
    clock.enter("valid")
    a_batch(clock, now, data=1.0, compute=2.0, optimizer=0, tracking=0, other=0)
    clock.leave()
    assert shares_of(clock.report("valid"), "valid") == pytest.approx([0.25, 0.5, 0, 0.25, 0, 0])


def test_the_speed_is_the_samples_of_every_process_over_the_phases_wall_time():
    now = FakeTime()
    clock = PhaseClock(("train", "valid"), processes=2, clock=now)
    clock.start(samples=1000)  # resumed: the samples before do not count
    clock.enter("train")
    a_batch(clock, now)
    clock.leave()
    assert clock.report("train", samples=1064, restart=True)["train.samples_per_second"] == pytest.approx(2 * 64 / 4)
    samples = torch.tensor(1064 + 32)  # a count held on the device stays there
    clock.enter("train")
    a_batch(clock, now, data=0, compute=1.0, optimizer=0, tracking=0, other=0)
    clock.leave()
    speed = clock.report("train", samples=samples)["train.samples_per_second"]
    assert isinstance(speed, torch.Tensor) and speed.item() == pytest.approx(2 * 32 / 1)
    assert "valid.samples_per_second" not in clock.report("valid")


def test_on_the_cpu_nothing_waits_for_the_device_and_every_batch_is_timed():
    clock = PhaseClock.for_device(torch.device("cpu"), ("train", "valid"))
    assert clock.sync is None and clock.sample_every == 1
    gpu = PhaseClock.for_device(torch.device("cuda", 0), ("train", "valid"))  # made, never synced here
    assert gpu.sync is not None and gpu.sample_every == SAMPLE_EVERY


def test_on_a_device_one_batch_in_n_is_timed_each_mark_waiting_for_it_and_scaled_to_all():
    """An injected ``sync`` records the batch it is called in: only every ``n``-th batch's marks wait for the device,
    and the parts of those batches, scaled to all the batches, give the same shares as timing every batch."""
    now, n, batch = FakeTime(), 4, "start"
    synced: list[int | str] = []
    clock = PhaseClock(("train", "valid"), sync=lambda: synced.append(batch), sample_every=n, clock=now)
    clock.enter("train")
    for batch in range(1, 13):
        a_batch(clock, now)
    batch = "end"
    clock.leave()
    assert synced.count("start") == 1 and synced.count("end") == 1  # entering and leaving the slice
    # Batch 4 waits when it opens and at its 4 marks; it is closed by batch 5's start (once), and so on.
    assert [synced.count(batch) for batch in range(1, 13)] == [0, 0, 0, 5, 1, 0, 0, 5, 1, 0, 0, 5]
    assert shares_of(clock.report("train")) == pytest.approx([1 / 4, 2 / 4, 0.5 / 4, 0.25 / 4, 0, 0.25 / 4])


def test_a_period_without_a_timed_batch_takes_the_runs_mean_per_batch():
    now = FakeTime()
    clock = PhaseClock(("train", "valid"), sync=lambda: None, sample_every=3, clock=now)
    for restart in (True, False):  # a pass of 3 batches (one timed), then one of 2 (none timed)
        clock.enter("valid")
        for _ in range(3 if restart else 2):
            a_batch(clock, now, data=1.0, compute=3.0, optimizer=0, tracking=0, other=0)
        clock.leave()
        report = clock.report("valid", restart=restart)
    assert shares_of(report, "valid") == pytest.approx([0.25, 0.75, 0, 0, 0, 0])


def test_a_bad_sampling_interval_is_refused_naming_it():
    with pytest.raises(ValueError, match=re.escape("PhaseClock: sample_every=0 is out of range")):
        PhaseClock(("train",), sample_every=0)


# -- in the trainer's loop -------------------------------------------------------------------------

def data(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)) for _ in range(n)]


class Slow:
    """A loader that waits ``sleep`` seconds before each batch."""

    def __init__(self, batches: list, sleep: float = SLEEP) -> None:
        self.batches, self.sleep = batches, sleep

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            time.sleep(self.sleep)
            yield batch


def slow_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    time.sleep(SLEEP)
    return nn.functional.cross_entropy(output, target)


class SlowSGD(torch.optim.SGD):
    def step(self, closure=None):
        time.sleep(SLEEP)
        return super().step(closure)


def trained(tmp_path, train=None, valid=None, loss_fn=nn.functional.cross_entropy, optimizer=torch.optim.SGD,
            **kwargs) -> tuple[Trainer, RunStore, str, str]:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    store = RunStore(tmp_path)
    run_id = store.create_run("clock", {}, provenance={})
    out = io.StringIO()
    trainer = Trainer(model, optimizer(model.parameters(), lr=0.1), train or data(12), valid, loss_fn=loss_fn,
                      run=RunContext(Tracker(store, run_id), run_dir=tmp_path / run_id),
                      console=Console(file=out, width=400), **kwargs)
    assert trainer.run() == "finished"
    trainer.tracker.close()
    return trainer, store, run_id, out.getvalue()


def final_shares(store: RunStore, run_id: str, phase: str = "train") -> dict[str, float]:
    return {part: float(store.values(run_id, f"{phase}.time.{part}")[1][-1]) for part in PARTS}


@pytest.mark.parametrize("slow, part", [({"train": Slow(data(12))}, "data"), ({"loss_fn": slow_loss}, "compute"),
                                        ({"optimizer": SlowSGD}, "optimizer")], ids=["loader", "step", "optimizer"])
def test_what_is_slow_takes_most_of_the_training_time(tmp_path, slow, part):
    _, store, run_id, _ = trained(tmp_path, **slow)
    shares = final_shares(store, run_id)
    assert shares[part] > 0.5, shares
    assert sum(shares.values()) == pytest.approx(1.0) and all(0 <= s <= 1 for s in shares.values())


def test_checkpoints_show_in_their_share(tmp_path, monkeypatch):
    save = Trainer.save_checkpoint
    monkeypatch.setattr(Trainer, "save_checkpoint", lambda self: (time.sleep(10 * SLEEP), save(self))[1])
    _, store, run_id, _ = trained(tmp_path, checkpoint_every=3)
    assert final_shares(store, run_id)["checkpoint"] > 0.5


def test_each_phase_reports_its_shares_and_the_training_speed_at_each_slice_end(tmp_path):
    trainer, store, run_id, console = trained(tmp_path, train=data(12), valid=Slow(data(3, 1), 10 * SLEEP), epochs=2,
                                              inner_iterations=2)
    train, valid = final_shares(store, run_id), final_shares(store, run_id, "valid")
    assert valid["data"] > 0.5 and train["data"] < 0.5  # the slow validation loader is validation's alone
    for phase in ("train", "valid"):
        steps, values = store.values(run_id, f"{phase}.time.compute")
        assert list(steps) == [6, 12, 18, 24]  # at each slice's end, with the epoch's values
        assert store.series(run_id)[f"{phase}.time.compute"].kind == "epoch"
    steps, speed = store.values(run_id, "train.samples_per_second")
    assert list(steps) == [6, 12, 18, 24] and all(speed > 0)
    # The console: a phase's shares end the line it ends with, as percentages.
    ends = [line for line in console.splitlines() if re.match(r"epoch \d (train|valid) ", line)]
    assert len(ends) == 8 and all(re.search(r" time\(epoch\) data=\d+% compute=\d+% optimizer=\d+% tracking=\d+% "
                                            r"checkpoint=\d+% other=\d+%", line) for line in ends), ends
    assert trainer.clock.sync is None  # on the CPU, never a wait for a device


def test_on_a_device_the_trainer_waits_for_it_only_in_every_nth_batch(tmp_path):
    """The trainer's marks with an injected device sync (there is no GPU here): the sync is called in every
    ``n``-th training step's batch and at the slice's ends, in no other step."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data(20), loss_fn=nn.functional.cross_entropy,
                      console=False)
    steps: list[int] = []
    trainer.clock = PhaseClock(("train", "valid"), sync=lambda: steps.append(trainer.global_step), sample_every=5)
    trainer.run()
    # Batch 5 waits from its start (step 4 taken) to its end (step 5 taken); the run's start and end wait too.
    assert sorted(set(steps)) == [0, 4, 5, 9, 10, 14, 15, 19, 20]
