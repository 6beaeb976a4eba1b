"""The SQLite run store: runs, provenance, tags, kinds, statuses, batched writes, run ids, truncation, schemas,
failure messages."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3

import time

import pytest

import cadence.track.store as store_module
from cadence.track import RunStore, Series
from cadence.track.history import histories


def series(store: RunStore, run_id: str) -> dict[str, tuple[list[int], list[float]]]:
    """Every key of run ``run_id`` with its steps and values, as plain lists, read back through the series API."""
    return {key: (h.steps.tolist(), h.values.tolist()) for key, h in histories(store, run_id).items()}


def test_run_round_trip(tmp_path):
    with RunStore(tmp_path / "runs") as store:
        run_id = store.create_run("mnist", {"epochs": 2, "optimizer": {"lr": 1e-3}})
        store.add_values(run_id, {"train.loss": ([1, 2], [2.0, 1.5]), "valid.accuracy": ([2], [0.9])})
        store.add_values(run_id, {"train.loss": ([3], [1.0])})
        running = store.get_run(run_id)
        store.finish(run_id, "finished")
        run = store.get_run(run_id)
        assert series(store, run_id) == {"train.loss": ([1, 2, 3], [2.0, 1.5, 1.0]), "valid.accuracy": ([2], [0.9])}
    assert running.status == "running" and running.end_time is None and running.duration is None
    assert run.status == "finished" and run.duration >= 0 and run.error is None
    assert run.config == {"epochs": 2, "optimizer": {"lr": 1e-3}} and run.name == "mnist"
    assert run.last_metrics == {"train.loss": 1.0, "valid.accuracy": 0.9}
    assert json.loads((tmp_path / "runs" / run_id / "config.json").read_text()) == run.config


def test_runs_are_listed_newest_first_and_survive_reopening(tmp_path):
    with RunStore(tmp_path) as store:
        first = store.create_run("a", {})
        second = store.create_run("b", {})
        store.finish(first, "failed", "ValueError: boom")
    with RunStore(tmp_path) as store:
        runs = store.list_runs()
    assert [r.id for r in runs] == [second, first]
    assert runs[1].status == "failed" and runs[1].error == "ValueError: boom"


def test_nan_is_stored_and_read_back(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {})
        store.add_values(run_id, {"train.loss": ([1], [math.nan])})
        assert math.isnan(store.values(run_id, "train.loss")[1][0])
        assert math.isnan(store.get_run(run_id).last_metrics["train.loss"])


def test_values_are_written_in_one_transaction(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {})
        statements = []
        store._db.set_trace_callback(statements.append)
        store.add_values(run_id, {key: (range(1000), [float(step) for step in range(1000)])
                                  for key in ("train.loss", "train.lr")})
        store._db.set_trace_callback(None)
        assert all(len(store.values(run_id, key)[0]) == 1000 for key in ("train.loss", "train.lr"))
    assert sum(s.strip().upper().startswith("COMMIT") for s in statements) == 1


def test_a_series_written_in_many_chunks_reads_back_whole_and_in_step_order(tmp_path):
    """A tracker hands values over in batches: each write is a chunk per key, and a key's series is all of them."""
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        for first in range(1, 100, 10):  # ten chunks of ten steps; valid.loss once per chunk
            steps = range(first, first + 10)
            columns = {"train.loss": (steps, [-float(s) for s in steps]), "valid.loss": ([steps[-1]], [0.5])}
            store.add_values(run_id, columns, {"train.loss": Series("moving", 15)})
        store.add_values(run_id, {"train.loss": ([0], [7.0])})  # written last, its step first
        store.add_values(run_id, {"valid.loss": ([100], [0.25])})  # a second value at a step: after the first
        steps, values = store.values(run_id, "train.loss")
        assert steps.tolist() == list(range(101)) and values.tolist() == [7.0] + [float(-s) for s in range(1, 101)]
        steps, values = store.values(run_id, "valid.loss")
        assert steps.tolist() == [*range(10, 101, 10), 100] and values.tolist() == [0.5] * 10 + [0.25]
        # The final value of a moving key spans chunks: the mean of the last 15 values, over two chunks.
        assert store.get_run(run_id).last_metrics["train.loss"] == sum(-s for s in range(86, 101)) / 15
        assert store.values(run_id, "nothing")[0].tolist() == []


