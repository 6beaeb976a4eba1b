"""The console: a phase's progress in plain lines at an interval off a terminal, live bars on one, with the values
the tracker resolved; the runs table."""

from __future__ import annotations

import io
import threading
import time

import torch
from rich.console import Console

from cadence.track import PhaseDisplay, RunSummary, Tracker, format_runs


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def display(tracker: Tracker, out: io.StringIO, clock: Clock, width: int = 200) -> PhaseDisplay:
    return PhaseDisplay(tracker, Console(file=out, width=width), live=False, interval=10.0, clock=clock)


def test_plain_lines_come_at_the_interval_with_speed_eta_and_the_values_resolved_so_far():
    out, clock, tracker = io.StringIO(), Clock(), Tracker(smoothing=2)
    shown = display(tracker, out, clock)
    tracker.declare("train.loss", "moving")
    shown.start_phase("train", total=100, epoch=2)
    for step in range(1, 51):
        clock.now += 1.0
        tracker.add(step, {"train.loss": 0.1 * (step % 2 + 1), "train.lr": 0.01})
        if step % 10 == 9:
            tracker.flush()  # the values of step 9, 19, ... are resolved when the display is due at 10, 20, ...
        shown.advance()
    assert out.getvalue().splitlines() == [
        f"epoch 2 train {n}/100 loss(avg2)=0.15 lr=0.01 1.0 it/s eta {eta}"
        for n, eta in ((10, "0:01:30"), (20, "0:01:20"), (30, "0:01:10"), (40, "0:01:00"), (50, "0:00:50"))]
    tracker.add(51, {"train.accuracy": 0.9712}, kind="epoch")
    tracker.add(51, {"valid.loss": 9.0}, kind="epoch")
    shown.end_phase()  # waits for the values held: the last line is the phase's final state, its values only
    assert out.getvalue().splitlines()[-1] == "epoch 2 train 50/100 loss(avg2)=0.15 lr=0.01 accuracy(epoch)=0.9712 " \
                                              "1.0 it/s eta 0:00:50"


def test_the_display_never_reads_a_tensor_on_the_training_thread(monkeypatch):
    out, clock, tracker = io.StringIO(), Clock(), Tracker()
    shown = display(tracker, out, clock)

    def forbidden(self, *args):
        assert threading.current_thread() is not threading.main_thread(), "a tensor read on the training thread"
        return original(self, *args)

    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", forbidden)
    shown.start_phase("train", total=30, epoch=1)
    for step in range(1, 31):
        clock.now += 1.0
        tracker.add(step, {"train.loss": torch.tensor(0.5)})
        shown.advance()
    shown.end_phase()
    assert out.getvalue().splitlines()[-1].startswith("epoch 1 train 30/30 loss=0.5 ")


def test_a_phase_started_part_way_shows_its_position_and_the_speed_of_the_steps_taken():
    out, clock = io.StringIO(), Clock()
    shown = display(Tracker(), out, clock)
    shown.start_phase("train", total=100, epoch=1, done=80)
    for _ in range(10):
        clock.now += 1.0
        shown.advance()
    clock.now += 5.0
    shown.advance(10)  # not due yet
    shown.end_phase()
    assert out.getvalue().splitlines() == ["epoch 1 train 90/100 1.0 it/s eta 0:00:10", "epoch 1 train 100/100 1.3 it/s"]


def test_a_plain_line_longer_than_the_console_stays_one_line():
    out, tracker = io.StringIO(), Tracker()
    shown = display(tracker, out, Clock(), width=40)
    shown.start_phase("train", total=10, epoch=1)
    tracker.add(1, {f"train.metric_{i}": 0.5 for i in range(8)})
    shown.advance(10)
    shown.end_phase()
    [line] = out.getvalue().splitlines()
    assert line.startswith("epoch 1 train 10/10 metric_0=0.5") and "metric_7=0.5" in line


def test_live_bars_render_on_a_terminal():
    out, tracker = io.StringIO(), Tracker()
    shown = PhaseDisplay(tracker, Console(file=out, force_terminal=True, width=120), clock=time.monotonic)
    assert shown.live
    shown.start_phase("valid", total=4, epoch=1)
    shown.advance(2)
    tracker.add(1, {"valid.accuracy": 0.75}, kind="epoch")
    shown.advance(2)
    shown.end_phase()
    shown.log("checkpoint saved")
    shown.close()
    text = out.getvalue()
    assert "epoch 1 valid" in text and "accuracy(epoch)=0.75" in text and "4/4" in text and "checkpoint saved" in text


def test_a_phases_time_shares_end_the_line_it_ends_with_as_percentages_and_no_other_line():
    out, clock, tracker = io.StringIO(), Clock(), Tracker()
    shown = display(tracker, out, clock)
    shown.start_phase("train", total=20, epoch=1)
    shares = {"data": 0.13, "compute": 0.62, "optimizer": 0.1, "tracking": 0.05, "checkpoint": 0.0, "other": 0.1}
    tracker.add(10, {"train.time." + part: share for part, share in shares.items()}, kind="epoch")
    tracker.flush()
    for _ in range(20):
        clock.now += 1.0
        shown.advance()
    shown.end_phase()
    *progress, end = out.getvalue().splitlines()
    assert len(progress) == 2 and not any("time" in line for line in progress)
    assert end == ("epoch 1 train 20/20 time(epoch) data=13% compute=62% optimizer=10% tracking=5% checkpoint=0% "
                   "other=10% 1.0 it/s")


def test_runs_table_lists_ids_status_duration_and_validation_metrics_first():
    runs = [RunSummary("20261124-101010-abcd", "mnist", "finished", {}, 1000.0, 1075.0, None,
                       {"train.loss": 0.1, "valid.accuracy": 0.985, "valid.loss": 0.05}),
            RunSummary("20261124-111111-ef01", "mnist", "running", {}, 2000.0, None, None, {})]
    out = io.StringIO()
    Console(file=out, width=200).print(format_runs(runs))
    text = out.getvalue()
    assert "20261124-101010-abcd" in text and "0:01:15" in text and "running" in text
    assert text.index("valid.accuracy=0.985") < text.index("train.loss=0.1")


def test_runs_table_shows_metrics_not_where_the_time_went():
    metrics = {"valid.accuracy": 0.985, "valid.loss": 0.05, "valid.time.checkpoint": 0.0, "valid.time.compute": 0.5}
    out = io.StringIO()
    Console(file=out, width=200).print(format_runs([RunSummary("20261124-101010-abcd", "mnist", "finished", {}, 1000.0,
                                                               1075.0, None, metrics)]))
    assert "valid.accuracy=0.985" in out.getvalue() and "time" not in out.getvalue()


def test_runs_table_stays_readable_on_a_narrow_console():
    runs = [RunSummary("20261124-101010-abcd", "mnist", "finished", {}, 1000.0, 1075.0, None,
                       {"train.loss": 0.1, "valid.accuracy": 0.985, "valid.loss": 0.05})]
    out = io.StringIO()
    Console(file=out, width=80).print(format_runs(runs))
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    for value in ("20261124-101010-abcd", "valid.accuracy=0.985", "valid.loss=0.05", "train.loss=0.1"):
        assert value in text
