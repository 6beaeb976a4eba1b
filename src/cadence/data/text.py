"""Text corpora: a vocabulary over training and validation text, and their tokens, stored compactly.

After labml_nn's ``TextDataset`` and ``TextFileDataset``: the vocabulary (a
:class:`~cadence.data.vocabulary.Vocabulary`) is every distinct token of the training and
validation text, sorted, after the reserved tokens (padding, unknown); a text file is split
90/10 into training and validation text by characters.

Token ids are stored in the smallest unsigned integer dtype that holds the vocabulary
(:func:`~cadence.data.token_cache.token_dtype`). A file of at least ``mmap_threshold`` bytes
is never read whole: it is streamed a chunk of lines at a time, tokenized once into a cache
file next to it and memory-mapped from there (:class:`~cadence.data.token_cache.TokenCache`).
Both paths tokenize chunks of whole lines and give the same tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from cadence.checks import check_number
from cadence.data.dirs import resolve_data_dir
from cadence.data.download import DownloadError
from cadence.data.download import download as download_file
from cadence.data.idx import DataFormatError
from cadence.data.token_cache import TokenCache
from cadence.data.tokenizers import TokenizerLike, as_tokenizer
from cadence.data.vocabulary import CHUNK_CHARS, PADDING, UNKNOWN, Vocabulary

__all__ = [
    "DEFAULT_MMAP_THRESHOLD",
    "KNOWN_SHA256",
    "TINY_SHAKESPEARE_URL",
    "TextDataset",
    "TextFileDataset",
    "text_file_path",
]

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
"""Tiny Shakespeare (Karpathy's char-rnn): 1,115,394 characters, 65 distinct."""

KNOWN_SHA256: dict[str, str] = {
    TINY_SHAKESPEARE_URL: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
}
"""SHA-256 of the corpora known by URL, so that :class:`TextFileDataset` can verify their download."""

DEFAULT_MMAP_THRESHOLD = 64 * 2**20
"""Files of at least this many bytes (64 MiB) are tokenized into a cache and memory-mapped."""

class TextDataset:
    """Training and validation text, their vocabulary and their tokens.

    Args:
        path: where the text came from (shown by ``repr``), or ``None``.
        tokenizer: a :class:`~cadence.data.tokenizers.Tokenizer`, ``"character"``, ``"word"``, ``"word_eos"``,
            or any callable ``text -> list of tokens`` (see :func:`~cadence.data.tokenizers.as_tokenizer`).
        train: the training text.
        valid: the validation text.
        test: the test text (kept, not tokenized).
        itos: the vocabulary's tokens, reserved ones included, instead of building them.
        padding: the padding token (id 0), or ``None`` for none; never decoded.
        unknown: the unknown token (the next id), or ``None``: then a token the vocabulary
            lacks is an error.

    Attributes:
        vocabulary: the :class:`~cadence.data.vocabulary.Vocabulary`: the reserved tokens, then
            every distinct token of ``train`` and ``valid`` in sorted order; it encodes and decodes.
        train_tokens, valid_tokens: the ids of ``train`` and ``valid``, 1-D tensors of the
            vocabulary's compact :attr:`~cadence.data.vocabulary.Vocabulary.dtype`.

    Raises:
        ValueError: the reserved tokens are equal, the text holds a reserved token, or
            ``itos`` repeats a token or lacks a reserved one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        tokenizer: TokenizerLike,
        train: str,
        valid: str,
        test: str = "",
        *,
        itos: Sequence[str] | None = None,
        padding: str | None = PADDING,
        unknown: str | None = UNKNOWN,
    ) -> None:
        self.path = path
        self.train: str | None = train
        self.valid: str | None = valid
        self.test = test
        self.vocabulary = (Vocabulary.build([train, valid], tokenizer, padding=padding, unknown=unknown) if itos is None
                           else Vocabulary(itos, tokenizer, padding=padding, unknown=unknown))
        self.train_tokens = self.vocabulary.encode(train)
        self.valid_tokens = self.vocabulary.encode(valid)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, {self.vocabulary.tokenizer!r}, {len(self.vocabulary)} tokens, "
            f"train {len(self.train_tokens):,}, valid {len(self.valid_tokens):,} ids)"
        )


class TextFileDataset(TextDataset):
    """A text file, or a URL downloaded into the data directory, split 90/10 into training and validation text.

    Args:
        path_or_url: a local file, or an ``http(s)`` URL. A URL's file is kept in the data
            directory under the last two parts of the URL's path (so
            :data:`TINY_SHAKESPEARE_URL` is ``<data dir>/tinyshakespeare/input.txt``) and
            downloaded there, verified, only when missing.
        tokenizer: as for :class:`TextDataset`.
        sha256: the SHA-256 a download must have; needed for a URL not in :data:`KNOWN_SHA256`.
        data_dir: the data directory for a URL (``--data-dir``); ``None`` means
            ``$CADENCE_DATA``, else the user cache folder (see :func:`~cadence.data.dirs.resolve_data_dir`).
        filter_subset: keep only the first ``filter_subset`` characters of the file.
        padding, unknown: the reserved tokens, as for :class:`TextDataset`.
        mmap_threshold: files of at least this many bytes are streamed into a token cache and
            memory-mapped from it; ``None`` never memory-maps.
        cache_dir: where the token cache goes, ``<cache_dir>/<file name>.tokens``; ``None``
            means next to the file.

    The file is read as UTF-8 with its line endings as they are. The first
    ``int(0.9 * n)`` of its ``n`` characters are the training text, the rest the validation
    text, and the vocabulary is built from both, as in labml_nn.

    Memory-mapped, :attr:`train` and :attr:`valid` are ``None`` (the text is never held whole)
    and :attr:`train_tokens`, :attr:`valid_tokens` view the cache file, whose key is a SHA-256
    of the file's bytes, the split, the tokenizer's fingerprint and the reserved tokens: a
    changed text or tokenizer rebuilds the cache, and so does a corrupt or truncated one.
    Building it reads the file three times (checksum and length, vocabulary, tokens), a chunk
    of lines at a time, so memory stays bounded whatever the file's size; a tokenizer must
    therefore never make a token across a line break.

    Attributes:
        cache: the :class:`~cadence.data.token_cache.TokenCache` when memory-mapped, else ``None``.

    Raises:
        FileNotFoundError: the file does not exist, or could not be downloaded (the message
            says where to put it and why each download failed).
        ValueError: a URL without a known or given SHA-256, or an argument out of range.
        DataFormatError: the file is not UTF-8 text, or is empty.
    """

    def __init__(
        self,
        path_or_url: str | os.PathLike[str],
        tokenizer: TokenizerLike,
        *,
        sha256: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        filter_subset: int | None = None,
        padding: str | None = PADDING,
        unknown: str | None = UNKNOWN,
        mmap_threshold: int | None = DEFAULT_MMAP_THRESHOLD,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        for name, value, minimum in (("filter_subset", filter_subset, 1), ("mmap_threshold", mmap_threshold, 0)):
            if value is not None:
                check_number("TextFileDataset", name, value, low=minimum, integer=True)
        path = text_file_path(path_or_url, sha256=sha256, data_dir=data_dir)
        self.cache: TokenCache | None = None
        if mmap_threshold is None or path.stat().st_size < mmap_threshold:
            text = _read_text(path)[:filter_subset]
            if not text:
                raise DataFormatError(path, "empty: no text to build a vocabulary from")
            split = int(len(text) * 0.9)
            super().__init__(path, tokenizer, text[:split], text[split:], padding=padding, unknown=unknown)
        else:
            self._map(path, tokenizer, filter_subset, padding, unknown, cache_dir)

    def _map(
        self,
        path: Path,
        tokenizer: TokenizerLike,
        filter_subset: int | None,
        padding: str | None,
        unknown: str | None,
        cache_dir: str | os.PathLike[str] | None,
    ) -> None:
        """Set up from the token cache of ``path``, building the cache first if it is missing or stale."""
        self.path, tokenizer = path, as_tokenizer(tokenizer)
        self.train = self.valid = None
        self.test = ""
        digest, n_chars = _scan(path)
        end = n_chars if filter_subset is None else min(n_chars, filter_subset)
        if end == 0:
            raise DataFormatError(path, "empty: no text to build a vocabulary from")
        split = int(end * 0.9)
        settings = [digest, end, split, tokenizer.fingerprint, padding, unknown]
        key = hashlib.sha256(json.dumps(settings).encode("utf-8")).hexdigest()
        cache_path = Path(cache_dir if cache_dir is not None else path.parent) / f"{path.name}.tokens"
        cache = TokenCache.load(cache_path, key)
        if cache is None:
            chunks = (chunk for _, chunk in _file_chunks(path, split, end))
            self.vocabulary = Vocabulary.build(chunks, tokenizer, padding=padding, unknown=unknown)
            parts = ((part, self.vocabulary.encode(chunk)) for part, chunk in _file_chunks(path, split, end))
            cache = TokenCache.build(cache_path, key, self.vocabulary.itos, parts)
        else:
            self.vocabulary = Vocabulary(cache.itos, tokenizer, padding=padding, unknown=unknown)
        self.cache = cache
        self.train_tokens, self.valid_tokens = cache.train, cache.valid


def text_file_path(
    path_or_url: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The local file of ``path_or_url``: a local path as it is, or a URL's file in the data directory.

    A URL's file is ``<data dir>/<last two parts of the URL's path>`` (so
    :data:`TINY_SHAKESPEARE_URL` is ``<data dir>/tinyshakespeare/input.txt``), downloaded there
    and verified against ``sha256`` (or :data:`KNOWN_SHA256`) only when missing; a file already
    there is used as it is. This is how :class:`TextFileDataset` finds its file, for callers
    that need the file without building a vocabulary (tests and benchmarks fetching their data).

    Args:
        path_or_url: a local file, or an ``http(s)`` URL.
        sha256: the SHA-256 a download must have; needed for a URL not in :data:`KNOWN_SHA256`.
        data_dir: the data directory (``--data-dir``); ``None`` means ``$CADENCE_DATA``, else the
            user cache folder (see :func:`~cadence.data.dirs.resolve_data_dir`).

    Raises:
        FileNotFoundError: a local file does not exist, or a URL's file is missing and could not
            be downloaded (the message says where to put it and why each download failed).
        ValueError: a URL without a file name, or without a known or given SHA-256.
    """
    name = os.fspath(path_or_url)
    url = urlsplit(name)
    if url.scheme not in ("http", "https"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"text file {path} does not exist: expected a file or an http(s) URL")
        return path
    parts = [part for part in url.path.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts[-2:]):
        raise ValueError(f"URL {name} does not end with a file name: expected e.g. https://host/folder/corpus.txt")
    dest = resolve_data_dir(data_dir).joinpath(*parts[-2:])
    if dest.is_file():
        return dest
    checksum = sha256 or KNOWN_SHA256.get(name)
    if checksum is None:
        raise ValueError(f"no sha256 for {name}: downloads are verified, pass sha256= (the file's SHA-256)")
    try:
        return download_file([name], dest, checksum)
    except DownloadError as error:
        raise FileNotFoundError(
            f"{dest.name} is missing from {dest.parent}: place it there, or point the data directory "
            f"(--data-dir or $CADENCE_DATA) at a folder holding {'/'.join(parts[-2:])}; {error}"
        ) from error


