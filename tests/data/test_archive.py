"""safe_extract: plain archives extract exactly; every unsafe member kind is refused before anything is written."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
from pathlib import Path

import pytest

from cadence.data.archive import UnsafeArchiveError, safe_extract
from cadence.data.idx import DataFormatError

from .cifar_files import add_dir, add_file


def make_archive(path: Path, *members: tarfile.TarInfo, mode: str = "w:gz") -> Path:
    """A tar of a safe folder and file first, then ``members`` (regular ones get 3 bytes of content)."""
    with tarfile.open(path, mode) as tar:
        add_dir(tar, "safe")
        add_file(tar, "safe/first.txt", b"first")
        for member in members:
            tar.addfile(member, io.BytesIO(b"bad") if member.isreg() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    info.size = 3 if kind == tarfile.REGTYPE else 0
    return info


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_plain_archive_extracts_exactly(tmp_path, mode):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, mode) as tar:
        add_dir(tar, "top")
        add_file(tar, "top/one.bin", bytes(range(256)) * 100)
        add_file(tar, "top/sub/two.txt", b"two")  # its folder has no member of its own
        add_file(tar, "./top/three", b"")
    written = safe_extract(archive, tmp_path / "out")
    out = (tmp_path / "out").resolve()
    assert written == [out / "top/one.bin", out / "top/sub/two.txt", out / "top/three"]
    assert files_under(out) == ["top", "top/one.bin", "top/sub", "top/sub/two.txt", "top/three"]
    assert (out / "top/one.bin").read_bytes() == bytes(range(256)) * 100
    assert (out / "top/sub/two.txt").read_bytes() == b"two" and (out / "top/three").read_bytes() == b""


def test_permission_bits_of_members_are_not_applied(tmp_path):
    archive = make_archive(tmp_path / "a.tar.gz", member("safe/setuid", mode=0o4755 | stat.S_ISGID))
    safe_extract(archive, tmp_path / "out")
    mode = (tmp_path / "out/safe/setuid").stat().st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IXUSR)
    assert (tmp_path / "out/safe/setuid").read_bytes() == b"bad"


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (member("/tmp/cadence-escaped"), "has an absolute path"),
        (member("../escaped"), "has a '..' component"),
        (member("safe/../../escaped"), "has a '..' component"),
        (member("safe/link", tarfile.SYMTYPE, "/etc/passwd"), "is a symbolic link to '/etc/passwd'"),
        (member("safe/inner", tarfile.SYMTYPE, "first.txt"), "is a symbolic link to 'first.txt'"),
        (member("safe/hard", tarfile.LNKTYPE, "safe/first.txt"), "is a hard link to 'safe/first.txt'"),
        (member("safe/tty", tarfile.CHRTYPE), "is a character device"),
        (member("safe/disk", tarfile.BLKTYPE), "is a block device"),
        (member("safe/pipe", tarfile.FIFOTYPE), "is a FIFO"),
        (member("safe/unknown", b"Z"), "is of tar type b'Z'"),
    ],
    ids=["absolute", "dotdot", "nested-dotdot", "symlink-out", "symlink-in", "hardlink", "char-device",
         "block-device", "fifo", "other-type"],
)
def test_unsafe_member_is_refused_naming_archive_and_member(tmp_path, bad, problem):
    archive = make_archive(tmp_path / "evil.tar.gz", bad)
    before = files_under(tmp_path)
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, tmp_path / "out" / "dest")
    error = info.value
    assert isinstance(error, DataFormatError) and error.path == archive and error.member == bad.name
    assert str(error).startswith(f"{archive}: member {bad.name!r} {problem}")
    assert "refused, nothing was extracted" in str(error)
    # Not even the safe members before it were written, and nothing appeared anywhere else.
    assert files_under(tmp_path / "out" / "dest") == []
    assert files_under(tmp_path) == sorted([*before, "out", "out/dest"])
    assert not Path("/tmp/cadence-escaped").exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not an archive at all" * 30, "not a readable tar archive: ReadError"),
        (gzip.compress(b"\x00" * 100), "not a readable tar archive"),
    ],
    ids=["garbage", "gzip-of-non-tar"],
)
def test_unreadable_archive(tmp_path, content, match):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(DataFormatError, match=match) as info:
        safe_extract(archive, tmp_path / "out")
    assert str(info.value).startswith(str(archive))


def test_truncated_archive(tmp_path):
    archive = tmp_path / "cut.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "big.bin", bytes(range(256)) * 4000)
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataFormatError, match=f"{archive}: not a readable tar archive"):
        safe_extract(archive, tmp_path / "out")


def test_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError):
        safe_extract(tmp_path / "absent.tar.gz", tmp_path / "out")
