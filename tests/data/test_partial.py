"""Partial files: fresh names beside the destination, and what killed processes left removed."""

from __future__ import annotations

import os
import time

from cadence.data.partial import STALE_SECONDS, partial_path


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_partial_names_are_fresh_hidden_and_beside_the_destination(tmp_path):
    dest = tmp_path / "train.bin"
    a, b = partial_path(dest), partial_path(dest)
    assert a != b and a.parent == tmp_path
    assert a.name.startswith(".train.bin.") and a.name.endswith(".part")


def test_stale_partial_files_and_folders_are_removed_and_live_ones_kept(tmp_path):
    dest = tmp_path / "data[1].bin"  # glob characters in the name match literally
    stale_file = tmp_path / ".data[1].bin.0badf00d.part"
    stale_file.write_bytes(b"half a download")
    stale_folder = tmp_path / ".data[1].bin.deadbeef.part"
    (stale_folder / "inner").mkdir(parents=True)
    live = tmp_path / ".data[1].bin.12345678.part"  # another rank still writing
    live.write_bytes(b"in progress")
    other = tmp_path / ".other.bin.0badf00d.part"  # another destination's
    other.write_bytes(b"not ours")
    for path in (stale_file, stale_folder, other):
        age(path, STALE_SECONDS + 60)
    age(live, STALE_SECONDS - 60)

    partial_path(dest)

    assert not stale_file.exists() and not stale_folder.exists()
    assert live.exists() and other.exists()


def test_a_stale_partial_that_cannot_be_removed_is_left_with_a_warning(tmp_path, monkeypatch, caplog):
    dest = tmp_path / "train.bin"
    stale = tmp_path / ".train.bin.0badf00d.part"
    stale.write_bytes(b"another user's")
    age(stale, STALE_SECONDS + 60)

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(stale), "unlink", refuse)
    fresh = partial_path(dest)

    assert stale.exists() and fresh != stale
    assert "could not remove" in caplog.text and "Permission denied" in caplog.text