def test_unknown_run_and_bad_status_fail_clearly(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {})
        with pytest.raises(KeyError, match=r"no run 'nope' in .*runs.sqlite \(`cadence runs` lists the runs\)"):
            store.get_run("nope")
        with pytest.raises(KeyError, match=r"no run 'nope'"):
            store.truncate("nope", 3)
        with pytest.raises(KeyError, match="no run 'nope'"):
            store.finish("nope", "finished")
        with pytest.raises(ValueError, match=r"run status 'done' is not an end state; expected one of finished, "
                                             r"failed, interrupted"):
            store.finish(run_id, "done")
        assert store.get_run(run_id).status == "running"


def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"this is not sqlite " * 100)
    with pytest.raises(ValueError, match=r"runs.sqlite is not a usable cadence run database"):
        RunStore(tmp_path)


def test_two_stores_on_one_directory_see_each_others_runs(tmp_path):
    with RunStore(tmp_path) as a, RunStore(tmp_path) as b:
        run_id = a.create_run("a", {})
        a.add_values(run_id, {"train.loss": ([1], [0.5])})
        assert b.get_run(run_id).last_metrics == {"train.loss": 0.5}
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def draw(monkeypatch, *ids: str) -> None:
    """Make the store draw ``ids``, in turn, as new run ids."""
    drawn = iter(ids)
    monkeypatch.setattr(store_module, "new_run_id", lambda: next(drawn))


def test_an_id_taken_in_the_same_second_is_drawn_again(tmp_path, monkeypatch):
    draw(monkeypatch, "20261124-101010-abcd", "20261124-101010-abcd", "20261124-101010-ef01")
    with RunStore(tmp_path) as store:
        first = store.create_run("a", {"seed": 1})
        second = store.create_run("b", {"seed": 2})
        runs = {run.id: run for run in store.list_runs()}
    assert (first, second) == ("20261124-101010-abcd", "20261124-101010-ef01")
    assert runs[first].name == "a" and runs[second].name == "b" and runs[second].config == {"seed": 2}
    assert json.loads((tmp_path / first / "config.json").read_text()) == {"seed": 1}


def test_the_id_of_a_run_whose_folder_was_deleted_is_not_reused(tmp_path, monkeypatch):
    draw(monkeypatch, "20261124-101010-abcd", "20261124-101010-abcd", "20261124-101010-ef01")
    with RunStore(tmp_path) as store:
        first = store.create_run("a", {"seed": 1})
        shutil.rmtree(tmp_path / first)
        second = store.create_run("b", {})
        assert second == "20261124-101010-ef01" and store.get_run(first).config == {"seed": 1}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [second]


def test_no_free_id_fails_naming_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "new_run_id", lambda: "20261124-101010-abcd")
    with RunStore(tmp_path) as store:
        store.create_run("a", {})
        with pytest.raises(FileExistsError, match=f"no free run id in {tmp_path}: 100 ids drawn in a row were taken"):
            store.create_run("b", {})
        assert len(store.list_runs()) == 1


def test_ids_are_the_second_and_two_random_bytes():
    assert store_module.new_run_id()[:-5].replace("-", "").isdigit()
    assert len({store_module.new_run_id()[-4:] for _ in range(50)}) > 1


