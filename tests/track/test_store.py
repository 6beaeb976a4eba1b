"""The SQLite run store: runs, statuses, batched metric writes, failure messages."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3

import pytest

import cadence.track.store as store_module
from cadence.track import RunStore


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
