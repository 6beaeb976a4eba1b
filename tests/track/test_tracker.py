"""The tracker: kinds, key checks, tensors read on the writer's thread only, batched writes off the training
thread, failing sinks, state for resuming, truncation."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import torch

import cadence.track.tracker as tracker_module
from cadence.track import RunStore, Tracker

WAIT = 10.0  # seconds any test waits for the writer's thread before failing


class ListSink:
    """A sink that keeps what it is given: ``calls`` in order, ``rows`` of every write."""

    name = "list"

    def __init__(self):
        self.calls, self.rows, self.series = [], [], {}

    def write(self, columns, series):
        rows = sorted(((step, key, value) for key, (steps, values) in columns.items()
                       for step, value in zip(steps, values)), key=lambda row: row[0])
        self.calls.append(("write", rows))
        self.rows += rows
        self.series = dict(series)

    def restore(self, windows):
        self.calls.append(("restore", {k: list(v) for k, v in windows.items()}))

    def truncate(self, step):
        self.calls.append(("truncate", step))

    def event(self, step, kind, message):
        self.calls.append(("event", step, kind, message))

    def finish(self, status, error):
        self.calls.append(("finish", status, error))

    def close(self):
        self.calls.append(("close",))


def quiet(**kwargs) -> Tracker:
    return Tracker(tensorboard_dir=False, **kwargs)


def reports(caplog) -> list[str]:
    """The lines the tracker reported (warnings of the ``cadence.track`` logger)."""
    return [record.getMessage() for record in caplog.records if record.name == "cadence.track"]


# -- kinds -------------------------------------------------------------------------------------

def test_a_moving_key_shows_the_mean_of_its_last_values_and_keeps_every_raw_value():
    sink = ListSink()
    tracker = quiet(smoothing=3, sinks=[sink])
    tracker.declare("train.loss", "moving")
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0], start=1):
        tracker.add(step, {"train.loss": value})
    assert tracker.shown("train.loss") == pytest.approx(4.0)
    assert tracker.latest("train.loss") == 5.0 and tracker.label("train.loss") == "train.loss(avg3)"
    tracker.flush()
    assert [v for _, _, v in sink.rows] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert (sink.series["train.loss"].kind, sink.series["train.loss"].window) == ("moving", 3)


def test_a_value_key_shows_its_latest_value_and_an_epoch_key_its_latest_mean():
    tracker = quiet()
    for step in (1, 2):
        tracker.add(step, {"train.lr": 0.1 * step})
        tracker.add(step, {"valid.accuracy": 0.5 + step / 10}, kind="epoch")
    assert tracker.shown("train.lr") == pytest.approx(0.2) and tracker.label("train.lr") == "train.lr"
    assert tracker.shown("valid.accuracy") == pytest.approx(0.7)
    assert tracker.label("valid.accuracy") == "valid.accuracy(epoch)" and tracker.kind("valid.accuracy") == "epoch"


def test_a_kind_is_fixed_once_declared_or_first_added_and_a_conflict_names_both():
    tracker = quiet()
    tracker.declare("train.loss", "moving")
    tracker.declare("train.loss", "moving")
    tracker.add(1, {"train.loss": 1.0})  # kind=None: the declared kind
    assert tracker.kind("train.loss") == "moving"
    with pytest.raises(ValueError, match=r"tracker key 'train.loss' is a 'moving' key \(the moving average over the "
                                         r"last N values\); it cannot also be 'epoch' \(the phase's mean"):
        tracker.add(2, {"train.loss": 1.0}, kind="epoch")
    tracker.add(1, {"valid.loss": 1.0}, kind="epoch")
    with pytest.raises(ValueError, match=r"'valid.loss' is a 'epoch' key .* cannot also be 'value'"):
        tracker.declare("valid.loss", "value")
    with pytest.raises(ValueError, match=r"Tracker.declare\('train.acc'\): kind='smooth' is not a kind of tracked "
                                         r"value; expected one of 'value', 'moving', 'epoch'"):
        tracker.declare("train.acc", "smooth")
    # A value refused leaves nothing behind.
    assert tracker.latest("train.loss") == 1.0 and "train.acc" not in tracker.keys()


# -- values --------------------------------------------------------------------------------------

def test_tensors_are_read_on_the_writers_thread_never_on_the_training_thread(tmp_path, monkeypatch):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        tracker = Tracker(store, run_id, tensorboard_dir=False, flush_every=7)

        def guarded(name):
            original = getattr(torch.Tensor, name)

            def read(self, *args, **kwargs):
                assert threading.current_thread() is not threading.main_thread(), \
                    f"the tracker read a tensor ({name}) on the training thread"
                return original(self, *args, **kwargs)
            return read

        values = [torch.tensor(float(i)) for i in range(50)]
        with monkeypatch.context() as patch:
            for name in ("item", "tolist", "__float__", "__bool__"):
                patch.setattr(torch.Tensor, name, guarded(name))
            for step, value in enumerate(values, start=1):
                tracker.add(step, {"train.loss": value * 2, "train.count": torch.tensor(step)})
            tracker.flush()  # a read on the writer's thread, waited for here
        assert store.values(run_id, "train.loss")[1].tolist() == [2.0 * i for i in range(50)]
        assert store.values(run_id, "train.count")[1].tolist() == list(range(1, 51))
        tracker.close()


def test_a_tensor_that_requires_grad_is_read_detached():
    tracker = quiet()
    x = torch.tensor([2.0], requires_grad=True)
    tracker.add(1, {"train.loss": (x * 3).sum()})
    assert tracker.latest("train.loss") == 6.0


def test_later_values_of_a_key_are_checked_too():
    """After a key's first value, values of the same keys are checked a column at a time on the writer's thread,
    and a value refused there is raised on the training thread at the next hand-over."""
    tracker = quiet()
    x = torch.tensor([2.0], requires_grad=True)
    for step in range(1, 4):
        tracker.add(step, {"train.loss": (x * step).sum(), "train.count": step, "train.acc": torch.ones(1)})
    assert tracker.latest("train.loss") == 6.0
    assert tracker.latest("train.count") == 3 and tracker.latest("train.acc") == 1.0
    for step, count, acc in ((4, 4, 1.0), (5, "five", 1.0)):  # step 4 checked in full, step 5 on the writer's thread
        tracker.add(step, {"train.loss": 1.0, "train.count": count, "train.acc": acc})
    with pytest.raises(TypeError, match=r"tracker value of 'train.count' at step 5 is a str; expected a number"):
        tracker.flush()
    for step, acc in ((6, 1.0), (7, torch.ones(2))):
        tracker.add(step, {"train.loss": 1.0, "train.count": step, "train.acc": acc})
    with pytest.raises(ValueError, match=r"tracker value of 'train.acc' at step 7 has shape \[2\]; expected a scalar"):
        tracker.latest("train.acc")


def test_values_go_to_the_sinks_every_flush_every_values():
    sink = ListSink()
    tracker = quiet(flush_every=4, sinks=[sink])
    for step in range(1, 7):
        tracker.add(step, {"train.loss": float(step)})
    tracker.flush()
    writes = [call[1] for call in sink.calls if call[0] == "write"]
    assert [[step for step, _, _ in rows] for rows in writes] == [[1, 2, 3, 4], [5, 6]]


def test_values_go_to_the_sinks_after_flush_seconds(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(tracker_module, "monotonic", lambda: now[0])
    sink = ListSink()
    tracker = quiet(flush_every=1000, flush_seconds=5.0, sinks=[sink])
    tracker.add(1, {"train.loss": 1.0})
    now[0] += 4.0
    tracker.add(2, {"train.loss": 2.0})
    tracker._writer.wait()
    assert sink.rows == []
    now[0] += 1.0
    tracker.add(3, {"train.loss": 3.0})
    tracker._writer.wait()
    assert [step for step, _, _ in sink.rows] == [1, 2, 3]


def test_adding_never_waits_for_a_sink():
    """A sink stuck on its disk holds the writer's thread, not the training step."""
    entered, release = threading.Event(), threading.Event()

    class Stuck(ListSink):
        def write(self, columns, series):
            entered.set()
            release.wait(WAIT)
            super().write(columns, series)

    sink = Stuck()
    tracker = quiet(flush_every=1, sinks=[sink])
    tracker.add(1, {"train.loss": 1.0})
    assert entered.wait(WAIT)
    for step in range(2, 100):  # the first write is still stuck: these return all the same
        tracker.add(step, {"train.loss": float(step)})
    assert sink.rows == [] and not release.is_set()
    release.set()
    tracker.flush()
    assert [step for step, _, _ in sink.rows] == list(range(1, 100))