def _read_text(path: Path) -> str:
    """The whole of ``path`` as UTF-8, line endings untouched."""
    try:
        with path.open(encoding="utf-8", newline="") as file:
            return file.read()
    except UnicodeDecodeError as error:
        raise DataFormatError(path, f"not UTF-8 text: {error}") from error


def _scan(path: Path) -> tuple[str, int]:
    """The SHA-256 of ``path``'s bytes and its number of characters (bytes that do not continue a UTF-8 sequence)."""
    digest = hashlib.sha256()
    n_chars = 0
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_CHARS):
            digest.update(chunk)
            n_chars += len(chunk) - int(np.count_nonzero((np.frombuffer(chunk, np.uint8) & 0xC0) == 0x80))
    return digest.hexdigest(), n_chars


def _file_chunks(path: Path, split: int, end: int) -> Iterator[tuple[int, str]]:
    """``(part, chunk)`` for the characters ``[0, split)`` (part 0) and ``[split, end)`` (part 1) of ``path``.

    The chunks are those :func:`~cadence.data.vocabulary.line_chunks` makes of the two texts.
    """
    try:
        with path.open(encoding="utf-8", newline="") as file:
            position = 0
            for part, stop in ((0, split), (1, end)):
                while position < stop:
                    chunk = file.read(min(CHUNK_CHARS, stop - position))
                    if position + len(chunk) < stop and not chunk.endswith("\n"):
                        chunk += file.readline(stop - position - len(chunk))
                    if not chunk:
                        raise DataFormatError(path, f"ends after {position} characters, expected {end}: did it change?")
                    position += len(chunk)
                    yield part, chunk
    except UnicodeDecodeError as error:
        raise DataFormatError(path, f"not UTF-8 text: {error}") from error
