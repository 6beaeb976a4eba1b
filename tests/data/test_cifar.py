"""CIFAR-10 and CIFAR-100: small archives in the exact official layout, read through the real code path:
extraction, restricted unpickling, validation, downloads over local HTTP, and every refusal."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import cadence.data.cifar as cifar_module
from cadence.data import (
    CIFAR10,
    CIFAR100,
    ENV_VAR,
    DataFormatError,
    DataNotFoundError,
    UnsafeArchiveError,
    UnsafePickleError,
)

from .cifar_files import CIFAR10_NAMES, add_dir, add_file, cifar10_archive, cifar100_archive, python2_pickle


@pytest.fixture
def cifar10(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """A data directory whose cifar10/ holds only the archive; and the arrays it holds."""
    (tmp_path / "cifar10").mkdir()
    return tmp_path, cifar10_archive(tmp_path / "cifar10" / CIFAR10.ARCHIVE)


def as_images(rows: np.ndarray) -> torch.Tensor:
    """Reference decoding of CIFAR rows, pixel by pixel: image i, channel c, row y, column x is at c*1024 + y*32 + x."""
    n = len(rows)
    c, y, x = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return torch.from_numpy(rows[:, (c * 1024 + y * 32 + x).ravel()].reshape(n, 3, 32, 32))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_cifar10_archive_is_extracted_and_read(cifar10, train):
    data_dir, reference = cifar10
    split = "train" if train else "test"
    dataset = CIFAR10(data_dir, train=train, download=False)
    assert dataset.root == data_dir / "cifar10" and dataset.folder == data_dir / "cifar10" / "cifar-10-batches-py"
    assert dataset.images.dtype == torch.uint8 and dataset.images.is_contiguous()
    assert torch.equal(dataset.images, as_images(reference[f"{split}_images"]))
    assert dataset.labels.dtype == torch.int64
    assert dataset.labels.tolist() == reference[f"{split}_labels"].tolist()
    assert len(dataset) == (20 if train else 3) and dataset.classes == CIFAR10_NAMES
    assert repr(dataset) == f"CIFAR10(root={str(data_dir / 'cifar10')!r}, train={train}, size={len(dataset)})"
    assert listing(data_dir / "cifar10") == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    expected = ["batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "readme.html", "test_batch"]
    assert listing(dataset.folder) == expected


def test_extracted_folder_is_read_without_the_archive(cifar10, monkeypatch):
    data_dir, _ = cifar10
    first = CIFAR10(data_dir, download=False)
    (data_dir / "cifar10" / CIFAR10.ARCHIVE).unlink()
    monkeypatch.setenv(ENV_VAR, str(data_dir))
    again = CIFAR10(download=False)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


def test_another_process_extracting_first_wins(cifar10, monkeypatch):
    data_dir, reference = cifar10
    real_extract = cifar_module.safe_extract

    def extract_while_another_rank_finishes_first(archive, dest):
        real_extract(archive, dest)
        real_extract(archive, data_dir / "cifar10")  # the other rank's folder lands under the final name

    monkeypatch.setattr(cifar_module, "safe_extract", extract_while_another_rank_finishes_first)
    dataset = CIFAR10(data_dir, train=False, download=False)
    assert torch.equal(dataset.images, as_images(reference["test_images"]))
    assert listing(data_dir / "cifar10") == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_cifar100_fine_and_coarse_labels(tmp_path):
    (tmp_path / "cifar100").mkdir()
    reference = cifar100_archive(tmp_path / "cifar100" / CIFAR100.ARCHIVE)
    for train, split in ((True, "train"), (False, "test")):
        dataset = CIFAR100(tmp_path, train=train, download=False)
        assert dataset.folder == tmp_path / "cifar100" / "cifar-100-python"
        assert torch.equal(dataset.images, as_images(reference[f"{split}_images"]))
        assert dataset.labels.tolist() == reference[f"{split}_fine"].tolist()
        assert dataset.coarse_labels.tolist() == reference[f"{split}_coarse"].tolist()
        assert dataset.classes == tuple(f"fine_{i}" for i in range(100))
        assert dataset.coarse_classes == tuple(f"coarse_{i}" for i in range(20))


@pytest.mark.parametrize("dataset", [CIFAR10, CIFAR100])
def test_normalize_per_channel(dataset):
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(dataset.MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(dataset.STD, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(dataset.normalize(x), ((x.double() / 255 - mean) / std).float())
    with pytest.raises(TypeError, match=f"{dataset.__name__}.normalize expects uint8 images"):
        dataset.normalize(x.float())
    with pytest.raises(ValueError, match=r"expects a batch \[B, 3, H, W\], got shape \[4, 32, 32\]"):
        dataset.normalize(x[:, 0])


def test_constants():
    for dataset in (CIFAR10, CIFAR100):
        assert re.fullmatch("[0-9a-f]{64}", dataset.SHA256)
        assert all(m.startswith("https://") and m.endswith("/") for m in dataset.MIRRORS)
        assert all(0.4 < m < 0.52 for m in dataset.MEAN) and all(0.24 < s < 0.28 for s in dataset.STD)
    assert CIFAR10.SHA256 != CIFAR100.SHA256
    assert (CIFAR10.ARCHIVE, CIFAR100.ARCHIVE) == ("cifar-10-python.tar.gz", "cifar-100-python.tar.gz")


def test_missing_without_download_says_what_to_place_where(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        CIFAR10(tmp_path, download=False)
    assert isinstance(info.value, FileNotFoundError)
    assert str(info.value) == (
        f"CIFAR-10 files missing from {tmp_path / 'cifar10'}: place cifar-10-python.tar.gz there "
        "(or the folder cifar-10-batches-py/ extracted from it), or point the data directory "
        "(--data-dir or $CADENCE_DATA) at a folder whose cifar10/ holds them; download=False, so no download was tried"
    )


# Downloads: the archive served over HTTP on 127.0.0.1, end to end.


@pytest.fixture
def served(monkeypatch, mirror, refused_base) -> dict[str, np.ndarray]:
    """CIFAR-10's mirrors: a refused port, then a local server holding a crafted archive with its checksum."""
    reference = cifar10_archive(mirror[1] / CIFAR10.ARCHIVE, seed=3)
    monkeypatch.setattr(CIFAR10, "MIRRORS", (f"{refused_base}/~kriz/", mirror[0]))
    monkeypatch.setattr(CIFAR10, "SHA256", hashlib.sha256((mirror[1] / CIFAR10.ARCHIVE).read_bytes()).hexdigest())
    return reference


