"""The console sink: plain lines at an interval off a terminal, live bars on one, the runs table."""

from __future__ import annotations

import io
import time

from rich.console import Console

from cadence.track import ConsoleSink, RunSummary, format_runs


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_plain_lines_come_at_the_interval_with_speed_and_eta():
    out, clock = io.StringIO(), Clock()
    sink = ConsoleSink(Console(file=out, width=200), live=False, interval=10.0, clock=clock)
    sink.start_phase("train", total=100, epoch=2)
    for completed in range(1, 51):
        clock.now += 1.0
        if sink.due():
            sink.update(completed, {"loss": 0.12345, "accuracy": 0.9712})
    assert out.getvalue().splitlines() == [
        "epoch 2 train 10/100 loss=0.1235 accuracy=0.9712 1.0 it/s eta 0:01:30",
        "epoch 2 train 20/100 loss=0.1235 accuracy=0.9712 1.0 it/s eta 0:01:20",
        "epoch 2 train 30/100 loss=0.1235 accuracy=0.9712 1.0 it/s eta 0:01:10",
        "epoch 2 train 40/100 loss=0.1235 accuracy=0.9712 1.0 it/s eta 0:01:00",
        "epoch 2 train 50/100 loss=0.1235 accuracy=0.9712 1.0 it/s eta 0:00:50",
    ]
    sink.end_phase(100, {"loss": 0.1})
    assert out.getvalue().splitlines()[-1] == "epoch 2 train 100/100 loss=0.1 2.0 it/s"


def test_a_phase_started_part_way_shows_its_position_and_the_speed_of_the_steps_taken():
    out, clock = io.StringIO(), Clock()
    sink = ConsoleSink(Console(file=out, width=200), live=False, interval=10.0, clock=clock)
    sink.start_phase("train", total=100, epoch=1, done=80)
    clock.now += 10.0
    sink.update(90, {})
    sink.end_phase(100, {})
    assert out.getvalue().splitlines() == ["epoch 1 train 90/100 1.0 it/s eta 0:00:10", "epoch 1 train 100/100 2.0 it/s"]


def test_a_plain_line_longer_than_the_console_stays_one_line():
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, width=40), live=False)
    sink.start_phase("train", total=10, epoch=1)
    sink.end_phase(10, {f"metric_{i}": 0.5 for i in range(8)})
    [line] = out.getvalue().splitlines()
    assert line.startswith("epoch 1 train 10/10 metric_0=0.5") and "metric_7=0.5" in line


def test_live_bars_render_on_a_terminal():
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, force_terminal=True, width=120), clock=time.monotonic)
    assert sink.live
    sink.start_phase("valid", total=4, epoch=1)
    sink.update(2, {"accuracy": 0.5})
    sink.end_phase(4, {"accuracy": 0.75})
    sink.log("checkpoint saved")
    sink.close()
    text = out.getvalue()
    assert "epoch 1 valid" in text and "accuracy=0.75" in text and "4/4" in text and "checkpoint saved" in text


def test_runs_table_lists_ids_status_duration_and_validation_metrics_first():
    runs = [RunSummary("20261124-101010-abcd", "mnist", "finished", {}, 1000.0, 1075.0, None,
                       {"train.loss": 0.1, "valid.accuracy": 0.985, "valid.loss": 0.05}),
            RunSummary("20261124-111111-ef01", "mnist", "running", {}, 2000.0, None, None, {})]
    out = io.StringIO()
    Console(file=out, width=200).print(format_runs(runs))
    text = out.getvalue()
    assert "20261124-101010-abcd" in text and "0:01:15" in text and "running" in text
    assert text.index("valid.accuracy=0.985") < text.index("train.loss=0.1")


def test_runs_table_stays_readable_on_a_narrow_console():
    runs = [RunSummary("20261124-101010-abcd", "mnist", "finished", {}, 1000.0, 1075.0, None,
                       {"train.loss": 0.1, "valid.accuracy": 0.985, "valid.loss": 0.05})]
    out = io.StringIO()
    Console(file=out, width=80).print(format_runs(runs))
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    for value in ("20261124-101010-abcd", "valid.accuracy=0.985", "valid.loss=0.05", "train.loss=0.1"):
        assert value in text
