"""The MNIST family: the real digits, gzip and raw files, corrupt data sets, downloads from a local mirror,
and Fashion-MNIST and KMNIST through the same code path."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch

from cadence.data import KMNIST, MNIST, DataFormatError, DataNotFoundError, FashionMNIST, MNISTNotFoundError
from cadence.data.dirs import ENV_VAR

from .conftest import idx_dims

SPLITS = {True: "train", False: "t10k"}
FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def write_idx(path: Path, magic: int, dims: tuple[int, ...], data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(struct.pack(f">I{len(dims)}I", magic, *dims) + data))
    return path


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_real_digits(data_dir, train):
    folder = data_dir / "mnist"
    count, *size = idx_dims(folder / f"{SPLITS[train]}-images-idx3-ubyte.gz")
    assert size == [28, 28] and idx_dims(folder / f"{SPLITS[train]}-labels-idx1-ubyte.gz") == (count,)
    assert count >= 1000  # real data: the shared subset holds 8,000 / 2,000 digits, the official files 60,000 / 10,000
    mnist = MNIST(data_dir, train=train, download=False)
    assert mnist.root == data_dir / "mnist"
    assert mnist.images.shape == (count, 28, 28) and mnist.images.dtype == torch.uint8
    assert mnist.images.is_contiguous()
    assert mnist.labels.shape == (count,) and mnist.labels.dtype == torch.int64
    assert len(mnist) == count
    assert set(mnist.labels.tolist()) == set(range(10))
    assert abs((mnist.images.float() / 255).mean().item() - MNIST.MEAN) < 0.02  # 0.130 train, 0.142 test
    assert mnist.image_path == data_dir / "mnist" / f"{SPLITS[train]}-images-idx3-ubyte.gz"


def test_raw_files_read_like_gzip(data_dir, tmp_path):
    for name in FILES:
        raw = gzip.decompress((data_dir / "mnist" / name).read_bytes())
        (tmp_path / "mnist").mkdir(exist_ok=True)
        (tmp_path / "mnist" / name.removesuffix(".gz")).write_bytes(raw)
    from_raw = MNIST(tmp_path, train=False, download=False)
    from_gzip = MNIST(data_dir, train=False, download=False)
    assert from_raw.image_path == tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    assert torch.equal(from_raw.images, from_gzip.images)
    assert torch.equal(from_raw.labels, from_gzip.labels)


def test_data_dir_from_environment(data_dir, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(data_dir))
    assert MNIST(train=False, download=False).root == data_dir / "mnist"


def test_normalize_matches_the_formula(data_dir):
    images = MNIST(data_dir, train=False, download=False).images[:64]
    x = MNIST.normalize(images)
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    expected = ((images.double() / 255 - 0.1307) / 0.3081).float().unsqueeze(1)
    torch.testing.assert_close(x, expected)


def test_normalized_training_digits_are_standardized(data_dir):
    x = MNIST.normalize(MNIST(data_dir, train=True, download=False).images)
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05


def test_normalize_rejects_bad_input():
    with pytest.raises(TypeError, match="expects uint8 images .* got dtype torch.float32"):
        MNIST.normalize(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match=r"expects a batch \[B, H, W\], got shape \[28, 28\]"):
        MNIST.normalize(torch.zeros(28, 28, dtype=torch.uint8))


def test_count_mismatch_names_both_files_and_counts(tmp_path):
    images = write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", 2051, (3, 28, 28), bytes(3 * 784))
    labels = write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", 2049, (2,), bytes(2))
    with pytest.raises(DataFormatError) as info:
        MNIST(tmp_path, train=False, download=False)
    message = str(info.value)
    assert str(images) in message and str(labels) in message
    assert "2 labels, but" in message and "holds 3 images" in message


def test_label_out_of_range(tmp_path):
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", 2051, (3, 28, 28), bytes(3 * 784))
    labels = write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", 2049, (3,), bytes([1, 12, 3]))
    with pytest.raises(DataFormatError, match=r"label 12 at index 1, expected 0 \.\. 9") as info:
        MNIST(tmp_path, train=False, download=False)
    assert str(labels) in str(info.value)


def test_swapped_files_fail_on_magic(tmp_path, data_dir):
    (tmp_path / "mnist").mkdir()
    shutil.copy(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz")
    shutil.copy(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataFormatError, match="t10k-images-idx3-ubyte.gz: magic number 2049 .*, expected 2051"):
        MNIST(tmp_path, train=False, download=False)


def test_images_of_wrong_size(tmp_path):
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", 2051, (2, 32, 32), bytes(2 * 1024))
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", 2049, (2,), bytes(2))
    with pytest.raises(DataFormatError, match=r"dims 2x32x32, expected \*x28x28"):
        MNIST(tmp_path, train=False, download=False)


def test_missing_without_download_says_what_to_place_where(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        MNIST(tmp_path, train=True, download=False)
    assert isinstance(info.value, MNISTNotFoundError)
    message = str(info.value)
    assert f"MNIST files missing from {tmp_path / 'mnist'}" in message
    assert "place train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz there" in message
    assert "download=False" in message


@pytest.fixture
def local_mirrors(monkeypatch, mirror, refused_base, data_dir) -> Path:
    """Point MNIST at a dead mirror, then the local one; checksums are those of the shared test files."""
    monkeypatch.setattr(MNIST, "MIRRORS", (f"{refused_base}/mnist/", mirror[0]))
    sha = {name: hashlib.sha256((data_dir / "mnist" / name).read_bytes()).hexdigest() for name in FILES}
    monkeypatch.setattr(MNIST, "SHA256", sha)
    return mirror[1]


def test_download_from_mirrors(local_mirrors, data_dir, tmp_path):
    for name in FILES:
        shutil.copy(data_dir / "mnist" / name, local_mirrors / name)
    mnist = MNIST(tmp_path / "data", train=False, download=True)
    reference = MNIST(data_dir, train=False, download=False)
    assert torch.equal(mnist.images, reference.images) and torch.equal(mnist.labels, reference.labels)
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(FILES)


def test_download_fetches_only_missing_files(local_mirrors, data_dir, tmp_path):
    shutil.copy(data_dir / "mnist" / FILES[0], local_mirrors / FILES[0])
    raw_labels = gzip.decompress((data_dir / "mnist" / FILES[1]).read_bytes())
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(raw_labels)
    mnist = MNIST(tmp_path, train=False, download=True)
    assert len(mnist) == idx_dims(data_dir / "mnist" / FILES[1])[0]
    assert mnist.label_path == tmp_path / "mnist" / "t10k-labels-idx1-ubyte"


def test_every_mirror_failing_names_directory_files_and_errors(local_mirrors, refused_base, tmp_path):
    with pytest.raises(MNISTNotFoundError) as info:
        MNIST(tmp_path, train=False, download=True)
    message = str(info.value)
    assert f"MNIST files missing from {tmp_path / 'mnist'}" in message
    assert "place t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz there" in message
    assert f"{refused_base}/mnist/t10k-images-idx3-ubyte.gz: URLError" in message and "Connection refused" in message
    assert f"{MNIST.MIRRORS[1]}t10k-images-idx3-ubyte.gz: HTTPError: HTTP Error 404" in message
    assert list((tmp_path / "mnist").iterdir()) == []


def test_corrupt_download_leaves_no_file(local_mirrors, data_dir, tmp_path):
    shutil.copy(data_dir / "mnist" / "train-images-idx3-ubyte.gz", local_mirrors / FILES[0])
    with pytest.raises(MNISTNotFoundError, match=f"SHA-256 mismatch: expected {MNIST.SHA256[FILES[0]]}"):
        MNIST(tmp_path, train=False, download=True)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_official_checksums_are_sha256_of_each_file():
    split_files = {f"{split}-{kind}-ubyte.gz" for split in SPLITS.values() for kind in ("images-idx3", "labels-idx1")}
    assert set(MNIST.SHA256) == split_files
    assert all(re.fullmatch("[0-9a-f]{64}", sha) for sha in MNIST.SHA256.values())


FAMILY = [MNIST, FashionMNIST, KMNIST]


def write_split(folder: Path, split: str, images: torch.Tensor, labels: torch.Tensor) -> list[Path]:
    """The IDX files of one split, gzip-compressed, in ``folder``."""
    return [
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", 2051, tuple(images.shape), images.numpy().tobytes()),
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", 2049, (len(labels),), labels.byte().numpy().tobytes()),
    ]


def random_split(n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (n,), generator=generator)


@pytest.mark.parametrize("dataset", FAMILY, ids=lambda d: d.__name__)
def test_family_reads_its_own_folder(tmp_path, dataset):
    images, labels = random_split()
    write_split(tmp_path / dataset.FOLDER, "train", images, labels)
    loaded = dataset(tmp_path, train=True, download=False)
    assert loaded.root == tmp_path / dataset.FOLDER
    assert torch.equal(loaded.images, images) and torch.equal(loaded.labels, labels)
    assert loaded.classes == dataset.CLASSES
    assert repr(loaded) == f"{dataset.__name__}(root={str(tmp_path / dataset.FOLDER)!r}, train=True, size=5)"
    for other in FAMILY:
        if other is not dataset:
            with pytest.raises(MNISTNotFoundError, match=f"{other.NAME} files missing from {tmp_path / other.FOLDER}"):
                other(tmp_path, train=True, download=False)


@pytest.mark.parametrize("dataset", FAMILY, ids=lambda d: d.__name__)
def test_family_downloads_from_its_mirrors(monkeypatch, mirror, refused_base, tmp_path, dataset):
    images, labels = random_split(seed=1)
    served = write_split(mirror[1], "t10k", images, labels)
    monkeypatch.setattr(dataset, "MIRRORS", (f"{refused_base}/", mirror[0]))
    monkeypatch.setattr(dataset, "SHA256", {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in served})
    loaded = dataset(tmp_path / "data", train=False)
    assert torch.equal(loaded.images, images) and torch.equal(loaded.labels, labels)
    assert sorted(p.name for p in (tmp_path / "data" / dataset.FOLDER).iterdir()) == sorted(p.name for p in served)


@pytest.mark.parametrize("dataset", [FashionMNIST, KMNIST], ids=lambda d: d.__name__)
def test_family_missing_names_data_set_folder_and_files(tmp_path, dataset):
    with pytest.raises(MNISTNotFoundError) as info:
        dataset(tmp_path, train=False, download=False)
    assert isinstance(info.value, DataNotFoundError) and isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert message.startswith(f"{dataset.NAME} files missing from {tmp_path / dataset.FOLDER}: ")
    assert "place t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz there (or uncompressed, without .gz)" in message
    assert f"a folder whose {dataset.FOLDER}/ holds them; download=False" in message


@pytest.mark.parametrize("dataset", FAMILY, ids=lambda d: d.__name__)
def test_family_normalize_uses_its_own_statistics(dataset):
    images, _ = random_split(n=4)
    expected = ((images.double() / 255 - dataset.MEAN) / dataset.STD).float().unsqueeze(1)
    torch.testing.assert_close(dataset.normalize(images), expected)
    with pytest.raises(TypeError, match=f"{dataset.__name__}.normalize expects uint8 images"):
        dataset.normalize(images.float())


def test_family_constants():
    official = {f"{split}-{kind}-ubyte.gz" for split in SPLITS.values() for kind in ("images-idx3", "labels-idx1")}
    checksums = [sha for dataset in FAMILY for sha in dataset.SHA256.values()]
    assert len(set(checksums)) == 12
    assert {dataset.FOLDER for dataset in FAMILY} == {"mnist", "fashion_mnist", "kmnist"}
    for dataset in FAMILY:
        assert set(dataset.SHA256) == official and all(re.fullmatch("[0-9a-f]{64}", s) for s in dataset.SHA256.values())
        assert dataset.MIRRORS
        assert all(m.startswith(("http://", "https://")) and m.endswith("/") for m in dataset.MIRRORS)
        assert len(dataset.CLASSES) == dataset.NUM_CLASSES == 10
        assert 0 < dataset.MEAN < 0.5 and 0.2 < dataset.STD < 0.5
