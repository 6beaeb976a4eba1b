"""The tracker: key checks, moving averages, tensors held without host syncs, batched writes."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console

from cadence.track import ConsoleSink, RunStore, Tracker


def test_smoothed_is_the_mean_of_the_last_values():
    tracker = Tracker(console=False, smoothing=3)
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0], start=1):
        tracker.add(step, {"train.loss": value})
    assert tracker.smoothed("train.loss") == pytest.approx(4.0)
    assert tracker.latest("train.loss") == 5.0 and tracker.keys() == ["train.loss"]


def test_tensors_are_held_without_host_syncs_until_flushed(tmp_path, monkeypatch):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {})
        tracker = Tracker(store, run_id, console=False, flush_every=10_000)

        def forbidden(*args, **kwargs):
            raise AssertionError("the tracker synchronised with the device while adding")

        values = [torch.tensor(float(i)) for i in range(50)]
        with monkeypatch.context() as patch:
            for name in ("item", "tolist", "__float__"):
                patch.setattr(torch.Tensor, name, forbidden)
            for step, value in enumerate(values, start=1):
                tracker.add(step, {"train.loss": value * 2})
        assert store.metrics(run_id) == []
        tracker.flush()
        assert [v for _, _, v in store.metrics(run_id)] == [2.0 * i for i in range(50)]


def test_values_reach_the_store_every_flush_every_values(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {})
        tracker = Tracker(store, run_id, console=False, flush_every=4)
        for step in range(1, 7):
            tracker.add(step, {"train.loss": float(step)})
        assert [s for s, _, _ in store.metrics(run_id)] == [1, 2, 3, 4]
        tracker.finish("finished")
        assert [s for s, _, _ in store.metrics(run_id)] == [1, 2, 3, 4, 5, 6]
        assert store.get_run(run_id).status == "finished"


@pytest.mark.parametrize("key", ["loss", "train.", ".loss", "train loss", "train..loss", 3])
def test_keys_must_be_namespaced(key):
    with pytest.raises(ValueError, match=r"is not of the form 'phase.name'"):
        Tracker(console=False).add(1, {key: 1.0})


def test_values_must_be_scalars():
    tracker = Tracker(console=False)
    with pytest.raises(ValueError, match=r"tracker value of 'train.loss' has shape \[2\]; expected a scalar"):
        tracker.add(1, {"train.loss": torch.ones(2)})
    with pytest.raises(TypeError, match=r"tracker value of 'train.loss' is a str"):
        tracker.add(1, {"train.loss": "0.5"})
    with pytest.raises(KeyError, match=r"tracker has no values for 'valid.loss'"):
        tracker.latest("valid.loss")
    with pytest.raises(ValueError, match="store and run_id go together"):
        Tracker(run_id="x", console=False)


def test_phases_show_their_own_namespace():
    out = io.StringIO()
    clock = iter(range(1000)).__next__
    sink = ConsoleSink(Console(file=out, width=200), live=False, interval=5, clock=clock)
    tracker = Tracker(console=sink)
    tracker.start_phase("train", total=10, epoch=3)
    for step in range(10):
        tracker.add(step, {"train.loss": 1.0, "valid.accuracy": 0.5})
        tracker.advance()
    tracker.end_phase()
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("epoch 3 train") for line in lines)
    assert lines[-1].startswith("epoch 3 train 10/10 loss=1 ") and "it/s" in lines[-1]
    assert "accuracy" not in out.getvalue()


def test_aggregates_show_their_latest_value_and_per_step_values_their_moving_average():
    """An epoch's running accuracy averaged with earlier epochs' would misreport the epoch."""
    out = io.StringIO()
    tracker = Tracker(console=ConsoleSink(Console(file=out, width=200), live=False, interval=1e9), smoothing=20)
    for epoch, (loss, accuracy) in enumerate([(2.0, 0.90), (1.0, 0.99)]):
        tracker.start_phase("valid", total=1, epoch=epoch + 1)
        tracker.add(epoch, {"valid.loss": loss})
        tracker.add(epoch, {"valid.accuracy": accuracy}, smooth=False)
        tracker.advance()
        tracker.end_phase()
    assert out.getvalue().splitlines()[-1].startswith("epoch 2 valid 1/1 loss=1.5 accuracy=0.99 ")
    assert tracker.smoothed("valid.accuracy") == pytest.approx(0.945) and tracker.latest("valid.accuracy") == 0.99
