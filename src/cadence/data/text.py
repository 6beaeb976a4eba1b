"""Text corpora: training, validation and test text, a vocabulary over the first two, and their tokens, compactly.

After labml_nn's ``TextDataset`` and ``TextFileDataset``: the vocabulary (a
:class:`~cadence.data.vocabulary.Vocabulary`) is every distinct token of the training and
validation text, sorted, after the reserved tokens (padding, unknown); a text file is cut
90/10 into training and validation text by characters, or by other fractions with test text
too, or each text has its file (WikiText's ``wiki.{train,valid,test}.tokens``).

Token ids are stored in the smallest unsigned integer dtype that holds the vocabulary
(:func:`~cadence.data.token_cache.token_dtype`). A file of at least ``mmap_threshold`` bytes
is never read whole: it is streamed a chunk of lines at a time, tokenized once into a cache
file next to it and memory-mapped from there (:class:`~cadence.data.token_cache.TokenCache`).
Both paths tokenize chunks of whole lines and give the same tokens.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
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
    "DEFAULT_SPLIT",
    "KNOWN_SHA256",
    "SPLITS",
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

DEFAULT_SPLIT = (0.9, 0.1, 0.0)
"""The fractions of one file's characters that :class:`TextFileDataset` gives to training, validation and test text."""

SPLITS = ("train", "valid", "test")
"""The names of the texts, in the order a single file is cut into them."""


