"""Compact token storage and the memory-mapped token cache of a corpus.

Token ids are stored in the smallest unsigned integer type that holds the vocabulary
(:func:`token_dtype`): one byte per token for a character vocabulary, a quarter of int64.

A corpus larger than memory is tokenized once into a cache file written next to it, then
memory-mapped: the operating system pages tokens in as batches touch them, and
:func:`release_pages` lets a loader hand back the pages it has read, so resident memory stays
bounded however large the corpus. The file layout:

| bytes | what |
| --- | --- |
| 8 | :data:`MAGIC` |
| ``n * itemsize`` | the tokens, training then validation then test, native byte order |
| ``h`` | the header: JSON with the key, dtype, vocabulary, counts and the tokens' SHA-256 |
| 8 | ``h``, little-endian |
| 8 | :data:`MAGIC` again |

The header comes last because the counts and the checksum are known only once the tokens are
written, which happens a chunk at a time. The file is written under a temporary name and
renamed into place, so it is either whole or absent. :meth:`TokenCache.load` uses a file only if
its key (a hash of the text and of the tokenizer and vocabulary settings) matches and its
structure, size and checksum are right; anything else means the cache is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from cadence.data.partial import partial_path

__all__ = ["MAGIC", "TokenCache", "release_pages", "token_dtype"]

logger = logging.getLogger(__name__)

MAGIC = b"CDNTOK2\n"
"""The first and last 8 bytes of a token cache file, version 2 (version 1 had no test tokens)."""

_TRAILER = 16
_SPLITS = ("train", "valid", "test")
_UNSIGNED = ((2**8, torch.uint8), (2**16, torch.uint16), (2**32, torch.uint32))

_MAPPED: weakref.WeakValueDictionary[int, mmap.mmap] = weakref.WeakValueDictionary()
"""Memory maps of token caches, by the address of the tensor storage that views them."""


def token_dtype(n_tokens: int) -> torch.dtype:
    """The smallest unsigned integer dtype holding ids ``0 .. n_tokens - 1`` (int64 above ``2**32`` tokens)."""
    for limit, dtype in _UNSIGNED:
        if n_tokens <= limit:
            return dtype
    return torch.int64


def release_pages(tokens: torch.Tensor) -> None:
    """Drop the pages of a memory-mapped token tensor from this process's resident memory.

    The data stays in the file (and in the page cache); the next read of a page maps it again.
    Tensors not backed by a :class:`TokenCache` are left alone, as are systems without
    ``madvise(MADV_DONTNEED)``.
    """
    mapped = _MAPPED.get(tokens.untyped_storage().data_ptr())
    if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)


@dataclass(frozen=True)
class TokenCache:
    """A token cache file, memory-mapped: the vocabulary and the training, validation and test tokens.

    Attributes:
        path: the cache file.
        itos: the vocabulary, id -> token.
        train: the training tokens, a 1-D tensor of :func:`token_dtype` viewing the file.
        valid: the validation tokens, likewise.
        test: the test tokens, likewise.
    """

    path: Path
    itos: list[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    @classmethod
    def load(cls, path: str | Path, key: str) -> TokenCache | None:
        """Map the cache at ``path`` if it was built for ``key`` and is intact, else ``None`` (logging why).

        Intact means: both magic numbers, a readable header, a size that matches the header's
        counts, and tokens whose SHA-256 is the header's. A corrupt or truncated file is never
        used; a missing one is simply ``None``.
        """
        path = Path(path)
        if not path.is_file():
            return None
        try:
            header, payload = _read_header(path)
        except ValueError as error:
            logger.warning("token cache %s is corrupt (%s): rebuilding it", path, error)
            return None
        if header["key"] != key:
            logger.info("token cache %s was built for another text or tokenizer: rebuilding it", path)
            return None
        with path.open("rb") as file:
            file.seek(len(MAGIC))
            digest = hashlib.sha256()
            left = payload
            while left and (chunk := file.read(min(left, 1 << 20))):
                digest.update(chunk)
                left -= len(chunk)
        if digest.hexdigest() != header["sha256"]:
            logger.warning("token cache %s is corrupt (tokens do not match their SHA-256): rebuilding it", path)
            return None
        return cls._map(path, header)

    @classmethod
    def build(
        cls, path: str | Path, key: str, itos: list[str], parts: Iterable[tuple[int, torch.Tensor]]
    ) -> TokenCache:
        """Write a cache of the tokens in ``parts`` to ``path`` atomically, and map it.

        Args:
            path: the cache file; replaced if it exists, its folder made if missing.
            key: what the cache was built from (see :meth:`load`).
            itos: the vocabulary.
            parts: ``(split, ids)`` chunks in order, ``split`` 0 for training, 1 for validation
                and 2 for test ids, all training chunks first, then all validation chunks;
                ``ids`` are 1-D tensors of :func:`token_dtype` of ``len(itos)``.
        """
        path = Path(path)
        dtype = token_dtype(len(itos))
        counts = [0, 0, 0]
        digest = hashlib.sha256()
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = partial_path(path)
        try:
            with temp.open("xb") as file:
                file.write(MAGIC)
                for split, ids in parts:
                    if ids.dtype != dtype:
                        raise TypeError(f"token ids of dtype {ids.dtype} for a vocabulary of {len(itos)}: expected {dtype}")
                    data = ids.numpy().tobytes()
                    digest.update(data)
                    file.write(data)
                    counts[split] += len(ids)
                header = {"key": key, "dtype": str(dtype).removeprefix("torch."), "itos": itos,
                          "train": counts[0], "valid": counts[1], "test": counts[2], "sha256": digest.hexdigest()}
                encoded = json.dumps(header, ensure_ascii=False).encode("utf-8")
                file.write(encoded + len(encoded).to_bytes(8, "little") + MAGIC)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return cls._map(path, header)

    @classmethod
    def _map(cls, path: Path, header: dict) -> TokenCache:
        """Map the tokens of a checked cache file (copy-on-write, so writes to the tensors never reach the file)."""
        dtype = getattr(torch, header["dtype"])
        count = sum(header[split] for split in _SPLITS)
        with path.open("rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
        if count == 0:  # torch.frombuffer refuses an empty view
            tokens = torch.empty(0, dtype=dtype)
        else:
            tokens = torch.frombuffer(mapped, dtype=dtype, count=count, offset=len(MAGIC))
        _MAPPED[tokens.untyped_storage().data_ptr()] = mapped
        train, valid, test = tokens.split([header[split] for split in _SPLITS])
        return cls(path, header["itos"], train, valid, test)


def _read_header(path: Path) -> tuple[dict, int]:
    """The header of the cache file at ``path`` and the size in bytes of its tokens; ``ValueError`` if malformed."""
    size = path.stat().st_size
    with path.open("rb") as file:
        if size < len(MAGIC) + _TRAILER or file.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{size} bytes, not starting with {MAGIC!r}")
        file.seek(size - _TRAILER)
        trailer = file.read(_TRAILER)
        if trailer[8:] != MAGIC:
            raise ValueError("truncated: it does not end with the magic number")
        length = int.from_bytes(trailer[:8], "little")
        payload = size - len(MAGIC) - _TRAILER - length
        if payload < 0:
            raise ValueError(f"header length {length} exceeds the file of {size} bytes")
        file.seek(len(MAGIC) + payload)
        try:
            header = json.loads(file.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"unreadable header: {error}") from error
    fields = {"key": str, "dtype": str, "itos": list, "train": int, "valid": int, "test": int, "sha256": str}
    if not isinstance(header, dict) or any(not isinstance(header.get(k), t) for k, t in fields.items()):
        raise ValueError(f"header lacks one of {sorted(fields)} or has a value of the wrong type")
    dtype = getattr(torch, header["dtype"], None)
    if not isinstance(dtype, torch.dtype) or token_dtype(len(header["itos"])) != dtype:
        raise ValueError(f"dtype {header['dtype']!r} is not the token dtype of {len(header['itos'])} tokens")
    counts = [header[split] for split in _SPLITS]
    if min(counts) < 0 or sum(counts) * dtype.itemsize != payload:
        says = " + ".join(map(str, counts))
        raise ValueError(f"{payload} bytes of tokens where the header says {says} {header['dtype']}")
    return header, payload
