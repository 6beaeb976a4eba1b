"""Text corpora: a vocabulary over training and validation text, encode/decode, compact tokens.

After labml_nn's ``TextDataset`` and ``TextFileDataset``: the vocabulary is every distinct token
of the training and validation text, sorted, after the reserved tokens (padding, unknown);
a text file is split 90/10 into training and validation text by characters.

Token ids are stored in the smallest unsigned integer dtype that holds the vocabulary
(:func:`~cadence.data.token_cache.token_dtype`). A file of at least ``mmap_threshold`` bytes
is never read whole: it is streamed a chunk of lines at a time, tokenized once into a cache
file next to it and memory-mapped from there (:class:`~cadence.data.token_cache.TokenCache`).
Both paths tokenize the same chunks of lines and give the same tokens.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from cadence.checks import check_number
from cadence.data.dirs import resolve_data_dir
from cadence.data.download import DownloadError
from cadence.data.download import download as download_file
from cadence.data.idx import DataFormatError
from cadence.data.token_cache import TokenCache, token_dtype
from cadence.data.tokenizers import Tokenizer, as_tokenizer

__all__ = [
    "DEFAULT_MMAP_THRESHOLD",
    "KNOWN_SHA256",
    "PADDING",
    "TINY_SHAKESPEARE_URL",
    "UNKNOWN",
    "TextDataset",
    "TextFileDataset",
    "text_file_path",
]

PADDING = "<pad>"
"""The default padding token, id 0."""
UNKNOWN = "<unk>"
"""The default unknown token, id 1: stands for any token the vocabulary lacks."""

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
"""Tiny Shakespeare (Karpathy's char-rnn): 1,115,394 characters, 65 distinct."""

KNOWN_SHA256: dict[str, str] = {
    TINY_SHAKESPEARE_URL: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
}
"""SHA-256 of the corpora known by URL, so that :class:`TextFileDataset` can verify their download."""

DEFAULT_MMAP_THRESHOLD = 64 * 2**20
"""Files of at least this many bytes (64 MiB) are tokenized into a cache and memory-mapped."""

_CHUNK_CHARS = 1 << 18
"""Text is tokenized in chunks of about this many characters, extended to the end of a line."""

TokenizerLike = Tokenizer | str | Callable[[str], Sequence[str]]


class TextDataset:
    """A vocabulary over ``train`` and ``valid`` text, with their tokens.

    Args:
        path: where the text came from (shown by ``repr``), or ``None``.
        tokenizer: a :class:`~cadence.data.tokenizers.Tokenizer`, ``"character"``, ``"word"``,
            or any callable ``text -> list of tokens`` (see :func:`~cadence.data.tokenizers.as_tokenizer`).
        train: the training text.
        valid: the validation text.
        test: the test text (kept, not tokenized).
        itos: the vocabulary to use, reserved tokens included, instead of building one.
        padding: the padding token (id 0), or ``None`` for none; never decoded.
        unknown: the unknown token (the next id), or ``None``: then encoding a token the
            vocabulary lacks is an error.

    Attributes:
        itos: the vocabulary, id -> token: the reserved tokens, then every distinct token of
            ``train`` and ``valid`` in sorted order.
        stoi: token -> id.
        n_tokens: the size of the vocabulary.
        padding_id, unknown_id: the ids of the reserved tokens, or ``None``.
        dtype: the smallest unsigned integer dtype holding every id.
        train_tokens, valid_tokens: the ids of ``train`` and ``valid``, 1-D tensors of :attr:`dtype`.

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
        self.tokenizer = as_tokenizer(tokenizer)
        self.train: str | None = train
        self.valid: str | None = valid
        self.test = test
        if itos is None:
            itos = self._build_vocabulary(itertools.chain(_line_chunks(train), _line_chunks(valid)), padding, unknown)
        self._set_vocabulary(itos, padding, unknown)
        self.train_tokens = self.encode(train)
        self.valid_tokens = self.encode(valid)

    def _build_vocabulary(self, chunks: Iterable[str], padding: str | None, unknown: str | None) -> list[str]:
        """The reserved tokens, then the distinct tokens of ``chunks``, sorted."""
        tokens: set[str] = set()
        for chunk in chunks:
            tokens.update(self.tokenizer(chunk))
        for role, token in (("padding", padding), ("unknown", unknown)):
            if token in tokens:
                raise ValueError(
                    f"the text holds the token {token!r}, reserved for {role}: choose another {role} token, or None"
                )
        return [token for token in (padding, unknown) if token is not None] + sorted(tokens)

    def _set_vocabulary(self, itos: Sequence[str], padding: str | None, unknown: str | None) -> None:
        """Check ``itos`` against the reserved tokens and set :attr:`itos`, :attr:`stoi` and the ids."""
        if padding is not None and padding == unknown:
            raise ValueError(f"padding and unknown are both {padding!r}: expected two different tokens")
        self.itos = list(itos)
        self.stoi = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            repeated = next(token for i, token in enumerate(self.itos) if self.stoi[token] != i)
            raise ValueError(f"itos holds the token {repeated!r} twice: expected distinct tokens")
        for role, token in (("padding", padding), ("unknown", unknown)):
            if token is not None and token not in self.stoi:
                raise ValueError(f"the {role} token {token!r} is not in itos: add it, or pass {role}=None")
        self.n_tokens = len(self.itos)
        self.padding_id = None if padding is None else self.stoi[padding]
        self.unknown_id = None if unknown is None else self.stoi[unknown]
        self.dtype = token_dtype(self.n_tokens)

    def encode(self, text: str) -> torch.Tensor:
        """The token ids of ``text``, a 1-D tensor of :attr:`dtype`; tokens outside the vocabulary get :attr:`unknown_id`.

        Raises:
            KeyError: a token is not in the vocabulary and there is no unknown token.
        """
        chunks = [self._encode_chunk(chunk) for chunk in _line_chunks(text)]
        return torch.cat(chunks) if chunks else torch.empty(0, dtype=self.dtype)

    def _encode_chunk(self, chunk: str) -> torch.Tensor:
        # numpy narrows the ids: torch's conversion spreads over threads and crawls when a core is busy.
        ids = self.tokenizer.encode(chunk, self.stoi, self.unknown_id)
        return torch.from_numpy(ids.astype(torch.empty(0, dtype=self.dtype).numpy().dtype))

    def text_to_i(self, text: str) -> torch.Tensor:
        """The token ids of ``text`` as int64, as labml_nn's ``text_to_i`` (but unknown tokens are not dropped)."""
        return self.encode(text).long()

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text of token ``ids`` (1-D), joined by the tokenizer; padding is left out.

        ``decode(encode(text)) == text`` for any text made of vocabulary tokens.

        Raises:
            ValueError: an id is outside ``0 .. n_tokens - 1``, or ``ids`` is not 1-D.
        """
        ids = torch.as_tensor(ids)
        if ids.ndim != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got shape {list(ids.shape)}")
        values = ids.long().tolist()
        bad = [i for i in values if not 0 <= i < self.n_tokens]
        if bad:
            raise ValueError(
                f"token id {bad[0]} is outside the vocabulary of {self.n_tokens} tokens (0 .. {self.n_tokens - 1})"
            )
        return self.tokenizer.join(self.itos[i] for i in values if i != self.padding_id)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, {self.tokenizer!r}, {self.n_tokens} tokens, "
            f"train {len(self.train_tokens):,}, valid {len(self.valid_tokens):,} ids)"
        )


def _line_chunks(text: str) -> Iterator[str]:
    """``text`` in pieces of at least :data:`_CHUNK_CHARS` characters, each ending at its first line break from there
    on (or at the end)."""
    start = 0
    while start < len(text):
        stop = text.find("\n", start + _CHUNK_CHARS - 1) + 1 or len(text)
        yield text[start:stop]
        start = stop


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
        self.path, self.tokenizer = path, as_tokenizer(tokenizer)
        self.train = self.valid = None
        self.test = ""
        digest, n_chars = _scan(path)
        end = n_chars if filter_subset is None else min(n_chars, filter_subset)
        if end == 0:
            raise DataFormatError(path, "empty: no text to build a vocabulary from")
        split = int(end * 0.9)
        settings = [digest, end, split, self.tokenizer.fingerprint, padding, unknown]
        key = hashlib.sha256(json.dumps(settings).encode("utf-8")).hexdigest()
        cache_path = Path(cache_dir if cache_dir is not None else path.parent) / f"{path.name}.tokens"
        cache = TokenCache.load(cache_path, key)
        if cache is None:
            chunks = (chunk for _, chunk in _file_chunks(path, split, end))
            self._set_vocabulary(self._build_vocabulary(chunks, padding, unknown), padding, unknown)
            parts = ((part, self._encode_chunk(chunk)) for part, chunk in _file_chunks(path, split, end))
            cache = TokenCache.build(cache_path, key, self.itos, parts)
        else:
            self._set_vocabulary(cache.itos, padding, unknown)
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
        while chunk := file.read(_CHUNK_CHARS):
            digest.update(chunk)
            n_chars += len(chunk) - int(np.count_nonzero((np.frombuffer(chunk, np.uint8) & 0xC0) == 0x80))
    return digest.hexdigest(), n_chars


def _file_chunks(path: Path, split: int, end: int) -> Iterator[tuple[int, str]]:
    """``(part, chunk)`` for the characters ``[0, split)`` (part 0) and ``[split, end)`` (part 1) of ``path``.

    The chunks are those :func:`_line_chunks` makes of the two texts.
    """
    try:
        with path.open(encoding="utf-8", newline="") as file:
            position = 0
            for part, stop in ((0, split), (1, end)):
                while position < stop:
                    chunk = file.read(min(_CHUNK_CHARS, stop - position))
                    if position + len(chunk) < stop and not chunk.endswith("\n"):
                        chunk += file.readline(stop - position - len(chunk))
                    if not chunk:
                        raise DataFormatError(path, f"ends after {position} characters, expected {end}: did it change?")
                    position += len(chunk)
                    yield part, chunk
    except UnicodeDecodeError as error:
        raise DataFormatError(path, f"not UTF-8 text: {error}") from error
