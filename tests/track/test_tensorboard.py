"""TensorBoard event files, read back with TensorBoard's own event reader."""

from __future__ import annotations

import pytest

from cadence.track import RunStore, Tracker

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of ``folder``, as TensorBoard shows them: ``{tag: [(step, value)]}``."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, pytest.approx(e.value)) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_each_kind_has_its_tag_in_the_runs_folder(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        tracker = Tracker(store, run_id, smoothing=2, tensorboard_dir=True)
        tracker.declare("train.loss", "moving")
        for step in (1, 2, 3):
            tracker.add(step, {"train.loss": float(step), "train.lr": step / 10})
        tracker.add(3, {"valid.accuracy": 0.75}, kind="epoch")
        tracker.finish("finished")
        tracker.close()
    assert scalars(tmp_path / run_id / "tensorboard") == {
        "train/loss": [(1, 1.0), (2, 2.0), (3, 3.0)],
        "train/loss(avg2)": [(1, 1.0), (2, 1.5), (3, 2.5)],
        "train/lr": [(1, 0.1), (2, 0.2), (3, 0.3)],
        "valid/accuracy(epoch)": [(3, 0.75)],
    }


def test_a_resumed_run_replaces_the_later_events_and_continues_the_averages(tmp_path):
    first = Tracker(tensorboard_dir=tmp_path, smoothing=3)
    first.declare("train.loss", "moving")
    for step in range(1, 7):
        first.add(step, {"train.loss": float(step)})
        if step == 4:
            checkpoint = first.state_dict()
    first.close()

    resumed = Tracker(tensorboard_dir=tmp_path, smoothing=3)
    resumed.load_state_dict(checkpoint)
    resumed.truncate(4)
    for step in (5, 6):
        resumed.add(step, {"train.loss": 10.0 * step})
    resumed.close()
    shown = scalars(tmp_path)
    assert shown["train/loss"] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0), (6, 60.0)]
    # The window of steps 2 to 4 was restored: step 5's average is (3 + 4 + 50) / 3.
    assert shown["train/loss(avg3)"][-2:] == [(5, 19.0), (6, 38.0)]


def test_tensorboard_is_off_unless_asked_for(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        for option in ({}, {"tensorboard_dir": False}):
            tracker = Tracker(store, run_id, **option)
            tracker.add(1, {"train.loss": 1.0})
            tracker.close()
    assert not (tmp_path / run_id / "tensorboard").exists()


def test_tensorboard_in_the_runs_folder_needs_a_store():
    with pytest.raises(ValueError, match="tensorboard_dir=True puts the event files in the run's folder"):
        Tracker(tensorboard_dir=True)


def test_without_the_extra_events_are_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr("cadence.track.tensorboard.tensorboard_available", lambda: False)
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        with pytest.raises(ImportError, match=r"need the tensorboard package: pip install 'cadence\[tensorboard\]'"):
            Tracker(store, run_id, tensorboard_dir=True)