def test_download_extract_and_read(served, tmp_path):
    dataset = CIFAR10(tmp_path, train=False)
    assert torch.equal(dataset.images, as_images(served["test_images"]))
    assert listing(tmp_path / "cifar10") == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_download_checksum_mismatch_names_url_and_both_checksums(served, mirror, monkeypatch, tmp_path):
    actual = CIFAR10.SHA256
    monkeypatch.setattr(CIFAR10, "SHA256", "0" * 64)
    with pytest.raises(DataNotFoundError) as info:
        CIFAR10(tmp_path)
    message = str(info.value)
    assert f"{mirror[0]}cifar-10-python.tar.gz: SHA-256 mismatch: expected {'0' * 64}, got {actual}" in message
    assert f"{CIFAR10.MIRRORS[0]}cifar-10-python.tar.gz: URLError" in message
    assert listing(tmp_path / "cifar10") == []


# Refusals: crafted archives and pickles in the CIFAR layout.


def evil_archive(path: Path, member: tarfile.TarInfo) -> Path:
    """A CIFAR-10 archive with one more member, ``member``, after the genuine ones."""
    cifar10_archive(path)
    genuine = path.with_suffix(".genuine")
    path.rename(genuine)
    with tarfile.open(genuine) as source, tarfile.open(path, "w:gz") as tar:
        for info in source.getmembers():
            tar.addfile(info, source.extractfile(info))
        tar.addfile(member)
    genuine.unlink()
    return path


@pytest.mark.parametrize(
    ("name", "kind", "linkname"),
    [
        ("cifar-10-batches-py/data_batch_6", tarfile.SYMTYPE, "/etc/passwd"),
        ("cifar-10-batches-py/copy", tarfile.LNKTYPE, "cifar-10-batches-py/test_batch"),
        ("../../escaped", tarfile.DIRTYPE, ""),
        ("/abs/escaped", tarfile.DIRTYPE, ""),
        ("cifar-10-batches-py/fifo", tarfile.FIFOTYPE, ""),
    ],
    ids=["symlink", "hardlink", "dotdot", "absolute", "fifo"],
)
def test_unsafe_archive_is_refused_and_leaves_only_the_archive(tmp_path, name, kind, linkname):
    (tmp_path / "cifar10").mkdir()
    bad = tarfile.TarInfo(name)
    bad.type, bad.linkname = kind, linkname
    archive = evil_archive(tmp_path / "cifar10" / CIFAR10.ARCHIVE, bad)
    with pytest.raises(UnsafeArchiveError) as info:
        CIFAR10(tmp_path, download=False)
    assert info.value.path == archive and info.value.member == name
    assert str(info.value).startswith(f"{archive}: member {name!r}")
    assert listing(tmp_path / "cifar10") == [CIFAR10.ARCHIVE]
    assert listing(tmp_path) == ["cifar10"]


class RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_batch_pickle_that_calls_os_system_is_refused_and_runs_nothing(cifar10):
    data_dir, _ = cifar10
    folder = CIFAR10(data_dir, download=False).folder
    marker = data_dir / "pwned"
    batch = {"data": np.zeros((1, 3072), np.uint8), "labels": [RunsCommand(f"touch {shlex.quote(str(marker))}")]}
    (folder / "data_batch_3").write_bytes(python2_pickle(batch))
    with pytest.raises(UnsafePickleError, match=f"{folder / 'data_batch_3'}: pickle refers to posix.system"):
        CIFAR10(data_dir, download=False)
    assert not marker.exists()


def replace_batch(data_dir: Path, name: str, content: object) -> Path:
    """Extract the archive and replace one of its files with ``content`` pickled as Python 2 did."""
    path = CIFAR10(data_dir, download=False).folder / name
    path.write_bytes(python2_pickle(content))
    return path


GOOD = {"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ([1, 2, 3], "holds a list, expected a dict with keys data, labels"),
        ({"data": GOOD["data"]}, "lacks the keys labels; it has data"),
        (GOOD | {"data": np.zeros((2, 3072), np.int32)}, r"'data' is a int32 array of shape \[2, 3072\], expected"),
        (GOOD | {"data": np.zeros((2, 1024), np.uint8)}, r"'data' is a uint8 array of shape \[2, 1024\]"),
        (GOOD | {"data": b"\x00" * 6144}, "'data' is a str, expected a uint8 array"),
        (GOOD | {"labels": [1, 2, 3]}, "3 labels, but 'data' holds 2 images: expected one each"),
        (GOOD | {"labels": [1, 10]}, r"labels 10 at index 1, expected 0 \.\. 9"),
        (GOOD | {"labels": [1, -1]}, r"labels -1 at index 1, expected 0 \.\. 9"),
        (GOOD | {"labels": [1.0, 2.0]}, "'labels' is a list, expected a list of ints"),
    ],
    ids=["not-dict", "no-labels", "int32", "wrong-width", "bytes", "count", "too-big", "negative", "floats"],
)
def test_corrupt_batch_names_file_and_problem(cifar10, content, match):
    data_dir, _ = cifar10
    path = replace_batch(data_dir, "data_batch_2", content)
    with pytest.raises(DataFormatError, match=match) as info:
        CIFAR10(data_dir, download=False)
    assert str(info.value).startswith(f"{path}: ")


def test_meta_with_wrong_names(cifar10):
    data_dir, _ = cifar10
    path = replace_batch(data_dir, "batches.meta", {"label_names": ["cat", "dog"]})
    match = f"{path}: 'label_names' is \\['cat', 'dog'\\], expected a list of 10 names"
    with pytest.raises(DataFormatError, match=match):
        CIFAR10(data_dir, download=False)


def test_missing_batch_in_extracted_folder(cifar10):
    data_dir, _ = cifar10
    folder = CIFAR10(data_dir, download=False).folder
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataFormatError, match=f"{folder}: data_batch_4 is missing: a complete cifar-10-batches-py/ "
                                              "holds data_batch_1, .*, test_batch, batches.meta"):
        CIFAR10(data_dir, download=False)


def test_archive_without_the_batches_folder(tmp_path):
    (tmp_path / "cifar10").mkdir()
    archive = tmp_path / "cifar10" / CIFAR10.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        add_dir(tar, "cifar-100-python")
        add_file(tar, "cifar-100-python/train", b"")
    with pytest.raises(DataFormatError, match="holds cifar-100-python, expected a folder cifar-10-batches-py/"):
        CIFAR10(tmp_path, download=False)
    assert listing(tmp_path / "cifar10") == [CIFAR10.ARCHIVE]


def test_truncated_archive(cifar10):
    data_dir, _ = cifar10
    archive = data_dir / "cifar10" / CIFAR10.ARCHIVE
    archive.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match=f"{archive}: not a readable tar archive"):
        CIFAR10(data_dir, download=False)
    assert listing(data_dir / "cifar10") == [CIFAR10.ARCHIVE]