@pytest.mark.parametrize("key", ["loss", "train.", ".loss", "train loss", "train..loss", 3])
def test_keys_must_be_namespaced(key):
    with pytest.raises(ValueError, match=r"is not of the form 'phase.name'"):
        quiet().add(1, {key: 1.0})


def test_values_and_steps_must_be_numbers():
    tracker = quiet()
    with pytest.raises(ValueError, match=r"tracker value of 'train.loss' has shape \[2\]; expected a scalar"):
        tracker.add(1, {"train.loss": torch.ones(2)})
    with pytest.raises(TypeError, match=r"tracker value of 'train.loss' is a str"):
        tracker.add(1, {"train.loss": "0.5"})
    with pytest.raises(TypeError, match=r"Tracker.add: step=1.5 is a float; expected an integer"):
        tracker.add(1.5, {"train.loss": 0.5})
    with pytest.raises(KeyError, match=r"tracker has no values for 'valid.loss'"):
        tracker.latest("valid.loss")
    with pytest.raises(ValueError, match="store and run_id go together"):
        Tracker(run_id="x")
    with pytest.raises(ValueError, match="Tracker: smoothing=0 is out of range; expected smoothing >= 1"):
        Tracker(smoothing=0)


# -- failing sinks -------------------------------------------------------------------------------

