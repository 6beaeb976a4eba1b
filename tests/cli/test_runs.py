"""The run tools of the `cadence` command: runs, show, compare, plot, export, tag, rm; run ids by prefix."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import cadence.track.store as store_module
from cadence.cli import main
from cadence.data import MNIST
from cadence.track import RunStore, Series
from cadence.track.checkpoints import FORMAT
from cadence.track.history import histories

A, B, C = "20261124-101010-abcd", "20261124-101010-abff", "20261125-090000-0123"


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """Three runs: A (lr 0.1, finished, tagged baseline, with checkpoints), B (lr 0.01, failed), C (another
    experiment, running); each with a moving train.loss (window 2), epoch valid.loss and valid.accuracy, a raw lr."""
    drawn = iter([A, B, C])
    monkeypatch.setattr(store_module, "new_run_id", lambda: next(drawn))
    folder = tmp_path / "runs"
    with RunStore(folder) as store:
        for name, lr, tags, losses, accuracy in (("mnist", 0.1, ["baseline"], [4.0, 2.0, 3.0, 1.0], [0.8, 0.9]),
                                                 ("mnist", 0.01, [], [5.0, 4.0, 3.5, 3.0], [0.6, 0.7]),
                                                 ("cifar", 0.1, ["baseline", "big"], [9.0, 8.0], [0.1])):
            run_id = store.create_run(name, {"seed": 0, "optimizer": {"name": "adam", "lr": lr}}, tags=tags,
                                      provenance={"command": f"cadence train {name}", "host": "box",
                                                  "git": {"root": "/src", "commit": "c0ffee", "branch": "main",
                                                          "untracked_total": 0}},
                                      diff="+x\n" if name == "cifar" else "")
            steps, epoch_ends = range(1, len(losses) + 1), range(2, len(losses) + 1, 2)
            store.add_values(run_id, {"train.loss": (steps, losses), "train.lr": (steps, [lr] * len(steps)),
                                      "train.samples": (steps, [64.0 * s for s in steps]),
                                      "valid.loss": (epoch_ends, [v / 2 for v in losses[1::2]]),
                                      "valid.accuracy": (epoch_ends, accuracy)},
                             {"train.loss": Series("moving", 2), "valid.loss": Series("epoch"),
                              "valid.accuracy": Series("epoch")})
        store.finish(A, "finished")
        store.finish(B, "failed", "ValueError: loss went NaN")
    for step, epoch in ((2, 1), (4, 2)):
        checkpoint = folder / A / "checkpoints" / f"step-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "meta.json").write_text(json.dumps({"format": FORMAT, "step": step, "epoch": epoch,
                                                          "metrics": {"valid.accuracy": 0.4 + 0.25 * epoch}}))
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, " ".join(captured.err.split())


# -- cadence runs ----------------------------------------------------------------------------------

def test_runs_on_a_missing_directory_lists_none_and_creates_nothing(tmp_path, capsys):
    status, out, _ = run(capsys, "runs", "--runs-dir", str(tmp_path / "runs"))
    assert status == 0 and "0 runs" in out and not (tmp_path / "runs").exists()


def test_runs_lists_every_run_newest_first_with_metrics_named_by_kind(runs, capsys):
    status, out, _ = run(capsys, "runs", "--runs-dir", str(runs))
    assert status == 0 and out.index(C) < out.index(B) < out.index(A)
    assert "train.loss(avg2)=2" in out and "valid.accuracy(epoch)=0.9" in out and "baseline" in out
    assert "ValueError" not in out and "failed" in out


@pytest.mark.parametrize("options, listed", [
    (["--experiment", "mnist"], [B, A]),
    (["--status", "failed"], [B]),
    (["--tag", "baseline"], [C, A]),
    (["--tag", "baseline", "--tag", "big"], [C]),
    (["--experiment", "mnist", "--sort", "valid.loss"], [A, B]),  # lower first
    (["--sort", "valid.accuracy"], [A, B, C]),  # higher first
    (["--sort", "valid.accuracy", "--reverse"], [C, B, A]),
    (["--sort", "train.loss"], [A, B, C]),  # by the moving average: 2.0, 3.25, 8.5
])
def test_runs_filters_by_experiment_status_and_tag_and_sorts_by_any_metric(runs, capsys, options, listed):
    status, out, _ = run(capsys, "runs", "--runs-dir", str(runs), *options)
    shown = sorted((i for i in (A, B, C) if i in out), key=out.index)
    assert status == 0 and shown == listed


def test_sorting_by_a_metric_no_run_has_is_a_usage_error(runs, capsys):
    status, _, err = run(capsys, "runs", "--runs-dir", str(runs), "--sort", "valid.f1")
    assert status == 2 and "--sort valid.f1: no run listed has 'valid.f1'; their metrics: train.loss" in err


def test_runs_refuses_a_stray_argument(capsys):
    with pytest.raises(SystemExit) as info:
        main(["runs", "--runs-dir", "runs", "extra"])
    assert info.value.code == 2 and "error: unrecognized arguments: extra" in capsys.readouterr().err


@pytest.mark.slow
def test_train_records_a_run_listed_by_cadence_runs(tmp_path, capsys, data_dir):
    runs_dir = tmp_path / "runs"
    assert main(["train", "mnist", "epochs=1", "batch_size=256", "--data-dir", str(data_dir),
                 "--runs-dir", str(runs_dir)]) == 0
    captured = capsys.readouterr()
    with sqlite3.connect(runs_dir / "runs.sqlite") as db:
        (run_id, status), = db.execute("SELECT id, status FROM runs").fetchall()
    # One epoch of batches of 256, the last one short: the step count of the data set at hand (subset or full).
    steps = -(-len(MNIST(data_dir, train=True).labels) // 256)
    newest = runs_dir / run_id / "checkpoints" / f"step-{steps}"
    assert "finished" in captured.err and f"run {run_id} finished; newest checkpoint: {newest}" in captured.out
    assert status == "finished" and (newest / "model.safetensors").is_file()
    status, listing, _ = run(capsys, "runs", "--runs-dir", str(runs_dir))
    assert run_id in listing and "finished" in listing and "valid.accuracy(epoch)=" in listing
    status, shown, _ = run(capsys, "show", run_id[:-1], "--runs-dir", str(runs_dir))
    assert status == 0 and f"{newest} {steps} " in " ".join(shown.split())


# -- run ids ---------------------------------------------------------------------------------------

def test_an_unknown_or_ambiguous_run_id_is_a_usage_error_listing_the_candidates(runs, capsys):
    status, _, err = run(capsys, "show", "20261124", "--runs-dir", str(runs))
    assert status == 2 and f"run id '20261124' is ambiguous in {runs / 'runs.sqlite'}: 2 runs start with it: " \
                           f"{A}, {B}" in err
    status, _, err = run(capsys, "show", "2026112x", "--runs-dir", str(runs))
    assert status == 2 and f"no run '2026112x' in {runs / 'runs.sqlite'}; runs starting with '2026112': {A}, {B}, " \
                           f"{C}" in err


def test_a_missing_run_database_is_reported_and_not_created(tmp_path, capsys):
    status, _, err = run(capsys, "show", A, "--runs-dir", str(tmp_path / "none"))
    assert status == 1 and "cadence show: error: no run database at" in err and not (tmp_path / "none").exists()


# -- cadence show ----------------------------------------------------------------------------------

def test_show_gives_config_provenance_final_and_best_metrics_checkpoints_and_how_it_ended(runs, capsys):
    status, out, _ = run(capsys, "show", "20261124-101010-abc", "--runs-dir", str(runs))
    assert status == 0
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert f"run {A} of mnist, tagged baseline" in lines
    assert any(line.startswith("started ") and "finished at" in line and "after 0:00:00" in line for line in lines)
    assert "command: cadence train mnist (in ?, on box)" in lines
    assert "source: /src at commit c0ffee on main, no uncommitted change" in lines
    assert "lr: 0.1" in lines and "name: adam" in lines
    # train.loss is moving over 2: averages 4, 3, 2.5, 2; final 2 at step 4, best 2 at step 4.
    assert "train.loss(avg2) 2 4 2 4" in lines
    assert "valid.accuracy(epoch) 0.9 4 0.9 4" in lines and "valid.loss(epoch) 0.5 4 0.5 4" in lines
    assert "train.lr 0.1 4 - -" in lines  # a learning rate has no better direction
    assert f"{runs / A / 'checkpoints' / 'step-2'} 2 1 valid.accuracy=0.65" in lines
    assert f"{runs / A / 'checkpoints' / 'step-4'} 4 2 valid.accuracy=0.9" in lines


def test_show_lists_where_each_phases_time_went_and_the_training_speed(tmp_path, capsys):
    from tests.train.test_phase_clock import data, trained
    _, _, run_id, _ = trained(tmp_path, valid=data(3, 1))
    status, out, _ = run(capsys, "show", run_id, "--runs-dir", str(tmp_path))
    assert status == 0
    for phase in ("train", "valid"):
        for part in ("data", "compute", "optimizer", "tracking", "checkpoint", "other"):
            assert f"{phase}.time.{part}(epoch) " in out
    assert "train.samples_per_second(epoch) " in out


def test_show_lists_the_runs_events_in_order(runs, capsys):
    with RunStore(runs) as store:
        store.add_event(B, "interrupted", "SIGTERM: stopped at step 3", 3)
        store.add_event(B, "restarted", "the processes were started again (restart 1) after one of them ended")
    status, out, _ = run(capsys, "show", B, "--runs-dir", str(runs))
    lines = [" ".join(line.split()) for line in out.splitlines()]
    [interrupted] = [i for i, line in enumerate(lines) if line.endswith(" interrupted at step 3: SIGTERM: stopped at "
                                                                           "step 3")]
    assert lines[interrupted + 1].endswith(" restarted: the processes were started again (restart 1) after one of "
                                           "them ended")


def test_show_a_failed_run_with_uncommitted_changes(runs, capsys):
    status, out, _ = run(capsys, "show", B, "--runs-dir", str(runs))
    assert status == 0 and "error: ValueError: loss went NaN" in out and "checkpoints: none" in out
    status, out, _ = run(capsys, "show", C, "--runs-dir", str(runs))
    assert ", running, at step 2" in out and f"uncommitted changes in {runs / C / 'source.diff'}" in " ".join(out.split())


# -- cadence show --follow -------------------------------------------------------------------------

#: Seconds any wait of the tests of --follow lasts at most.
WAIT = 30.0


class Follower:
    """``cadence show RUN --follow`` in a thread; :meth:`wait_for` reads its output as it comes."""

    def __init__(self, capsys, run_id: str, folder):
        self.capsys, self.out, self.err, self.status = capsys, "", "", None
        self.thread = threading.Thread(target=lambda: setattr(self, "status", main(
            ["show", run_id, "--follow", "--interval", "0.02", "--runs-dir", str(folder)])), daemon=True)
        self.thread.start()

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while text not in self.out:
            assert time.monotonic() < deadline, f"no {text!r} within {WAIT} s; printed: {self.out!r}"
            time.sleep(0.01)
            self.read()

    def ended(self) -> int:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), f"still following after {WAIT} s; printed: {self.out!r}"
        self.read()
        return self.status

    def read(self) -> None:
        captured = self.capsys.readouterr()
        self.out, self.err = self.out + captured.out, self.err + captured.err


def test_show_follow_prints_a_running_runs_latest_values_as_they_change_until_it_ends(tmp_path, capsys):
    folder = tmp_path / "runs"
    with RunStore(folder) as writer:  # another connection than the follower's, as another process's would be
        run_id = writer.create_run("mnist", {}, provenance={})
        follower = Follower(capsys, run_id, folder)
        follower.wait_for("(no values yet)")
        for step, loss, shown in ((1, 4.0, "4"), (2, 2.0, "3"), (3, 1.0, "1.5")):
            writer.add_values(run_id, {"train.loss": ([step], [loss]), "train.lr": ([step], [0.1])},
                              {"train.loss": Series("moving", 2)})
            follower.wait_for(f"train.loss(avg2)={shown} train.lr=0.1\n")
            time.sleep(0.2)  # ten looks at the store without a change: no line
        writer.add_values(run_id, {"valid.accuracy": ([3], [0.9])}, {"valid.accuracy": Series("epoch")})
        writer.finish(run_id, "finished")
        assert follower.ended() == 0
    values = [line.split(" ", 2)[2] for line in follower.out.splitlines()[-6:-1]]
    assert values == ["(no values yet)", "step 1 train.loss(avg2)=4 train.lr=0.1",
                      "step 2 train.loss(avg2)=3 train.lr=0.1", "step 3 train.loss(avg2)=1.5 train.lr=0.1",
                      "step 3 train.loss(avg2)=1.5 train.lr=0.1 valid.accuracy(epoch)=0.9"]  # each once: when it changed
    assert f"following run {run_id}" in follower.out and f"run {run_id} finished at " in follower.out.splitlines()[-1]


def test_show_follow_ends_with_any_status_but_running_and_at_once_for_an_ended_run(runs, capsys):
    follower = Follower(capsys, C, runs)
    follower.wait_for("train.loss(avg2)=8.5")
    with sqlite3.connect(runs / "runs.sqlite") as db:  # a status this cadence does not know: the run ended all the same
        db.execute("UPDATE runs SET status = 'dead' WHERE id = ?", (C,))
    assert follower.ended() == 0 and follower.out.splitlines()[-1].startswith(
        f"run {C} dead: recorded running, but its process is gone (last sign of life ")
    status, out, _ = run(capsys, "show", B, "--follow", "--runs-dir", str(runs))
    assert status == 0 and out.splitlines()[-1] == f"run {B} is not running (failed): nothing to follow"


def test_show_follow_of_a_run_removed_meanwhile_ends_with_an_error(runs, capsys):
    follower = Follower(capsys, C, runs)
    follower.wait_for("train.loss(avg2)=8.5")
    with RunStore(runs) as store:
        store.delete_run(C)
    assert follower.ended() == 1
    assert f"cadence show: error: run {C} was removed from" in " ".join(follower.err.split())


@pytest.mark.parametrize("options, message", [
    (["--follow", "--interval", "0"], "--interval 0: expected seconds > 0"),
    (["--interval", "2"], "--interval 2: goes with --follow"),
])
def test_show_refuses_an_interval_it_cannot_use(runs, capsys, options, message):
    status, _, err = run(capsys, "show", B, *options, "--runs-dir", str(runs))
    assert status == 2 and f"cadence show: error: {message}" in err


def test_ctrl_c_stops_following_with_exit_status_130_and_the_run_goes_on(runs):
    follower = subprocess.Popen([sys.executable, "-m", "cadence", "show", C, "--follow", "--interval", "0.05",
                                 "--runs-dir", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "COLUMNS": "200"})
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout], daemon=True).start()
    try:
        while "train.loss(avg2)=8.5" not in lines.get(timeout=WAIT):
            pass
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=WAIT) == 130
    finally:
        follower.kill()
    assert f"cadence show: stopped following run {C}, which goes on" in " ".join(follower.stderr.read().split())
    with RunStore(runs) as store:
        assert store.get_run(C).status == "running"


# -- cadence compare -------------------------------------------------------------------------------

def test_compare_shows_only_what_differs_and_the_metrics_side_by_side(runs, capsys):
    status, out, _ = run(capsys, "compare", A, B, "--runs-dir", str(runs))
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert status == 0 and "optimizer.lr 0.1 0.01" in lines
    assert not any(line.startswith(("seed", "optimizer.name", "provenance.host", "name ")) for line in lines)
    assert "valid.accuracy(epoch) 0.9 (0.9) 0.7 (0.7)" in lines and "train.loss(avg2) 2 (2) 3.25 (3.25)" in lines
    status, out, _ = run(capsys, "compare", A, C, "--runs-dir", str(runs))
    assert 'name "mnist" "cifar"' in [" ".join(line.split()) for line in out.splitlines()]


def test_compare_needs_two_runs(runs, capsys):
    status, _, err = run(capsys, "compare", A, A[:19], "--runs-dir", str(runs))
    assert status == 2 and f"compare needs two runs or more; got {A} alone" in err
    status, _, err = run(capsys, "compare", "--tag", "nothing", "--runs-dir", str(runs))
    assert status == 2 and "compare needs two runs or more; got none (tagged nothing)" in err


def test_compare_tag_adds_every_run_with_the_tags(runs, capsys):
    status, out, _ = run(capsys, "compare", "--tag", "baseline", "--runs-dir", str(runs))
    header = " ".join(out.splitlines()[1].split())
    assert status == 0 and header == f"key {A} {C}"
    assert out.splitlines()[-1] == "on the run page (cadence serve): /compare?tag=baseline"
    status, out, _ = run(capsys, "compare", B, "--tag", "baseline", "--tag", "big", "--runs-dir", str(runs))
    assert status == 0 and " ".join(out.splitlines()[1].split()) == f"key {B} {C}"
    assert out.splitlines()[-1] == f"on the run page (cadence serve): /compare?runs={B},{C}"


def test_show_says_a_run_whose_process_is_gone_is_dead_and_a_running_one_where_it_is(runs, capsys):
    with sqlite3.connect(runs / "runs.sqlite") as db:  # recorded running by a process that is gone
        db.execute("UPDATE runs SET status = 'running', end_time = NULL, heartbeat = 1.0, host = 'gpu-3' "
                   "WHERE id = ?", (C,))
    status, out, _ = run(capsys, "show", C, "--runs-dir", str(runs))
    assert status == 0 and "dead: recorded running, but its process is gone (last sign of life 1970-01-01 " in out
    assert "on gpu-3)" in out
    with RunStore(runs) as store:
        store.beat(C)
        store.plan(C, 8)
    status, out, _ = run(capsys, "show", C, "--runs-dir", str(runs))
    assert status == 0 and ", running, at step 2, about " in out and " left" in out


# -- cadence plot ----------------------------------------------------------------------------------

def test_plot_writes_the_image(runs, capsys, tmp_path):
    out_path = tmp_path / "plots" / "loss.png"
    status, out, _ = run(capsys, "plot", A, B, "--metric", "loss", "--smooth", "2", "--x", "samples", "--log",
                         "-o", str(out_path), "--runs-dir", str(runs))
    assert status == 0 and out_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot: {out_path}" in out


@pytest.mark.parametrize("options, message", [
    (["--metric", "valid.f1"], f"plot: no run of {A} has 'valid.f1'; their keys: train.loss, train.lr, train.samples, "
                               f"valid.accuracy, valid.loss"),
    (["--metric", "loss", "--smooth", "0"], "--smooth 0: expected a window of 1 or more values"),
])
def test_plot_refuses_what_it_cannot_draw(runs, capsys, tmp_path, options, message):
    status, _, err = run(capsys, "plot", A, *options, "-o", str(tmp_path / "x.png"), "--runs-dir", str(runs))
    assert status in (1, 2) and message in err and not (tmp_path / "x.png").exists()


# -- cadence export --------------------------------------------------------------------------------

def test_export_csv_holds_every_value_with_its_kind(runs, capsys):
    status, out, _ = run(capsys, "export", A, "--format", "csv", "--runs-dir", str(runs))
    rows = list(csv.DictReader(io.StringIO(out)))
    with RunStore(runs) as store:
        recorded = [(step, key, value) for key, h in histories(store, A).items()
                    for step, value in zip(h.steps.tolist(), h.values.tolist())]
    assert status == 0 and sorted((int(r["step"]), r["key"], float(r["value"])) for r in rows) == sorted(recorded)
    loss = [r for r in rows if r["key"] == "train.loss"]
    assert {(r["kind"], r["window"]) for r in loss} == {("moving", "2")}
    assert {r["kind"] for r in rows if r["key"] == "valid.loss"} == {"epoch"}


def test_export_json_holds_the_record_and_each_series(runs, capsys, tmp_path):
    path = tmp_path / "a.json"
    status, _, err = run(capsys, "export", A[:19], "--format", "json", "-o", str(path),
                         "--runs-dir", str(runs))
    exported = json.loads(path.read_text())
    assert status == 0 and f"{A} written to {path}" in err
    assert exported["run"]["config"]["optimizer"]["lr"] == 0.1 and exported["run"]["tags"] == ["baseline"]
    assert exported["run"]["provenance"]["git"]["commit"] == "c0ffee"
    assert exported["series"]["train.loss"] == {"kind": "moving", "window": 2, "label": "train.loss(avg2)",
                                                "steps": [1, 2, 3, 4], "values": [4.0, 2.0, 3.0, 1.0]}


def test_export_tensorboard_writes_the_runs_event_files_into_a_folder(runs, capsys, tmp_path):
    pytest.importorskip("tensorboard")
    from tests.track.test_tensorboard import scalars

    folder = tmp_path / "events"
    status, _, err = run(capsys, "export", A, "--format", "tensorboard", "-o", str(folder), "--runs-dir", str(runs))
    assert status == 0 and f"{A} written to {folder}: 16 values as TensorBoard event files" in err
    shown = scalars(folder)
    assert shown["train/loss"] == [(1, 4.0), (2, 2.0), (3, 3.0), (4, 1.0)]
    assert shown["train/loss(avg2)"] == [(1, 4.0), (2, 3.0), (3, 2.5), (4, 2.0)]
    assert shown["valid/accuracy(epoch)"] == [(2, 0.8), (4, 0.9)] and set(shown) == {
        "train/loss", "train/loss(avg2)", "train/lr", "train/samples", "valid/loss(epoch)", "valid/accuracy(epoch)"}
    status, _, err = run(capsys, "export", A, "--format", "tensorboard", "-o", str(folder), "--runs-dir", str(runs))
    assert status == 1 and "holds TensorBoard event files already" in err


def test_export_tensorboard_needs_a_folder(runs, capsys):
    status, _, err = run(capsys, "export", A, "--format", "tensorboard", "--runs-dir", str(runs))
    assert status == 2 and "cadence export: error: --format tensorboard writes a folder of event files: name it " \
                           "with -o DIR" in err


# -- cadence tag, cadence rm -----------------------------------------------------------------------

def test_tag_adds_and_removes_tags(runs, capsys):
    assert run(capsys, "tag", B, "good", "lr-sweep", "--runs-dir", str(runs))[0] == 0
    assert run(capsys, "tag", B, "good", "--remove", "--runs-dir", str(runs))[1].strip() == f"{B}: tags lr-sweep"
    status, _, err = run(capsys, "tag", B, "bad tag", "--runs-dir", str(runs))
    assert status == 1 and "tag 'bad tag' is not a tag" in err


def listed(folder) -> list[str]:
    with RunStore(folder) as store:
        return [r.id for r in store.list_runs()]


@pytest.mark.parametrize("answer", ["n\n", "\n", ""])
def test_rm_asks_and_keeps_the_runs_unless_told_yes(runs, capsys, monkeypatch, answer):
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    status, out, err = run(capsys, "rm", A, B, "--runs-dir", str(runs))
    assert status == 1 and "remove 2 run(s): their records, values and folders? [y/N]" in err
    assert "nothing removed" in err and f"{A} mnist finished" in out and listed(runs) == [C, B, A]


def test_rm_removes_the_runs_when_told_yes(runs, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert run(capsys, "rm", A, "--runs-dir", str(runs))[0] == 0
    assert listed(runs) == [C, B] and not (runs / A).exists()
    assert run(capsys, "rm", B, C, "--yes", "--runs-dir", str(runs))[0] == 0
    assert listed(runs) == [] and not (runs / B).exists()


def test_rm_of_an_unknown_run_removes_nothing(runs, capsys):
    status, _, err = run(capsys, "rm", A, "nope", "--yes", "--runs-dir", str(runs))
    assert status == 2 and "no run 'nope'" in err and listed(runs) == [C, B, A]


def test_a_trained_run_records_its_provenance_and_tags_and_show_reports_them(tmp_path, capsys):
    import torch
    from torch import nn

    from cadence.track import recorded_run
    from cadence.train import Trainer

    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    data = [(torch.randn(4, 2), torch.randint(0, 2, (4,))) for _ in range(3)]
    with recorded_run("tiny", {"lr": 0.1}, runs_dir=tmp_path / "runs", tags=["smoke"]) as recorded:
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), data, data, loss_fn=nn.functional.cross_entropy,
                run=recorded, console=False).run()
    run_id = recorded.run_id
    status, out, _ = run(capsys, "show", run_id, "--runs-dir", str(tmp_path / "runs"))
    text = " ".join(out.split())
    assert status == 0 and f"run {run_id} of tiny, tagged smoke" in text and "finished at" in text
    assert "versions: cadence" in text and f"torch {torch.__version__}" in text and "command: " in text
    assert "train.loss(avg20) 0" in text and "valid.loss(epoch)" in text
