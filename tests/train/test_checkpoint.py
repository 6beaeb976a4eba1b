import pytest
import torch

from cadence.train import load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "ck" / "checkpoint.pt", {"w": torch.arange(3.0), "epoch": 2, "config": {"a": 1}})
    state = load_checkpoint(path)
    assert torch.equal(state["w"], torch.arange(3.0)) and state["epoch"] == 2 and state["config"] == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=rf"{corrupt} is not a readable cadence checkpoint"):
        load_checkpoint(corrupt)
