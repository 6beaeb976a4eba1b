"""The `cadence` command: list, config, train (errors, interrupts, exit codes). The run tools: test_runs.py."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest
import safetensors.torch
import torch
from torch import nn

from cadence.cli import main
from cadence.data import MNIST
from cadence.experiments import EXPERIMENTS, Experiment, RunConfig
from cadence.experiments.runs import build_trainer, prepare
from cadence.optim import OptimizerConfig
from cadence.track import RunStore
from cadence.track.checkpoints import latest_checkpoint, read_meta
from cadence.track.history import histories
from cadence.train import Trainer


def test_list_shows_the_experiments(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("mnist", "shakespeare", "cifar10"))


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
    assert "unknown experiment 'imagenet'; known experiments: cifar10, mnist, shakespeare" in capsys.readouterr().err


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
class TinyConfig(RunConfig):
    """A tiny experiment for the command's own paths: ``fail`` names what goes wrong, and where."""

    epochs: int = 1
    fail: str = ""
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.1))


class CtrlCAt:
    """Sends this process SIGINT after optimizer step ``step``, as a first Ctrl+C would."""

    def __init__(self, step: int):
        self.step = step

    def on_optimizer_step(self, trainer):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


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


def build_tiny(config: TinyConfig, data_dir):
    if config.fail in BUILD_ERRORS:
        raise BUILD_ERRORS[config.fail]
    setup = prepare(config)
    model = nn.Linear(2, 2)
    data = [(torch.randn(4, 2), torch.randint(0, 2, (4,))) for _ in range(3)]
    if config.fail == "diverge":  # a NaN in the second batch: the loss of step 2 is not finite
        data[1] = (torch.full((4, 2), float("nan")), data[1][1])
    return build_trainer(setup, model, data, None, loss_fn=nn.functional.cross_entropy,
                         trainer=InterruptedTrainer if config.fail == "interrupt-train" else Trainer,
                         callbacks=[CtrlCAt(4)] if config.fail == "ctrl-c" else ())


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
    newest = tmp_path / "runs" / run.id / "checkpoints" / "step-6"
    assert run.status == "finished" and f"run {run.id} finished; newest checkpoint: {newest}" in \
        capsys.readouterr().out


def test_an_interrupt_while_training_exits_130_and_marks_the_run_interrupted(tiny, tmp_path, capsys):
    assert tiny("fail=interrupt-train") == 130
    assert "cadence train: stopped at once (a second Ctrl+C); the run is marked interrupted" in capsys.readouterr().err
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


# -- resuming and interrupting runs ----------------------------------------------------------------


def weights(run_dir) -> dict:
    return safetensors.torch.load_file(latest_checkpoint(run_dir / "checkpoints") / "model.safetensors")


