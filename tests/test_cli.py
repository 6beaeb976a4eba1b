"""The `cadence` command: list, config, train (errors), runs."""

from __future__ import annotations

import sqlite3

import pytest

from cadence.cli import main
from cadence.data import MNIST


def test_list_shows_the_experiments(capsys):
    assert main(["list"]) == 0
    assert "mnist" in capsys.readouterr().out


def test_config_prints_the_resolved_config(capsys):
    assert main(["config", "mnist", "optimizer.lr=3e-4", "epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 2" in out and "lr: 0.0003" in out and "name: adam" in out


@pytest.mark.parametrize("override, message", [
    ("optimizer.nmae=adam", "unknown key 'optimizer.nmae'; did you mean 'optimizer.name'?"),
    ("optimizer.lr=3e-4x", "optimizer.lr expects a value of type float, got '3e-4x'"),
])
def test_train_refuses_a_mistyped_override_before_touching_data_or_runs(tmp_path, capsys, override, message):
    assert main(["train", "mnist", override, "--data-dir", str(tmp_path / "nodata"),
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "cadence train: error:" in err and message in " ".join(err.split())
    assert not (tmp_path / "runs").exists()


def test_unknown_experiment_lists_the_known_ones(capsys):
    assert main(["config", "imagenet"]) == 2
    assert "unknown experiment 'imagenet'; known experiments: mnist" in capsys.readouterr().err


def test_train_offline_without_data_names_the_folder_and_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(MNIST, "MIRRORS", ("http://127.0.0.1:9/mnist/",))
    assert main(["train", "mnist", "--data-dir", str(tmp_path / "empty"), "--runs-dir", str(tmp_path / "runs")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert str(tmp_path / "empty" / "mnist") in err and "train-images-idx3-ubyte.gz" in err
    assert not (tmp_path / "runs").exists()


def test_runs_on_an_empty_directory(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path / "runs")]) == 0


def test_train_records_a_run_listed_by_cadence_runs(tmp_path, capsys, data_dir):
    runs = tmp_path / "runs"
    assert main(["train", "mnist", "epochs=1", "batch_size=256", "--data-dir", str(data_dir),
                 "--runs-dir", str(runs)]) == 0
    captured = capsys.readouterr()
    assert "finished" in captured.err and "checkpoint.pt" in captured.out
    with sqlite3.connect(runs / "runs.sqlite") as db:
        (run_id, status), = db.execute("SELECT id, status FROM runs").fetchall()
    assert status == "finished" and (runs / run_id / "checkpoint.pt").is_file()
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "finished" in listing