class TextDataset:
    """Training, validation and test text, their vocabulary and their tokens.

    Args:
        path: where the text came from (shown by ``repr``), or ``None``.
        tokenizer: a :class:`~cadence.data.tokenizers.Tokenizer`, ``"character"``, ``"word"``, ``"word_eos"``,
            or any callable ``text -> list of tokens`` (see :func:`~cadence.data.tokenizers.as_tokenizer`).
        train: the training text.
        valid: the validation text.
        test: the test text.
        itos: the vocabulary's tokens, reserved ones included, instead of building them.
        padding: the padding token (id 0), or ``None`` for none; never decoded.
        unknown: the unknown token (the next id), or ``None``: then a token the vocabulary
            lacks is an error.

    The vocabulary is built from the training and validation text only, as labml_nn builds it:
    a token found only in the test text is encoded as the unknown token (with ``unknown=None``,
    it is a ``KeyError``).

    Attributes:
        vocabulary: the :class:`~cadence.data.vocabulary.Vocabulary`: the reserved tokens, then
            every distinct token of ``train`` and ``valid`` in sorted order; it encodes and decodes.
        train_tokens, valid_tokens, test_tokens: the ids of ``train``, ``valid`` and ``test``,
            1-D tensors of the vocabulary's compact :attr:`~cadence.data.vocabulary.Vocabulary.dtype`.

    Raises:
        ValueError: the reserved tokens are equal, the text holds a reserved token, or
            ``itos`` repeats a token or lacks a reserved one.
        KeyError: a token outside the vocabulary (in the test text, or outside a given ``itos``)
            and no unknown token.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Mapping[str, Path] | None,
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
        self.test: str | None = test
        self.vocabulary = (Vocabulary.build([train, valid], tokenizer, padding=padding, unknown=unknown) if itos is None
                           else Vocabulary(itos, tokenizer, padding=padding, unknown=unknown))
        self.train_tokens, self.valid_tokens, self.test_tokens = map(self.vocabulary.encode, (train, valid, test))

    def __repr__(self) -> str:
        path = {name: str(p) for name, p in self.path.items()} if isinstance(self.path, Mapping) else str(self.path)
        return (
            f"{type(self).__name__}({path!r}, {self.vocabulary.tokenizer!r}, {len(self.vocabulary)} tokens, "
            f"train {len(self.train_tokens):,}, valid {len(self.valid_tokens):,}, test {len(self.test_tokens):,} ids)"
        )


class TextFileDataset(TextDataset):
    """A text file cut into training, validation and test text (90/10/0 by default), or a file per split.

    Args:
        path_or_url: a local file or an ``http(s)`` URL, cut by ``split``; or a mapping of
            ``"train"``, ``"valid"`` and optionally ``"test"`` to a file or URL each (WikiText's
            ``wiki.train.tokens``, ``wiki.valid.tokens``, ``wiki.test.tokens``). A URL's file is
            kept in the data directory under the last two parts of the URL's path (so
            :data:`TINY_SHAKESPEARE_URL` is ``<data dir>/tinyshakespeare/input.txt``) and
            downloaded there, verified, only when missing.
        tokenizer: as for :class:`TextDataset`.
        split: the fractions ``(train, valid, test)`` of one file's characters, each >= 0,
            the training one > 0, summing to 1; ``None`` means :data:`DEFAULT_SPLIT`, 90/10
            and no test text. Not for a file per split.
        sha256: the SHA-256 a download must have (needed for a URL not in :data:`KNOWN_SHA256`);
            with a file per split, a mapping of split names (any of them) to SHA-256.
        data_dir: the data directory for a URL (``--data-dir``); ``None`` means
            ``$CADENCE_DATA``, else the user cache folder (see :func:`~cadence.data.dirs.resolve_data_dir`).
        filter_subset: keep only the first ``filter_subset`` characters of the file (of each
            file, with a file per split).
        padding, unknown: the reserved tokens, as for :class:`TextDataset`.
        mmap_threshold: files of at least this many bytes (all files together, with a file per
            split) are streamed into a token cache and memory-mapped from it; ``None`` never
            memory-maps.
        cache_dir: where the token cache goes, ``<cache_dir>/<file name>.tokens`` (with a file
            per split, ``<training file name>.splits.tokens``); ``None`` means next to the
            (training) file.

    Files are read as UTF-8 with their line endings as they are. A file of ``n`` characters
    cut by ``split = (a, b, c)`` gives its first ``int(a * n)`` characters to the training
    text, its last ``int(c * n)`` to the test text and those between to the validation text,
    so the default cuts as labml_nn does (the first ``int(0.9 * n)`` train). The vocabulary is
    built from the training and validation text (see :class:`TextDataset`).

    Memory-mapped, :attr:`train`, :attr:`valid` and :attr:`test` are ``None`` (the text is
    never held whole) and the tokens view the cache file, whose key is a SHA-256 of the files'
    bytes, the cuts, the tokenizer's fingerprint and the reserved tokens: a changed text or
    tokenizer rebuilds the cache, and so does a corrupt or truncated one. Building it reads the
    files three times (checksum and length, vocabulary, tokens), a chunk of lines at a time, so
    memory stays bounded whatever their size; a tokenizer must therefore never make a token
    across a line break.

    Attributes:
        path: the file, or the mapping of split names to files.
        cache: the :class:`~cadence.data.token_cache.TokenCache` when memory-mapped, else ``None``.

    Raises:
        FileNotFoundError: a file does not exist, or could not be downloaded (the message
            says where to put it and why each download failed).
        ValueError: a URL without a known or given SHA-256, an argument out of range, a mapping
            without ``"train"`` and ``"valid"`` or with another key, or ``split`` with a file per split.
        DataFormatError: a file is not UTF-8 text, or is empty.
    """

    def __init__(
        self,
        path_or_url: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
        tokenizer: TokenizerLike,
        *,
        split: Sequence[float] | None = None,
        sha256: str | Mapping[str, str] | None = None,
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
        path, paths, fractions = _sources(path_or_url, split, sha256, data_dir)
        self.cache: TokenCache | None = None
        if mmap_threshold is None or sum(file.stat().st_size for file in paths) < mmap_threshold:
            texts = [_read_text(file)[:filter_subset] for file in paths]
            for file, text in zip(paths, texts):
                if not text:
                    raise DataFormatError(file, "empty: no text to build a vocabulary from")
            if fractions is not None:
                texts = [texts[0][start:stop] for start, stop in _cuts(len(texts[0]), fractions)]
            super().__init__(path, tokenizer, *texts, padding=padding, unknown=unknown)
        else:
            self._map(path, paths, fractions, tokenizer, filter_subset, padding, unknown, cache_dir)

    def _map(
        self,
        path: Path | dict[str, Path],
        paths: list[Path],
        fractions: tuple[float, float, float] | None,
        tokenizer: TokenizerLike,
        filter_subset: int | None,
        padding: str | None,
        unknown: str | None,
        cache_dir: str | os.PathLike[str] | None,
    ) -> None:
        """Set up from the token cache of ``paths``, building the cache first if it is missing or stale."""
        self.path, tokenizer = path, as_tokenizer(tokenizer)
        self.train = self.valid = self.test = None
        sources = []  # (file, [(part, stop), ...]): part 0, 1, 2 (train, valid, test) runs up to character `stop`
        for part, file in enumerate(paths):
            digest, n_chars = _scan(file)
            end = n_chars if filter_subset is None else min(n_chars, filter_subset)
            if end == 0:
                raise DataFormatError(file, "empty: no text to build a vocabulary from")
            stops = ([(part, end)] if fractions is None
                     else [(i, stop) for i, (_, stop) in enumerate(_cuts(end, fractions))])
            sources.append((file, digest, stops))
        settings = [[[digest, stops] for _, digest, stops in sources], tokenizer.fingerprint, padding, unknown]
        key = hashlib.sha256(json.dumps(settings).encode("utf-8")).hexdigest()
        name = f"{paths[0].name}.tokens" if fractions is not None else f"{paths[0].name}.splits.tokens"
        cache_path = Path(cache_dir if cache_dir is not None else paths[0].parent) / name
        cache = TokenCache.load(cache_path, key)
        if cache is None:
            def chunks() -> Iterator[tuple[int, str]]:
                return itertools.chain.from_iterable(_file_chunks(file, stops) for file, _, stops in sources)

            # The vocabulary: training and validation text only (parts 0 and 1).
            self.vocabulary = Vocabulary.build((chunk for part, chunk in chunks() if part < 2), tokenizer,
                                               padding=padding, unknown=unknown)
            parts = ((part, self.vocabulary.encode(chunk)) for part, chunk in chunks())
            cache = TokenCache.build(cache_path, key, self.vocabulary.itos, parts)
        else:
            self.vocabulary = Vocabulary(cache.itos, tokenizer, padding=padding, unknown=unknown)
        self.cache = cache
        self.train_tokens, self.valid_tokens, self.test_tokens = cache.train, cache.valid, cache.test


def _sources(
    path_or_url: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    split: Sequence[float] | None,
    sha256: str | Mapping[str, str] | None,
    data_dir: str | os.PathLike[str] | None,
) -> tuple[Path | dict[str, Path], list[Path], tuple[float, float, float] | None]:
    """The files of a :class:`TextFileDataset`, checked and fetched: what its :attr:`~TextFileDataset.path` shows,
    the files in the order of :data:`SPLITS`, and the fractions that cut a single file (``None`` for a file per
    split)."""
    if not isinstance(path_or_url, Mapping):
        fractions = _check_split(DEFAULT_SPLIT if split is None else split)
        if isinstance(sha256, Mapping):
            raise ValueError(f"TextFileDataset: sha256={dict(sha256)!r} is a mapping for a single file: expected "
                             f"the file's SHA-256, a string")
        path = text_file_path(path_or_url, sha256=sha256, data_dir=data_dir)
        return path, [path], fractions
    names = list(path_or_url)
    if not {"train", "valid"} <= set(names) or not set(names) <= set(SPLITS):
        raise ValueError(f"TextFileDataset: a file per split for {names}; expected the keys 'train', 'valid' and "
                         f"optionally 'test'")
    if split is not None:
        raise ValueError(f"TextFileDataset: split={split!r} cuts a single file, but a file per split is given: "
                         f"leave split out")
    if sha256 is not None and not isinstance(sha256, Mapping):
        raise ValueError(f"TextFileDataset: sha256={sha256!r} for a file per split; expected a mapping of the "
                         f"split names ({', '.join(names)}) to their files' SHA-256")
    hashes = sha256 or {}
    paths = {name: text_file_path(path_or_url[name], sha256=hashes.get(name), data_dir=data_dir)
             for name in SPLITS if name in path_or_url}
    return paths, list(paths.values()), None


def _check_split(split: Sequence[float]) -> tuple[float, float, float]:
    """``split`` as three floats if they are fractions (train, valid, test), each >= 0, train > 0, summing to 1."""
    try:
        fractions = tuple(float(f) for f in split)
    except (TypeError, ValueError):
        fractions = ()
    if (len(fractions) != 3 or not all(map(math.isfinite, fractions)) or min(fractions) < 0 or fractions[0] == 0
            or abs(math.fsum(fractions) - 1) > 1e-9):
        raise ValueError(f"TextFileDataset: split={split!r}; expected the fractions (train, valid, test) of the "
                         f"file's characters, each >= 0, train > 0, summing to 1, e.g. (0.8, 0.1, 0.1)")
    return fractions


def _cuts(n: int, fractions: tuple[float, float, float]) -> list[tuple[int, int]]:
    """The ranges ``[start, stop)`` of the training, validation and test text among ``n`` characters: the first
    ``int(train * n)``, those between, the last ``int(test * n)``."""
    train, test = int(fractions[0] * n), n - int(fractions[2] * n)
    return [(0, train), (train, test), (test, n)]


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


def _file_chunks(path: Path, stops: Sequence[tuple[int, int]]) -> Iterator[tuple[int, str]]:
    """``(part, chunk)`` for consecutive character ranges of ``path`` from its start: for each ``(part, stop)`` of
    ``stops``, chunks of ``part`` up to character ``stop``.

    The chunks are of :data:`~cadence.data.vocabulary.CHUNK_CHARS` characters extended to the end of their line,
    as :func:`~cadence.data.vocabulary.line_chunks` cuts a text, but never past a ``stop``.
    """
    try:
        with path.open(encoding="utf-8", newline="") as file:
            position = 0
            for part, stop in stops:
                while position < stop:
                    chunk = file.read(min(CHUNK_CHARS, stop - position))
                    if position + len(chunk) < stop and not chunk.endswith("\n"):
                        chunk += file.readline(stop - position - len(chunk))
                    if not chunk:
                        raise DataFormatError(
                            path, f"ends after {position} characters, expected {stops[-1][1]}: did it change?"
                        )
                    position += len(chunk)
                    yield part, chunk
    except UnicodeDecodeError as error:
        raise DataFormatError(path, f"not UTF-8 text: {error}") from error
