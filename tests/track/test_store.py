"""The SQLite run store: runs, provenance, tags, kinds, statuses, batched writes, run ids, truncation, upgrades,
failure messages."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3

import pytest

import cadence.track.store as store_module
from cadence.track import RunStore, Series


def test_run_round_trip(tmp_path):
    with RunStore(tmp_path / "runs") as store:
        run_id = store.create_run("mnist", {"epochs": 2, "optimizer": {"lr": 1e-3}})
        store.add_metrics(run_id, [(1, "train.loss", 2.0), (2, "train.loss", 1.5), (2, "valid.accuracy", 0.9)])
        store.add_metrics(run_id, [(3, "train.loss", 1.0)])
        running = store.get_run(run_id)
        store.finish(run_id, "finished")
        run = store.get_run(run_id)
        assert store.metrics(run_id, "train.loss") == [(1, "train.loss", 2.0), (2, "train.loss", 1.5),
                                                       (3, "train.loss", 1.0)]
        assert len(store.metrics(run_id)) == 4
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
        store.add_metrics(run_id, [(1, "train.loss", math.nan)])
        assert math.isnan(store.metrics(run_id)[0][2]) and math.isnan(store.get_run(run_id).last_metrics["train.loss"])


def test_metrics_are_written_in_one_transaction(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {})
        statements = []
        store._db.set_trace_callback(statements.append)
        store.add_metrics(run_id, ((step, "train.loss", float(step)) for step in range(1000)))
        store._db.set_trace_callback(None)
        assert len(store.metrics(run_id)) == 1000
    assert sum(s.strip().upper().startswith("COMMIT") for s in statements) == 1


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
        a.add_metrics(run_id, [(1, "train.loss", 0.5)])
        assert b.get_run(run_id).last_metrics == {"train.loss": 0.5}
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def draw(monkeypatch, *ids: str) -> None:
    """Make the store draw ``ids``, in turn, as new run ids."""
    drawn = iter(ids)
    monkeypatch.setattr(store_module, "_new_run_id", lambda: next(drawn))


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
    monkeypatch.setattr(store_module, "_new_run_id", lambda: "20261124-101010-abcd")
    with RunStore(tmp_path) as store:
        store.create_run("a", {})
        with pytest.raises(FileExistsError, match=f"no free run id in {tmp_path}: 100 ids drawn in a row were taken"):
            store.create_run("b", {})
        assert len(store.list_runs()) == 1


def test_ids_are_the_second_and_two_random_bytes():
    assert store_module._new_run_id()[:-5].replace("-", "").isdigit()
    assert len({store_module._new_run_id()[-4:] for _ in range(50)}) > 1


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
        store.add_metrics(run_id, [(s, "train.loss", float(s)) for s in range(1, 11)],
                          {"train.loss": Series("moving", 4)})
        store.add_metrics(run_id, [(10, "valid.loss", 0.5), (10, "train.lr", 0.1)], {"valid.loss": Series("epoch")})
        run = store.get_run(run_id)
    assert run.series == {"train.loss": Series("moving", 4), "valid.loss": Series("epoch"),
                          "train.lr": Series("value")}
    assert run.last_metrics == {"train.loss": 8.5, "valid.loss": 0.5, "train.lr": 0.1}
    assert run.series["train.loss"].label("train.loss") == "train.loss(avg4)"


def test_truncate_replaces_the_values_after_the_step_and_marks_the_run_running(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        store.add_metrics(run_id, [(s, key, float(s)) for s in range(1, 11) for key in ("train.loss", "valid.loss")])
        store.finish(run_id, "interrupted", "SIGKILL")
        store.truncate(run_id, 5)
        assert store.get_run(run_id).status == "running" and store.get_run(run_id).error is None
        store.add_metrics(run_id, [(s, "train.loss", -float(s)) for s in range(6, 9)])
        rows = store.metrics(run_id, "train.loss")
    assert rows == [(s, "train.loss", float(s)) for s in range(1, 6)] + [(s, "train.loss", -float(s)) for s in (6, 7, 8)]


def ids(monkeypatch, *run_ids) -> None:
    drawn = iter(run_ids)
    monkeypatch.setattr(store_module, "_new_run_id", lambda: next(drawn))


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
            store.add_metrics(run_id, [(1, "train.loss", 1.0)])
        store.delete_run(gone)
        assert [r.id for r in store.list_runs()] == [keep] and store.metrics(gone) == []
        assert store.series(gone) == {} and len(store.metrics(keep)) == 1
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
CREATE INDEX metrics_by_run_key_step ON metrics (run_id, key, step);
INSERT INTO runs VALUES ('20261101-000000-aaaa', 'mnist', 'finished', '{"seed": 1}', 1.0, 2.0, NULL);
INSERT INTO metrics VALUES ('20261101-000000-aaaa', 1, 'train.loss', 2.0), ('20261101-000000-aaaa', 2, 'train.loss', 1.0);
"""


def test_a_database_of_the_first_schema_is_upgraded_in_place(tmp_path):
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        db.executescript(V1_SCHEMA)
    with RunStore(tmp_path) as store:
        run = store.get_run("20261101")
        new = store.create_run("b", {}, tags=["x"], provenance={"host": "h"})
        assert store.get_run(new).tags == ("x",)
    assert run.config == {"seed": 1} and run.tags == () and run.provenance == {}
    assert run.series == {"train.loss": Series("value")} and run.last_metrics == {"train.loss": 1.0}
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION


def test_a_database_of_a_newer_cadence_is_refused(tmp_path):
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ValueError, match=r"runs.sqlite is not a usable cadence run database: schema version 99 is "
                                         r"newer than this cadence's \(2\)"):
        RunStore(tmp_path)
