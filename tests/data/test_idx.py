"""read_idx: real MNIST files (gzip and raw), every IDX type, and each kind of corrupt file."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from cadence.data.idx import DataFormatError, read_idx

from .conftest import idx_dims


def idx_bytes(magic: int, dims: tuple[int, ...], data: bytes) -> bytes:
    """An IDX file: big-endian magic, one big-endian size per dim, then ``data``."""
    return struct.pack(f">I{len(dims)}I", magic, *dims) + data


def write(path: Path, content: bytes, *, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def images_file(tmp_path: Path, n: int = 3, *, compress: bool = False, extra: int = 0) -> tuple[Path, np.ndarray]:
    """A valid uint8 ``n x 28 x 28`` image file (``extra`` > 0 adds trailing bytes, < 0 cuts data)."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    data = pixels.tobytes()
    data = data + b"\x07" * extra if extra >= 0 else data[:extra]
    name = "images.idx.gz" if compress else "images.idx"
    return write(tmp_path / name, idx_bytes(2051, (n, 28, 28), data), compress=compress), pixels


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_reads_uint8_images(tmp_path, compress):
    path, pixels = images_file(tmp_path, compress=compress)
    x = read_idx(path, expected_magic=2051, expected_dims=(None, 28, 28))
    assert x.dtype == torch.uint8 and x.shape == (3, 28, 28) and x.is_contiguous()
    assert torch.equal(x, torch.from_numpy(pixels))


@pytest.mark.parametrize(
    ("code", "dtype", "torch_dtype"),
    [(0x09, ">i1", torch.int8), (0x0B, ">i2", torch.int16), (0x0C, ">i4", torch.int32),
     (0x0D, ">f4", torch.float32), (0x0E, ">f8", torch.float64)],
)
def test_reads_every_type_big_endian(tmp_path, code, dtype, torch_dtype):
    values = np.array([[-3, 1, 2], [100, -100, 7]]).astype(dtype)
    path = write(tmp_path / "x.idx", idx_bytes((code << 8) | 2, (2, 3), values.tobytes()))
    x = read_idx(path)
    assert x.dtype == torch_dtype
    assert x.tolist() == values.astype(dtype[1:]).tolist()


def test_gzip_is_detected_by_content_not_name(tmp_path):
    _, pixels = images_file(tmp_path)
    content = (tmp_path / "images.idx").read_bytes()
    disguised = write(tmp_path / "images.raw", content, compress=True)
    plain_named_gz = write(tmp_path / "plain.gz", content)
    assert torch.equal(read_idx(disguised), read_idx(plain_named_gz))


def test_real_mnist_gzip_and_raw_are_identical(data_dir, tmp_path):
    gz = data_dir / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = write(tmp_path / "t10k-images-idx3-ubyte", gzip.decompress(gz.read_bytes()))
    a, b = read_idx(gz, expected_magic=2051), read_idx(raw, expected_magic=2051)
    assert a.shape == idx_dims(gz) and a.shape[1:] == (28, 28) and a.dtype == torch.uint8
    assert torch.equal(a, b)


def test_wrong_magic_names_path_and_both_magics(data_dir):
    labels = data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    with pytest.raises(DataFormatError) as info:
        read_idx(labels, expected_magic=2051)
    message = str(info.value)
    assert str(labels) in message
    assert "magic number 2049 (uint8, 1 dim), expected 2051 (uint8, 3 dims)" in message
    assert info.value.path == labels


def test_not_an_idx_file(tmp_path):
    path = write(tmp_path / "photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(DataFormatError, match=r"not an IDX file: .*bytes 89 50 4e 47") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_unknown_type_code(tmp_path):
    path = write(tmp_path / "x.idx", idx_bytes(0x0A01, (1,), b"\x00"))
    with pytest.raises(DataFormatError, match="not an IDX file: magic number 2561"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_truncated_data(tmp_path, compress):
    path, _ = images_file(tmp_path, compress=compress, extra=-1)
    with pytest.raises(DataFormatError) as info:
        read_idx(path)
    holds = "decompressed file holds" if compress else "file holds"
    assert str(info.value) == f"{path}: truncated: header says 3x28x28 = 2352 bytes of data, {holds} 2351"


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_trailing_data(tmp_path, compress):
    path, _ = images_file(tmp_path, compress=compress, extra=5)
    with pytest.raises(DataFormatError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "trailing data: header says 3x28x28 = 2352 bytes of data" in str(info.value)
    assert "2357 (5 bytes too many)" in str(info.value)


def test_truncated_header(tmp_path):
    short = write(tmp_path / "short.idx", b"\x00\x00")
    with pytest.raises(DataFormatError, match="truncated header: 2 bytes"):
        read_idx(short)
    no_dims = write(tmp_path / "no_dims.idx", struct.pack(">II", 2051, 5))
    with pytest.raises(DataFormatError, match="says 3 dims, which take 12 bytes after it, file holds 4") as info:
        read_idx(no_dims)
    assert str(no_dims) in str(info.value)


def test_wrong_dims(tmp_path):
    path = write(tmp_path / "x.idx", idx_bytes(2051, (2, 28, 27), bytes(2 * 28 * 27)))
    with pytest.raises(DataFormatError) as info:
        read_idx(path, expected_magic=2051, expected_dims=(None, 28, 28))
    assert str(info.value) == f"{path}: dims 2x28x27, expected *x28x28"


def test_wrong_number_of_dims_without_expected_magic(tmp_path):
    path = write(tmp_path / "x.idx", idx_bytes(2049, (4,), bytes(4)))
    with pytest.raises(DataFormatError, match=r"dims 4, expected \*x28x28"):
        read_idx(path, expected_dims=(None, 28, 28))


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("count", [255_000, 4_000_000_000], ids=["200MB", "3TB"])
def test_huge_header_claim_fails_without_allocating(tmp_path, compress, count):
    # 200 MB could be allocated, and would be if the reader trusted the header: the same error
    # would follow, so only the allocations tell the two apart (numpy reports its buffers to tracemalloc).
    path = write(tmp_path / "x.idx", idx_bytes(2051, (count, 28, 28), bytes(100)), compress=compress)
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match=f"truncated: header says {count}x28x28 = {count * 784} bytes"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"read_idx allocated up to {peak:,} bytes for a {path.stat().st_size}-byte file"


def test_corrupt_gzip_stream(tmp_path):
    path, _ = images_file(tmp_path, compress=True)
    content = bytearray(path.read_bytes())
    content[len(content) // 2 : len(content) // 2 + 16] = b"\xff" * 16
    path.write_bytes(bytes(content))
    with pytest.raises(DataFormatError, match="corrupt gzip stream") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_cut_gzip_stream(tmp_path):
    path, _ = images_file(tmp_path, compress=True)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match="corrupt gzip stream: Compressed file ended") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_gzip_crc_mismatch(tmp_path):
    path, _ = images_file(tmp_path, compress=True)
    content = bytearray(path.read_bytes())
    content[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    path.write_bytes(bytes(content))
    with pytest.raises(DataFormatError, match="corrupt gzip stream: CRC check failed"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent.idx")
