"""The `cadence` command: list, config, train (errors, interrupts, exit codes). The run tools: test_runs.py."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from cadence.cli import main
from cadence.data import MNIST
from cadence.experiments import EXPERIMENTS, Experiment
from cadence.track import RunStore
from cadence.train import Trainer


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


@pytest.mark.parametrize("argv, stray", [
    (["list", "extra"], "extra"),
    (["config", "mnist", "--verbose"], "--verbose"),
    (["train", "mnist", "epochs=1", "--bogus"], "--bogus"),
])
def test_stray_arguments_exit_2_naming_them(tmp_path, capsys, argv, stray):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert f"error: unrecognized arguments: {stray}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@dataclass
class TinyConfig:
    """A tiny experiment for the command's own paths: ``fail`` names what goes wrong, and where."""

    epochs: int = 1
    fail: str = ""


class InterruptedTrainer(Trainer):
    """Ctrl+C in the middle of the first step."""

    def step(self, batch, batch_index):
        raise KeyboardInterrupt


BUILD_ERRORS = {
    "interrupt-build": KeyboardInterrupt(),
    "value": ValueError("num_threads=-1; expected 0 or a positive count"),
    "missing-data": FileNotFoundError("MNIST files missing from /nowhere/mnist: place train-images-idx3-ubyte.gz there"),
    "key-bug": KeyError("a bug in the experiment's own code"),
    "runtime-bug": RuntimeError("a bug in the experiment's own code"),
}


def build_tiny(config: TinyConfig, data_dir) -> Trainer:
    if config.fail in BUILD_ERRORS:
        raise BUILD_ERRORS[config.fail]
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    data = [(torch.randn(4, 2), torch.randint(0, 2, (4,))) for _ in range(3)]
    trainer = InterruptedTrainer if config.fail == "interrupt-train" else Trainer
    return trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data, loss_fn=nn.functional.cross_entropy,
                   epochs=config.epochs)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """``cadence train tiny ...`` with runs in ``tmp_path / "runs"``: returns ``run(*overrides)``, the exit status."""
    monkeypatch.setitem(EXPERIMENTS, "tiny", Experiment("tiny", "a two-parameter model", TinyConfig, build_tiny))
    return lambda *overrides: main(["train", "tiny", *overrides, "--runs-dir", str(tmp_path / "runs")])


def runs_of(tmp_path) -> list:
    with RunStore(tmp_path / "runs") as store:
        return store.list_runs()


def test_a_finished_run_exits_0(tiny, tmp_path, capsys):
    assert tiny("epochs=2") == 0
    [run] = runs_of(tmp_path)
    assert run.status == "finished" and f"checkpoint: {tmp_path / 'runs' / run.id / 'checkpoint.pt'}" in \
        capsys.readouterr().out


def test_an_interrupt_while_training_exits_130_and_marks_the_run_interrupted(tiny, tmp_path, capsys):
    assert tiny("fail=interrupt-train") == 130
    assert "cadence train: interrupted; the run is marked interrupted" in capsys.readouterr().err
    [run] = runs_of(tmp_path)
    assert run.status == "interrupted"


def test_an_interrupt_before_training_exits_130_and_records_no_run(tiny, tmp_path, capsys):
    assert tiny("fail=interrupt-build") == 130
    assert capsys.readouterr().err.strip() == "cadence train: interrupted"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("fail", ["value", "missing-data"])
def test_a_build_error_exits_1_with_its_message_and_records_no_run(tiny, tmp_path, capsys, fail):
    assert tiny(f"fail={fail}") == 1
    assert capsys.readouterr().err.strip() == f"cadence train: error: {BUILD_ERRORS[fail]}"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("fail", ["key-bug", "runtime-bug"])
def test_a_bug_while_building_keeps_its_traceback_and_records_no_run(tiny, tmp_path, fail):
    # Not a usage error (exit 2 with a one-line message): the exception goes up, and Python shows where it came from.
    with pytest.raises(type(BUILD_ERRORS[fail])) as info:
        tiny(f"fail={fail}")
    assert info.value is BUILD_ERRORS[fail]
    assert not (tmp_path / "runs").exists()


def test_a_mistyped_override_of_any_experiment_exits_2(tiny, tmp_path, capsys):
    assert tiny("epochs=two") == 2
    assert "cadence train: error: override 'epochs=two': epochs expects a value of type int" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
