"""Tests of cadence.track.checkpoints: the folder layout, atomic writes, retention and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
import torch
from torch import nn

from cadence import __version__
from cadence.track.checkpoints import (FORMAT, CheckpointError, best_checkpoint, latest_checkpoint, list_checkpoints,
                                       load_checkpoint, prune_checkpoints, read_meta, save_checkpoint)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_layout_and_round_trip(tmp_path):
    m = model()
    state = {"optimizer": {"step": torch.tensor(3)}, "epoch": 2, "names": ["a", "b"], "x": None}
    path = save_checkpoint(tmp_path, 7, m, state, {"experiment": "mnist", "metrics": {"valid.loss": 0.5}})
    assert path == tmp_path / "step-7"
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.safetensors", "state.pt"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-7"]  # no partial folder left
    # Any safetensors reader opens the weights; the state loads with weights_only=True.
    weights = safetensors.torch.load_file(path / "model.safetensors")
    assert weights.keys() == m.state_dict().keys()
    assert torch.load(path / "state.pt", weights_only=True)["epoch"] == 2
    meta = json.loads((path / "meta.json").read_text())
    assert meta == {"format": FORMAT, "cadence": __version__, "step": 7, "experiment": "mnist",
                    "metrics": {"valid.loss": 0.5}}
    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    loaded_state, loaded_meta = load_checkpoint(path, other, experiment="mnist")
    for (k, a), b in zip(m.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    assert loaded_state == state and loaded_meta == meta


def test_tied_weights_are_stored_once_and_restored_tied(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

    a = Tied()
    path = save_checkpoint(tmp_path, 1, a, {}, {})
    assert list(safetensors.torch.load_file(path / "model.safetensors")) == ["embed.weight"]
    b = Tied()
    load_checkpoint(path, b)
    assert torch.equal(b.head.weight, a.embed.weight) and b.head.weight is b.embed.weight


def test_latest_is_the_largest_complete_step(tmp_path):
    m = model()
    for step in (2, 10, 9):
        save_checkpoint(tmp_path, step, m, {}, {})
    (tmp_path / ".step-11.abcd.part").mkdir()  # a write in progress or killed
    (tmp_path / "step-x").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "step-10"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-9", "step-10"]
    assert latest_checkpoint(tmp_path / "none") is None


def test_the_same_step_is_replaced_whole(tmp_path):
    m = model()
    save_checkpoint(tmp_path, 3, m, {"v": 1}, {})
    save_checkpoint(tmp_path, 3, m, {"v": 2}, {})
    assert load_checkpoint(tmp_path / "step-3", m)[0] == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["step-3"]


def test_a_failed_write_leaves_earlier_checkpoints_and_no_partial_folder(tmp_path, monkeypatch):
    m = model()
    save_checkpoint(tmp_path, 1, m, {"v": 1}, {})

    def broken_save(obj, f):
        f.write(b"half a state")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, m, {"v": 2}, {})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["step-1"]
    assert load_checkpoint(latest_checkpoint(tmp_path), m)[0] == {"v": 1}


def test_a_write_killed_outright_leaves_the_previous_checkpoint_loadable(tmp_path):
    m = model()
    save_checkpoint(tmp_path, 1, m, {"v": 1}, {})
    # A child process that is SIGKILLed in the middle of writing the state of step 2.
    script = textwrap.dedent(f"""
        import os, signal, torch
        from torch import nn
        from cadence.track.checkpoints import save_checkpoint
        def dying_save(obj, f):
            f.write(b"partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        save_checkpoint({str(tmp_path)!r}, 2, m, {{"v": 2}}, {{}})
    """)
    result = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert result.returncode == -9
    assert latest_checkpoint(tmp_path) == tmp_path / "step-1"
    assert load_checkpoint(tmp_path / "step-1", m)[0] == {"v": 1}
    assert any(p.name.startswith(".step-2.") for p in tmp_path.iterdir())  # the killed write's leftovers, hidden


def test_a_checkpoint_that_does_not_fit_lists_what_differs(tmp_path):
    path = save_checkpoint(tmp_path, 4, model(), {}, {"experiment": "mnist"})
    other = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, other)
    message = str(info.value)
    assert f"checkpoint {path} (saved by cadence {__version__} for experiment 'mnist' at step 4)" in message
    assert "unexpected keys: 2.bias, 2.weight" in message
    assert "shape mismatches: 0.weight: saved [4, 3], model [5, 3]" in message
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())  # nothing was loaded
    with pytest.raises(CheckpointError, match=r"missing keys: 0.weight, 0.bias"):
        load_checkpoint(save_checkpoint(tmp_path, 5, nn.Linear(1, 1), {}, {}),
                        nn.Sequential(nn.Linear(1, 1)))


def test_another_experiment_or_format_is_refused_by_name(tmp_path):
    path = save_checkpoint(tmp_path, 4, model(), {}, {"experiment": "cifar10"})
    with pytest.raises(CheckpointError, match=r"for experiment 'cifar10' at step 4, not for experiment 'mnist'"):
        load_checkpoint(path, model(), experiment="mnist")
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format": 99, "cadence": "9.0"}))
    with pytest.raises(CheckpointError, match=rf"has format 99 \(written by cadence 9.0\); cadence {__version__} "
                                              rf"reads format {FORMAT}"):
        load_checkpoint(path, model())


@pytest.mark.parametrize("damage, match", [
    (lambda p: (p / "meta.json").unlink(), "is not a cadence checkpoint: it has no meta.json"),
    (lambda p: (p / "meta.json").write_text("{"), "meta.json is unreadable"),
    (lambda p: (p / "state.pt").write_bytes(b"garbage"), "is unreadable"),
    (lambda p: (p / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}"), "is unreadable"),
])
def test_a_corrupt_checkpoint_names_its_path(tmp_path, damage, match):
    path = save_checkpoint(tmp_path, 1, model(), {}, {})
    damage(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, model())


def test_loading_never_runs_code_from_the_state_file(tmp_path):
    path = save_checkpoint(tmp_path, 1, model(), {}, {})

    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran code')",))

    with open(path / "state.pt", "wb") as f:
        torch.save({"evil": Evil()}, f)
    with pytest.raises(CheckpointError, match="is unreadable"):
        load_checkpoint(path, model())


def test_prune_keeps_the_newest_and_the_best(tmp_path):
    m = model()
    losses = {1: 0.9, 2: 0.3, 3: 0.5, 4: 0.2, 5: 0.8, 6: 0.7}
    for step, loss in losses.items():
        save_checkpoint(tmp_path, step, m, {}, {"metrics": {"valid.loss": loss}})
    deleted = prune_checkpoints(tmp_path, keep_last=2, keep_best=2, metric="valid.loss", mode="min")
    assert sorted(p.name for p in deleted) == ["step-1", "step-3"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-4", "step-5", "step-6"]
    prune_checkpoints(tmp_path, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-6"]


def test_prune_by_a_metric_where_higher_is_better_keeps_the_highest(tmp_path):
    m = model()
    accuracies = {1: 0.5, 2: 0.9, 3: 0.7, 4: 0.6, 5: 0.4}
    for step, accuracy in accuracies.items():
        save_checkpoint(tmp_path, step, m, {}, {"metrics": {"valid.accuracy": accuracy}})
    prune_checkpoints(tmp_path, keep_last=1, keep_best=2, metric="valid.accuracy", mode="max")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-3", "step-5"]


def test_the_best_checkpoint_of_a_run_folder_by_any_reported_metric(tmp_path):
    m = model()
    root = tmp_path / "checkpoints"
    for step, (loss, accuracy) in {1: (0.9, 0.5), 2: (0.3, 0.8), 3: (0.3, 0.9), 4: (0.6, 0.7)}.items():
        save_checkpoint(root, step, m, {}, {"metrics": {"valid.loss": loss, "valid.accuracy": accuracy}})
    save_checkpoint(root, 5, m, {}, {"metrics": {}})  # an interruption before any validation
    # Of equal losses, the newer; the run's folder or its checkpoints/ folder alike.
    assert best_checkpoint(tmp_path) == root / "step-3" == best_checkpoint(root, "valid.loss", "min")
    assert best_checkpoint(tmp_path, "valid.accuracy", "max") == root / "step-3"
    assert read_meta(best_checkpoint(tmp_path, "valid.accuracy", mode="min"))["step"] == 1
    with pytest.raises(KeyError, match=r"no checkpoint in .* holds a value of 'valid.f1'; they hold: valid.accuracy, "
                                       r"valid.loss"):
        best_checkpoint(tmp_path, "valid.f1")
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        best_checkpoint(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=r"mode='best'; expected 'min' or 'max'"):
        best_checkpoint(tmp_path, mode="best")