def test_resume_continues_the_run_in_its_record_and_records_more_epochs(tiny, tmp_path, capsys):
    assert tiny("epochs=1") == 0
    [run] = runs_of(tmp_path)
    assert main(["train", "tiny", "--resume", run.id, "epochs=3", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert "resumed run" in capsys.readouterr().err
    [resumed] = runs_of(tmp_path)
    assert resumed.id == run.id and resumed.status == "finished" and resumed.config["epochs"] == 3
    with RunStore(tmp_path / "runs") as store:
        assert store.values(run.id, "train.loss")[0].tolist() == list(range(1, 10))
    # The same weights as a run of 3 epochs never stopped.
    assert tiny("epochs=3") == 0
    straight = next(r for r in runs_of(tmp_path) if r.id != run.id)
    for key, value in weights(tmp_path / "runs" / run.id).items():
        assert torch.equal(value, weights(tmp_path / "runs" / straight.id)[key])


def test_resume_refuses_an_override_that_changes_the_result(tiny, tmp_path, capsys):
    assert tiny("epochs=1") == 0
    [run] = runs_of(tmp_path)
    assert main(["train", "tiny", "--resume", run.id, "optimizer.lr=0.2", "seed=3",
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"cadence train: error: --resume {run.id}: an override would change what the run computes "
            f"(seed: 0 -> 3; optimizer.lr: 0.1 -> 0.2); only epochs, max_steps, num_threads, checkpoint_every, "
            f"keep_last, dist_timeout, strategy, checkpoint_async, tensorboard may change") in err
    assert runs_of(tmp_path)[0].config["optimizer"]["lr"] == 0.1


def test_resume_of_an_unknown_run_another_experiments_run_or_one_without_checkpoints(tiny, tmp_path, capsys,
                                                                                      monkeypatch):
    runs = str(tmp_path / "runs")
    assert main(["train", "tiny", "--resume", "nope", "--runs-dir", runs]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    monkeypatch.setitem(EXPERIMENTS, "other", Experiment("other", "", TinyConfig, build_tiny))
    assert main(["train", "other", "--runs-dir", runs]) == 0
    other = runs_of(tmp_path)[0]
    assert main(["train", "tiny", "--resume", other.id, "--runs-dir", runs]) == 2
    assert f"run {other.id} is a run of 'other', not of 'tiny'; resume it with `cadence train other --resume " \
           f"{other.id}`" in " ".join(capsys.readouterr().err.split())
    shutil.rmtree(tmp_path / "runs" / other.id / "checkpoints")
    assert main(["train", "other", "--resume", other.id, "--runs-dir", runs]) == 1
    assert f"run {other.id} has no checkpoint to resume from" in " ".join(capsys.readouterr().err.split())


def test_a_first_ctrl_c_saves_marks_the_run_and_exits_130_telling_how_to_resume(tiny, tmp_path, capsys):
    assert tiny("epochs=3", "fail=ctrl-c") == 130
    [run] = runs_of(tmp_path)
    out = " ".join(capsys.readouterr().out.split())
    assert run.status == "interrupted"
    assert f"run {run.id} interrupted; newest checkpoint: {tmp_path / 'runs' / run.id / 'checkpoints' / 'step-4'}" \
           f" (resume: cadence train tiny --resume {run.id})" in out


#: Seconds a wait on a `cadence` subprocess may take before the test fails (it is killed, not waited for).
TIMEOUT = 300


def lines(stream) -> queue.Queue:
    """The lines of ``stream`` as a reader thread gets them, then ``None`` at its end."""
    found: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            found.put(line.rstrip("\n"))
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    return found


def wait_for(found: queue.Queue, prefix: str, deadline: float, seen: list[str]) -> str:
    """The first line from ``found`` that starts with ``prefix``, by ``deadline`` (``time.monotonic()``); every line
    read is kept in ``seen``."""
    while True:
        try:
            line = found.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            pytest.fail(f"no line starting {prefix!r} within {TIMEOUT} s; got {seen[-20:]}")
        if line is None:
            pytest.fail(f"the process ended before printing a line starting {prefix!r}; got {seen[-20:]}")
        seen.append(line)
        if line.startswith(prefix):
            return line


@pytest.mark.slow
def test_sigterm_to_cadence_train_saves_a_checkpoint_marks_the_run_interrupted_and_exits_143(tmp_path, data_dir):
    """As a scheduler stops a job: the real command in its own process, sent SIGTERM once it is training (its first
    checkpoint written); far more epochs than it can train meanwhile, so the signal finds it training."""
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "cadence", "train", "mnist", "epochs=1000", "checkpoint_every=2",
                                "num_threads=1", "--data-dir", str(data_dir), "--runs-dir", str(runs)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    try:
        stderr = lines(process.stderr)
        wait_for(stderr, "checkpoint saved to ", time.monotonic() + TIMEOUT, err)
        process.send_signal(signal.SIGTERM)
        code = process.wait(TIMEOUT)
        out = process.stdout.read()
        while (line := stderr.get(timeout=TIMEOUT)) is not None:
            err.append(line)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
    assert code == 143, err[-20:]
    assert "SIGTERM: finishing the current step, then saving a checkpoint" in err
    [run] = runs_of(tmp_path)
    stopped = re.fullmatch(r"SIGTERM: stopped at step (\d+)", run.error or "")
    assert run.status == "interrupted" and stopped, (run.status, run.error)
    # The step it stopped at is saved: the newest checkpoint, complete, named in the closing line.
    step = int(stopped[1])
    newest = latest_checkpoint(runs / run.id / "checkpoints")
    assert step >= 2 and newest.name == f"step-{step}" and read_meta(newest)["step"] == step
    assert (newest / "model.safetensors").is_file()
    assert f"run {run.id} interrupted; newest checkpoint: {newest} (resume: cadence train mnist --resume {run.id})" \
        in " ".join(out.split())


@pytest.mark.slow
def test_data_parallel_mnist_from_plain_torchrun(tmp_path, data_dir):
    """``torchrun ... -m cadence train`` keeps working (``cadence train --nproc``: tests/train/test_launcher.py)."""
    runs = tmp_path / "runs"
    args = ["train", "mnist", "epochs=1", "batch_size=128", "num_threads=1", "--data-dir", str(data_dir),
            "--runs-dir", str(runs)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "cadence", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # One run, recorded and checkpointed by rank 0 alone; batch_size is the global batch: each process read 64 of
    # every 128, and the run took one process's steps.
    [run] = RunStore(runs).list_runs()
    assert run.status == "finished" and run.last_metrics["valid.accuracy"] > 0.9
    assert result.stdout.count(f"run {run.id} finished") == 1
    steps = -(-len(MNIST(data_dir, train=True).labels) // 128)
    assert [p.name for p in (runs / run.id / "checkpoints").iterdir()] == [f"step-{steps}"]


# -- sweeps (-m) -----------------------------------------------------------------------------------


def cells(line: str) -> list[str]:
    """The cells of a row of a table the command printed (rich's box drawing: ``┃`` in the header, ``│`` below)."""
    return [cell.strip() for cell in line.replace("┃", "│").strip().strip("│").split("│")]


def sweep(tmp_path, *args: str) -> int:
    return main(["train", "tiny", "-m", *args, "--runs-dir", str(tmp_path / "runs")])


def test_a_sweep_trains_a_tagged_run_per_point_and_ends_with_their_final_and_best_metrics(tiny, tmp_path, capsys):
    assert sweep(tmp_path, "optimizer.lr=0.1,0.2,0.4", "epochs=2", "seed=0,1") == 0
    captured = capsys.readouterr()
    runs = sorted(runs_of(tmp_path), key=lambda r: r.start_time)
    assert len(runs) == 6 and all(run.status == "finished" for run in runs)
    [tag] = {tuple(run.tags) for run in runs}
    assert len(tag) == 1 and tag[0].startswith("sweep-")
    # The product, the first override varying slowest; the point's values recorded in its run's config.
    assert [(run.config["optimizer"]["lr"], run.config["seed"], run.config["epochs"]) for run in runs] == \
        [(lr, seed, 2) for lr in (0.1, 0.2, 0.4) for seed in (0, 1)]
    # The table: a row per point, its run, and each metric's final (best), as the run store has them.
    out = captured.out
    assert f"sweep {tag[0]}: final (best) of each point" in out and f"6 of 6 points finished (cadence runs --tag " \
           f"{tag[0]})" in " ".join(out.split())
    # Each metric's cell is its final (best) value as the store has it: tiny's one metric is its moving train.loss.
    rows = [cells(line) for line in out.splitlines() if "│" in line or "┃" in line]
    assert rows[0][:3] == ["point", "run", "status"]
    with RunStore(tmp_path / "runs") as store:
        for run in runs:
            loss = histories(store, run.id)["train.loss"]
            (_, final), (_, best) = loss.final(), loss.best()
            assert len(loss.steps) == 6 and final > 0 and rows[0][3:] == [loss.shown()[1]]
            assert next(row for row in rows if run.id in row) == [
                f"optimizer.lr={run.config['optimizer']['lr']} seed={run.config['seed']}", run.id, "finished",
                f"{final:.4g} ({best:.4g})"]
    assert "point 1/6: optimizer.lr=0.1 epochs=2 seed=0" in captured.err
    # cadence compare --tag shows the sweep's runs side by side, in the order they ran, with the same metrics.
    assert main(["compare", "--tag", tag[0], "--runs-dir", str(tmp_path / "runs")]) == 0
    compared = capsys.readouterr().out
    assert " ".join(compared.splitlines()[1].split()) == "key " + " ".join(run.id for run in runs)
    assert "train.loss(avg" in compared and "lr 0.1 0.1 0.2 0.2 0.4 0.4" in " ".join(compared.split())


def test_a_failing_point_is_recorded_as_failed_and_the_sweep_goes_on(tiny, tmp_path, capsys):
    """One point fails while building (a value error), one diverges while training (a NaN): both are failed runs of
    the sweep, with their errors, and the others run."""
    assert sweep(tmp_path, "optimizer.lr=0.1,0.2", "fail='',value,diverge") == 1
    captured = capsys.readouterr()
    runs = {(run.config["optimizer"]["lr"], run.config["fail"]): run for run in runs_of(tmp_path)}
    assert len(runs) == 6 and len({tuple(run.tags) for run in runs.values()}) == 1
    assert runs[(0.1, "")].status == runs[(0.2, "")].status == "finished"
    assert runs[(0.1, "value")].status == "failed" and runs[(0.1, "value")].error == \
        f"ValueError: {BUILD_ERRORS['value']}"
    diverged = runs[(0.2, "diverge")]
    assert diverged.status == "failed" and "NonFiniteError: step 2: the loss is not finite" in diverged.error
    assert f"point 5/6 failed (run {runs[(0.2, 'value')].id}): ValueError" in captured.err
    assert "2 of 6 points finished" in " ".join(captured.out.split())
    row = next(line for line in captured.out.splitlines() if diverged.id in line)
    assert "optimizer.lr=0.2 fail=diverge" in row and "failed" in row


def test_a_bug_in_a_point_shows_its_traceback_and_the_sweep_goes_on(tiny, tmp_path, capsys):
    assert sweep(tmp_path, "fail=runtime-bug,''") == 1
    err = capsys.readouterr().err
    assert "point 1/2 failed" in err and "Traceback (most recent call last)" in err and "build_tiny" in err
    assert sorted(run.status for run in runs_of(tmp_path)) == ["failed", "finished"]


def test_a_mistyped_point_refuses_the_whole_sweep_before_any_run(tiny, tmp_path, capsys):
    assert sweep(tmp_path, "optimizer.lr=0.1,fast") == 2
    assert "cadence train: error: sweep point optimizer.lr=fast: override 'optimizer.lr=fast': optimizer.lr expects " \
           "a value of type float" in \
        capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_first_ctrl_c_stops_the_sweep_after_the_point_in_progress(tiny, tmp_path, capsys):
    assert sweep(tmp_path, "optimizer.lr=0.1,0.2", "epochs=3", "fail=ctrl-c") == 130
    [run] = runs_of(tmp_path)
    assert run.status == "interrupted" and run.config["optimizer"]["lr"] == 0.1
    assert "interrupted at point 1/2; the later points were not run" in capsys.readouterr().err


def test_several_values_without_m_are_refused_with_a_hint(tiny, tmp_path, capsys):
    assert tiny("optimizer.lr=0.1,0.2") == 2
    assert "optimizer.lr=0.1,0.2: several values; to sweep them, add -m" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", [["--resume", "x"], ["--nproc", "2"]])
def test_a_sweep_takes_neither_resume_nor_nproc(tiny, tmp_path, capsys, option):
    assert sweep(tmp_path, "optimizer.lr=0.1,0.2", *option) == 2
    assert f"-m (a sweep) trains new runs in this process; it takes neither {option[0]}" in capsys.readouterr().err
