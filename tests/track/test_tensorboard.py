"""TensorBoard event files, read back with TensorBoard's own event reader; their records against TensorBoard's
own record writer; a run's files exported from the store equal to those written live."""

from __future__ import annotations

import io
import math

import pytest

from cadence.track import RunStore, Tracker
from cadence.track import tensorboard as tb

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow  # noqa: E402
from tensorboard.summary.writer.record_writer import RecordWriter  # noqa: E402


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of ``folder``, as TensorBoard shows them: ``{tag: [(step, value)]}``."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, pytest.approx(e.value, nan_ok=True)) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


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


@pytest.mark.parametrize("data", [b"", b"x", bytes(range(256)) * 3, b"\n\x08\x05" * 100])
def test_a_record_is_framed_byte_for_byte_as_tensorboards_record_writer_frames_it(data):
    reference = io.BytesIO()
    RecordWriter(reference).write(data)
    assert tb.record(data) == reference.getvalue()
    assert tb.record(data, pywrap_tensorflow.crc32c) == reference.getvalue()  # TensorBoard's Python checksum


def test_the_checksum_is_in_c_when_the_extra_is_installed():
    google_crc32c = pytest.importorskip("google_crc32c")
    assert google_crc32c.implementation == "c" and tb._crc32c() is google_crc32c.value


def record_a_run(store: RunStore, *, resume_at: int | None = None) -> str:
    """A run recorded live with TensorBoard files in its folder: a moving key written over several hand-overs, a
    raw key, epoch means at some steps, a NaN, to step 12; resumed from a checkpoint at step ``resume_at`` (its
    later values replaced: the store deletes them, TensorBoard discards them) to step 15."""
    run_id = store.create_run("a", {}, provenance={})
    checkpoint = None

    def add(tracker: Tracker, steps: range, scale: float) -> None:
        nonlocal checkpoint
        for step in steps:
            tracker.add(step, {"train.loss": scale * step, "train.lr": math.nan if step == 4 else step / 100})
            if step % 5 == 0:
                tracker.add(step, {"valid.loss": scale / step, "valid.accuracy": step / 20}, kind="epoch")
            if step == resume_at and checkpoint is None:
                checkpoint = tracker.state_dict()

    tracker = Tracker(store, run_id, smoothing=3, flush_every=7, tensorboard_dir=True)
    tracker.declare("train.loss", "moving")
    add(tracker, range(1, 13), 1.0)
    if resume_at is not None:
        tracker.close()
        tracker = Tracker(store, run_id, smoothing=3, flush_every=7, tensorboard_dir=True)
        tracker.load_state_dict(checkpoint)
        tracker.truncate(resume_at)
        add(tracker, range(resume_at + 1, 16), 10.0)
    tracker.finish("finished")
    tracker.close()
    return run_id


@pytest.mark.parametrize("resume_at", [None, 8])
def test_a_run_exported_from_the_store_shows_as_it_did_live(tmp_path, monkeypatch, resume_at):
    monkeypatch.setattr(tb, "EXPORT_STEPS", 4)  # the export in several writes: the averages go on across them
    with RunStore(tmp_path / "runs") as store:
        run_id = record_a_run(store, resume_at=resume_at)
        written = tb.export_run(store, run_id, tmp_path / "exported")
    live, exported = scalars(tmp_path / "runs" / run_id / "tensorboard"), scalars(tmp_path / "exported")
    assert exported == live
    assert set(live) == {"train/loss", "train/loss(avg3)", "train/lr", "valid/loss(epoch)", "valid/accuracy(epoch)"}
    assert live["train/loss(avg3)"][:4] == [(1, 1.0), (2, 1.5), (3, 2.0), (4, 3.0)]
    assert written == sum(map(len, live.values())) - len(live["train/loss(avg3)"])
    if resume_at is not None:
        assert live["train/loss"][7:10] == [(8, 8.0), (9, 90.0), (10, 100.0)]
        assert live["train/loss(avg3)"][7:10] == [(8, 7.0), (9, (7 + 8 + 90) / 3), (10, (8 + 90 + 100) / 3)]
        assert live["valid/loss(epoch)"] == [(5, 0.2), (10, 1.0), (15, 10 / 15)]


def test_an_export_into_a_folder_with_event_files_is_refused_and_a_run_without_values_exports_nothing(tmp_path):
    with RunStore(tmp_path / "runs") as store:
        run_id = store.create_run("a", {}, provenance={})
        assert tb.export_run(store, run_id, tmp_path / "exported") == 0
        assert scalars(tmp_path / "exported") == {}
        with pytest.raises(FileExistsError, match=r"exported holds TensorBoard event files already "
                                                  r"\(events.out.tfevents.\*\); export into a new or empty folder"):
            tb.export_run(store, run_id, tmp_path / "exported")