def test_provenance_tags_and_the_diff_are_recorded(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("mnist", {"seed": 0}, tags=["baseline", "lr-sweep", "baseline"],
                                  provenance={"command": "cadence train mnist", "git": {"commit": "abc"}},
                                  diff="--- a/x.py\n+++ b/x.py\n")
        run = store.get_run(run_id)
        store.set_tags(run_id, ["final"])
        assert store.get_run(run_id).tags == ("final",)
        with pytest.raises(ValueError, match=r"tag 'two words' is not a tag; expected a non-empty string without "
                                             r"spaces or commas"):
            store.set_tags(run_id, ["two words"])
        with pytest.raises(TypeError, match=r"tags='final' is a string; expected a list of tags"):
            store.create_run("mnist", {}, tags="final", provenance={})
    assert run.tags == ("baseline", "lr-sweep")
    assert run.provenance == {"command": "cadence train mnist", "git": {"commit": "abc"}}
    assert (tmp_path / run_id / "source.diff").read_text() == "--- a/x.py\n+++ b/x.py\n"


def test_provenance_is_collected_when_not_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with RunStore(tmp_path / "runs") as store:
        provenance = store.get_run(store.create_run("a", {})).provenance
    assert provenance["torch"] and provenance["python"] and provenance["host"] and provenance["git"] is None


def test_each_key_records_its_kind_and_a_moving_key_ends_at_its_average(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        store.add_values(run_id, {"train.loss": (range(1, 11), range(1, 11))}, {"train.loss": Series("moving", 4)})
        store.add_values(run_id, {"valid.loss": ([10], [0.5]), "train.lr": ([10], [0.1])},
                         {"valid.loss": Series("epoch")})
        run = store.get_run(run_id)
    assert run.series == {"train.loss": Series("moving", 4), "valid.loss": Series("epoch"),
                          "train.lr": Series("value")}
    assert run.last_metrics == {"train.loss": 8.5, "valid.loss": 0.5, "train.lr": 0.1}
    assert run.series["train.loss"].label("train.loss") == "train.loss(avg4)"


def test_truncate_replaces_the_values_after_the_step_and_marks_the_run_running(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        store.add_values(run_id, {key: (range(1, 11), range(1, 11)) for key in ("train.loss", "valid.loss")})
        store.finish(run_id, "interrupted", "SIGKILL")
        store.truncate(run_id, 5)
        assert store.get_run(run_id).status == "running" and store.get_run(run_id).error is None
        store.add_values(run_id, {"train.loss": ([6, 7, 8], [-6.0, -7.0, -8.0])})
        assert series(store, run_id) == {"train.loss": ([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, -6, -7, -8]),
                                         "valid.loss": ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])}


def ids(monkeypatch, *run_ids) -> None:
    drawn = iter(run_ids)
    monkeypatch.setattr(store_module, "new_run_id", lambda: next(drawn))


def test_a_run_id_may_be_any_unique_prefix(tmp_path, monkeypatch):
    ids(monkeypatch, "20261124-101010-abcd", "20261124-101010-abff", "20261125-090000-0123")
    with RunStore(tmp_path) as store:
        for name in "abc":
            store.create_run(name, {}, provenance={})
        assert store.resolve("20261125") == "20261125-090000-0123"
        assert store.get_run("20261124-101010-abc").name == "a"
        assert store.resolve("20261124-101010-abff") == "20261124-101010-abff"
        with pytest.raises(KeyError, match=r"run id '20261124' is ambiguous in .*runs.sqlite: 2 runs start with it: "
                                           r"20261124-101010-abcd, 20261124-101010-abff"):
            store.resolve("20261124")
        with pytest.raises(KeyError, match=r"no run '2026112x' in .*runs.sqlite; runs starting with '2026112': "
                                           r"20261124-101010-abcd, 20261124-101010-abff, 20261125-090000-0123"):
            store.get_run("2026112x")
        with pytest.raises(KeyError, match=r"no run 'x' in .*runs.sqlite \(`cadence runs` lists the runs\)"):
            store.resolve("x")


def test_delete_run_removes_its_records_values_and_folder(tmp_path):
    with RunStore(tmp_path) as store:
        keep, gone = (store.create_run(name, {}, provenance={}) for name in "ab")
        for run_id in (keep, gone):
            store.add_values(run_id, {"train.loss": ([1], [1.0])})
        store.delete_run(gone)
        assert [r.id for r in store.list_runs()] == [keep] and len(store.values(gone, "train.loss")[0]) == 0
        assert store.series(gone) == {} and series(store, keep) == {"train.loss": ([1], [1.0])}
        assert store._db.execute("SELECT COUNT(*) FROM chunks WHERE run_id = ?", (gone,)).fetchone() == (0,)
        with pytest.raises(KeyError, match="no run"):
            store.delete_run(gone)
    assert not (tmp_path / gone).exists() and (tmp_path / keep).is_dir()


def test_a_missing_database_is_not_created_by_a_reader(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no run database at .*nowhere/runs.sqlite \(`cadence train` records "
                                                r"runs there"):
        RunStore(tmp_path / "nowhere", create=False)
    assert not (tmp_path / "nowhere").exists()


V1_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL,
                   start_time REAL NOT NULL, end_time REAL, error TEXT);
CREATE TABLE metrics (run_id TEXT NOT NULL REFERENCES runs(id), step INTEGER NOT NULL, key TEXT NOT NULL, value REAL);
INSERT INTO runs VALUES ('20261101-000000-aaaa', 'mnist', 'finished', '{"seed": 1}', 1.0, 2.0, NULL);
INSERT INTO metrics VALUES ('20261101-000000-aaaa', 1, 'train.loss', 2.0);
"""


def dump(path) -> tuple[int, list[str]]:
    """A database's schema version and its contents, as SQL."""
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0], list(db.iterdump())


