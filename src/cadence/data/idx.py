"""Reader for IDX files, the format of MNIST and its family, gzip-compressed or raw.

An IDX file is a 4-byte big-endian magic number, one 4-byte big-endian size per dimension,
then the data in C order, big-endian:

| bytes | meaning |
| --- | --- |
| 0, 1 | always zero |
| 2 | type code: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64 |
| 3 | number of dimensions ``d`` |
| 4 .. 4 + 4d | the size of each dimension |
| then | ``prod(sizes) * itemsize`` bytes of data, and nothing after them |

So MNIST images have magic ``0x00000803 = 2051`` (uint8, 3 dims: N x 28 x 28) and labels
``0x00000801 = 2049`` (uint8, 1 dim: N).
"""

from __future__ import annotations

import contextlib
import gzip
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

__all__ = ["DataFormatError", "describe_magic", "read_idx"]

IDX_TYPES: dict[int, tuple[str, np.dtype]] = {
    0x08: ("uint8", np.dtype(">u1")),
    0x09: ("int8", np.dtype(">i1")),
    0x0B: ("int16", np.dtype(">i2")),
    0x0C: ("int32", np.dtype(">i4")),
    0x0D: ("float32", np.dtype(">f4")),
    0x0E: ("float64", np.dtype(">f8")),
}
"""IDX type code -> (name, big-endian numpy dtype of the data on disk)."""

GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of every gzip stream; files are recognised by them, not by their name."""

_MAX_DEFLATE_RATIO = 1032
"""Deflate cannot compress better than about 1032:1, which bounds the data a gzip file can hold."""

_CHUNK = 1 << 20


class DataFormatError(ValueError):
    """A data file whose content does not have the expected structure.

    The message starts with the file's path and says exactly what was wrong; ``path`` and
    ``reason`` hold the two parts.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def describe_magic(magic: int) -> str:
    """A readable description of an IDX magic number, e.g. ``2051`` -> ``"uint8, 3 dims"``."""
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or code not in IDX_TYPES:
        return "not an IDX magic number"
    return f"{IDX_TYPES[code][0]}, {ndim} dim{'s' if ndim != 1 else ''}"


def _format_dims(dims: Sequence[int | None]) -> str:
    return "x".join("*" if d is None else str(d) for d in dims) if dims else "(scalar)"


def _read_exactly(stream: BinaryIO, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``stream`` in chunks; return how many bytes it got (less at end of file)."""
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(buffer[filled : filled + _CHUNK])
        if not got:
            break
        filled += got
    return filled


def _count_rest(stream: BinaryIO) -> int:
    """Read ``stream`` to its end in bounded chunks and return how many bytes were left."""
    count = 0
    while chunk := stream.read(_CHUNK):
        count += len(chunk)
    return count


def read_idx(
    path: str | Path,
    *,
    expected_magic: int | None = None,
    expected_dims: Sequence[int | None] | None = None,
) -> torch.Tensor:
    """Read an IDX file (gzip or raw, told apart by the gzip magic bytes ``1f 8b``) into a tensor.

    Args:
        path: the file.
        expected_magic: if given, the magic number the file must have (e.g. 2051 for MNIST
            images: uint8, 3 dims); it fixes the data type and the number of dimensions.
        expected_dims: if given, the sizes the dimensions must have, ``None`` for any size
            (e.g. ``(None, 28, 28)``).

    Returns:
        A contiguous tensor of shape ``dims`` in the file's data type (native byte order),
        held in memory.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: the file is not a valid IDX file, or not the expected one: the
            message names the path and what was wrong (bad magic number, wrong dims,
            truncated header or data, trailing data, corrupt gzip stream).
    """
    path = Path(path)
    with path.open("rb") as raw:
        is_gzip = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip else contextlib.nullcontext(raw) as stream:
                return _read(stream, path, is_gzip, expected_magic, expected_dims)
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise DataFormatError(path, f"corrupt gzip stream: {error}") from error


def _read(
    stream: BinaryIO,
    path: Path,
    is_gzip: bool,
    expected_magic: int | None,
    expected_dims: Sequence[int | None] | None,
) -> torch.Tensor:
    header = stream.read(4)
    if len(header) < 4:
        raise DataFormatError(
            path, f"truncated header: {len(header)} bytes, an IDX file starts with a 4-byte magic number"
        )
    magic = int.from_bytes(header, "big")
    code, ndim = header[2], header[3]
    if header[:2] != b"\x00\x00" or code not in IDX_TYPES:
        codes = ", ".join(f"{c:02x} {name}" for c, (name, _) in IDX_TYPES.items())
        raise DataFormatError(
            path,
            f"not an IDX file: magic number {magic} (bytes {header.hex(' ')}), "
            f"expected bytes 00 00, a type code ({codes}) and the number of dims",
        )
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(
            path,
            f"magic number {magic} ({describe_magic(magic)}), "
            f"expected {expected_magic} ({describe_magic(expected_magic)})",
        )

    size_bytes = stream.read(4 * ndim)
    if len(size_bytes) < 4 * ndim:
        raise DataFormatError(
            path,
            f"truncated header: magic number {magic} says {ndim} dims, which take {4 * ndim} bytes after it, "
            f"file holds {len(size_bytes)}",
        )
    dims = tuple(int.from_bytes(size_bytes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    if expected_dims is not None and (
        len(dims) != len(expected_dims) or any(e is not None and d != e for d, e in zip(dims, expected_dims))
    ):
        raise DataFormatError(path, f"dims {_format_dims(dims)}, expected {_format_dims(expected_dims)}")

    name, dtype = IDX_TYPES[code]
    nbytes = math.prod(dims) * dtype.itemsize
    said = f"header says {_format_dims(dims)}{'' if dtype.itemsize == 1 else f' {name}'} = {nbytes} bytes of data"
    held_in = "decompressed file holds" if is_gzip else "file holds"

    # A corrupt header can claim terabytes: check what the file can hold before allocating.
    file_size = path.stat().st_size
    header_size = 4 + 4 * ndim
    can_hold = file_size * _MAX_DEFLATE_RATIO if is_gzip else file_size - header_size
    if nbytes > can_hold:
        raise DataFormatError(path, f"truncated: {said}, {held_in} {_count_rest(stream)}")

    data = np.empty(nbytes, dtype=np.uint8)
    got = _read_exactly(stream, memoryview(data))
    if got < nbytes:
        raise DataFormatError(path, f"truncated: {said}, {held_in} {got}")
    extra = _count_rest(stream)
    if extra:
        raise DataFormatError(path, f"trailing data: {said}, {held_in} {nbytes + extra} ({extra} bytes too many)")

    native = data.view(dtype).astype(dtype.newbyteorder("="), copy=False)
    return torch.from_numpy(native).reshape(dims)