class Failing(ListSink):
    name = "flaky"

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures

    def write(self, columns, series):
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        super().write(columns, series)


def test_a_failing_sink_is_reported_once_and_training_goes_on(caplog):
    sink, other = Failing(failures=3), ListSink()
    tracker = quiet(flush_every=2, sinks=[sink, other])
    for step in range(1, 11):
        tracker.add(step, {"train.loss": float(step)})
        tracker.flush()  # each batch written (or not) before the next
    tracker.finish("finished")
    tracker.close()
    lines = reports(caplog)
    failures = [line for line in lines if "the flaky sink failed" in line]
    assert len(failures) == 1 and "OSError: [Errno 28] No space left on device; training goes on" in failures[0]
    assert lines[-1] == "tracker: flaky: 3 write(s) failed, 3 value(s) not recorded"
    assert [s for s, _, _ in sink.rows] == list(range(4, 11))  # tried again, and recorded once it worked
    assert [s for s, _, _ in other.rows] == list(range(1, 11))  # the other sink missed nothing
    assert ("finish", "finished", None) in sink.calls


def test_a_locked_database_is_reported_and_the_values_after_it_are_written(tmp_path, caplog):
    with RunStore(tmp_path, timeout=0.05) as store:
        run_id = store.create_run("a", {}, provenance={})
        tracker = quiet(store=store, run_id=run_id)
        locker = sqlite3.connect(tmp_path / "runs.sqlite", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holding the database
        tracker.add(1, {"train.loss": 1.0})
        tracker.flush()
        locker.execute("ROLLBACK")
        locker.close()
        tracker.add(2, {"train.loss": 2.0})
        tracker.finish("finished")
        tracker.close()
        assert store.values(run_id, "train.loss")[0].tolist() == [2] and store.get_run(run_id).status == "finished"
    text = "\n".join(reports(caplog))
    assert text.count("the store sink failed") == 1 and "database is locked" in text
    assert "store: 1 write(s) failed, 1 value(s) not recorded" in text


def test_a_full_disk_under_the_database_is_reported_and_training_goes_on(tmp_path, caplog):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        tracker = quiet(store=store, run_id=run_id, flush_every=500)
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite's own "disk full"
        for step in range(1, 2001):
            tracker.add(step, {"train.loss": float(step)})
        tracker.flush()
        tracker.close()
        assert len(store.values(run_id, "train.loss")[0]) < 2000
    text = "\n".join(reports(caplog))
    assert text.count("the store sink failed") == 1 and "database or disk is full" in text


# -- resuming ------------------------------------------------------------------------------------

def test_state_dict_restores_the_display_of_a_resumed_run(tmp_path):
    tracker = quiet(smoothing=3)
    tracker.declare("train.loss", "moving")
    for step in range(1, 6):
        tracker.add(step, {"train.loss": torch.tensor(float(step)), "train.lr": 0.1 * step})
    tracker.add(5, {"valid.accuracy": 0.9}, kind="epoch")
    torch.save(tracker.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)

    sink = ListSink()
    resumed = quiet(smoothing=3, sinks=[sink])
    resumed.load_state_dict(state)
    for key in ("train.loss", "train.lr", "valid.accuracy"):
        assert resumed.shown(key) == pytest.approx(tracker.shown(key)) and resumed.label(key) == tracker.label(key)
    resumed.add(6, {"train.loss": 6.0})
    tracker.add(6, {"train.loss": 6.0})
    assert resumed.shown("train.loss") == pytest.approx(tracker.shown("train.loss")) == 5.0
    resumed.flush()
    assert sink.calls[0] == ("restore", {"train.loss": [3.0, 4.0, 5.0]})


def test_a_state_whose_kinds_conflict_is_refused():
    tracker = quiet()
    tracker.declare("train.loss", "moving")
    other = quiet()
    other.declare("train.loss", "value")
    with pytest.raises(ValueError, match=r"'train.loss' is a 'value' key .* cannot also be 'moving'"):
        other.load_state_dict(tracker.state_dict())
    with pytest.raises(ValueError, match=r"Tracker.load_state_dict: the state has no windows"):
        other.load_state_dict({"kinds": {}, "last": {}})


def test_a_resumed_run_replaces_the_values_after_its_checkpoint(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        first = Tracker(store, run_id, tensorboard_dir=False, smoothing=4)
        first.declare("train.loss", "moving")
        for step in range(1, 11):
            first.add(step, {"train.loss": float(step)})
            if step == 6:
                checkpoint = first.state_dict()
        first.finish("interrupted", "KeyboardInterrupt")
        first.close()

        resumed = Tracker(store, run_id, tensorboard_dir=False, smoothing=4)
        resumed.load_state_dict(checkpoint)
        resumed.truncate(6)
        assert resumed.shown("train.loss") == pytest.approx(4.5) and resumed.latest("train.loss") == 6.0
        assert store.get_run(run_id).status == "running"
        for step in range(7, 9):
            resumed.add(step, {"train.loss": float(step) + 0.5})
        resumed.finish("finished")
        resumed.close()
        steps, values = store.values(run_id, "train.loss")
        assert steps.tolist() == list(range(1, 9)) and values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.5, 8.5]
        assert store.get_run(run_id).status == "finished"


def test_truncate_forgets_the_later_values_held_here():
    tracker = quiet(smoothing=4)
    tracker.declare("train.loss", "moving")
    for step in range(1, 6):
        tracker.add(step, {"train.loss": float(step), "train.lr": float(step)})
    tracker.truncate(3)
    assert tracker.shown("train.loss") == pytest.approx(2.5)  # its window still holds steps 1 to 3
    with pytest.raises(KeyError, match="tracker has no values for 'train.lr' yet"):  # only step 5 was held
        tracker.latest("train.lr")


def test_closing_twice_is_harmless_and_adding_after_close_fails_clearly():
    sink = ListSink()
    tracker = quiet(sinks=[sink], flush_every=1)
    tracker.close()
    tracker.close()
    assert sink.calls == [("close",)]
    with pytest.raises(RuntimeError, match="the tracker's writer is closed; cannot record more values"):
        tracker.add(1, {"train.loss": 1.0})