@pytest.mark.parametrize("version, script, advice", [
    (0, V1_SCHEMA, "An earlier, unreleased cadence (or another program) wrote it: move {runs} aside"),
    (1, "CREATE TABLE runs (id TEXT PRIMARY KEY); PRAGMA user_version = 1", "An earlier, unreleased cadence"),
    (99, "PRAGMA user_version = 99", "A newer cadence wrote it: upgrade cadence to read it, or move {runs} aside"),
], ids=["first-schema-unversioned", "earlier", "newer"])
def test_a_database_of_another_schema_is_refused_naming_both_versions_and_left_as_it_was(tmp_path, version, script,
                                                                                          advice):
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        db.executescript(script)
    before = dump(tmp_path / "runs.sqlite")
    with pytest.raises(ValueError) as info:
        RunStore(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'runs.sqlite'} is not a usable cadence run database: its schema version "
                              f"is {version}"), message
    assert f"this cadence reads and writes schema version {store_module.SCHEMA_VERSION} only" in message
    assert advice.format(runs=tmp_path) in message and "--runs-dir or CADENCE_RUNS" in message
    assert dump(tmp_path / "runs.sqlite") == before  # nothing added, changed or dropped


def test_a_new_database_is_created_at_this_cadences_schema_and_reopened(tmp_path):
    (tmp_path / "runs.sqlite").touch()  # an empty file is an empty SQLite database
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
    with RunStore(tmp_path) as store:
        assert store.get_run(run_id).name == "a"


def test_a_run_may_be_created_under_an_id_drawn_beforehand_but_not_one_taken(tmp_path):
    """The launcher of a run's processes draws the id, and rank 0 creates the run under it."""
    with RunStore(tmp_path) as store:
        planned = store_module.new_run_id()
        assert store.create_run("mnist", {}, provenance={}, run_id=planned) == planned
        assert store.get_run(planned).status == "running" and store.run_dir(planned).is_dir()
        with pytest.raises(FileExistsError, match=f"run id '{planned}' is taken in {tmp_path}"):
            store.create_run("mnist", {}, provenance={}, run_id=planned)
        assert [run.id for run in store.list_runs()] == [planned]


def test_events_are_kept_in_order_per_run_and_deleted_with_it(tmp_path):
    with RunStore(tmp_path) as store:
        a, b = (store.create_run(name, {}, provenance={}) for name in ("a", "b"))
        store.add_event(a, "interrupted", "SIGTERM: stopped at step 7", 7)
        store.add_event(b, "restarted", "restart 1")
        store.add_event(a, "resumed", "from step-7 (epoch 1)", 7)
        assert [(e.kind, e.step, e.message) for e in store.events(a)] == [
            ("interrupted", 7, "SIGTERM: stopped at step 7"), ("resumed", 7, "from step-7 (epoch 1)")]
        assert [(e.kind, e.step) for e in store.events(b)] == [("restarted", None)]
        events = store.events(a)
        assert events[0].time <= events[1].time
        store.delete_run(a)
        assert store.events(a) == [] and len(store.events(b)) == 1


def test_a_running_runs_time_left_is_its_pace_so_far_over_the_steps_it_plans(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("x", {}, provenance={})
        assert store.get_run(run_id).time_left(time.time()) is None  # no plan, no step yet
        store.plan(run_id, 100)
        store.add_values(run_id, {"train.loss": ([1, 25], [1.0, 0.5])})
        run = store.get_run(run_id)
        assert (run.step, run.planned_steps) == (25, 100)
        assert run.time_left(run.start_time + 10) == pytest.approx(30.0)  # 25 steps in 10 s: 75 more in 30 s
        store.finish(run_id, "finished")
        assert store.get_run(run_id).time_left(run.start_time + 10) is None
