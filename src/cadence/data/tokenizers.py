"""Tokenizers: split text into string tokens, and join tokens back into the text.

A :class:`Tokenizer` is a callable ``text -> list of tokens`` with an inverse :meth:`~Tokenizer.join`,
so that ``tokenizer.join(tokenizer(text)) == text``: :class:`CharacterTokenizer` (one token per
character), :class:`WordTokenizer` (words, punctuation marks and the whitespace between them),
or any callable wrapped in a :class:`CallableTokenizer`. :class:`WordEosTokenizer` (the
whitespace-separated words of each line and an end-of-line token, as pytorch/examples'
word_language_model reads WikiText) joins its tokens back up to whitespace only.
:func:`as_tokenizer` turns a name or a callable into one.

Corpora too large for memory are tokenized a chunk of whole lines at a time (see
:class:`~cadence.data.text.TextFileDataset`), so a tokenizer must give the same tokens for a
text as for its lines one after the other: no token may span a line break. Both built-in
tokenizers keep ``"\\n"`` a token of its own.
"""

from __future__ import annotations

import hashlib
import marshal
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["CallableTokenizer", "CharacterTokenizer", "Tokenizer", "TokenizerLike", "WordEosTokenizer", "WordTokenizer",
           "as_tokenizer"]


class Tokenizer(ABC):
    """Splits text into string tokens; :meth:`join` puts them back together."""

    @abstractmethod
    def __call__(self, text: str) -> list[str]:
        """The tokens of ``text``, in order."""

    def join(self, tokens: Iterable[str]) -> str:
        """The text of ``tokens``: their concatenation, the inverse of :meth:`__call__`."""
        return "".join(tokens)

    @property
    def fingerprint(self) -> str:
        """A string that changes whenever the tokens this tokenizer gives may change (keys the token cache)."""
        return repr(self)

    def encode(self, text: str, stoi: Mapping[str, int], unknown_id: int | None) -> np.ndarray:
        """The ids (int64) of the tokens of ``text`` under the vocabulary ``stoi``.

        A token missing from ``stoi`` gets ``unknown_id``.

        Raises:
            KeyError: a token is missing from ``stoi`` and ``unknown_id`` is ``None``.
        """
        tokens = self(text)
        if unknown_id is not None:
            return np.array([stoi.get(token, unknown_id) for token in tokens], dtype=np.int64)
        try:
            return np.array([stoi[token] for token in tokens], dtype=np.int64)
        except KeyError as error:
            raise _unknown_token(error.args[0]) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _unknown_token(token: str) -> KeyError:
    return KeyError(f"token {token!r} is not in the vocabulary, which has no unknown token to stand for it")


class CharacterTokenizer(Tokenizer):
    """One token per character (Unicode code point): ``"To be" -> ["T", "o", " ", "b", "e"]``.

    :meth:`encode` is vectorized: the code points of the text (its UTF-32 encoding) index a table
    that maps each code point to its id, instead of one dictionary look-up per character.
    """

    def __call__(self, text: str) -> list[str]:
        """The characters of ``text``."""
        return list(text)

    def encode(self, text: str, stoi: Mapping[str, int], unknown_id: int | None) -> np.ndarray:
        """The ids (int64) of the characters of ``text``; the same as :meth:`Tokenizer.encode`, vectorized."""
        chars = {ord(token): i for token, i in stoi.items() if len(token) == 1}
        table = np.full(max(chars, default=0) + 2, -1, dtype=np.int64)  # the last entry: any code point above
        table[list(chars)] = list(chars.values())
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = table[np.minimum(points, len(table) - 1)]
        unknown = ids < 0
        if unknown.any():
            if unknown_id is None:
                raise _unknown_token(chr(points[unknown.argmax()]))
            ids[unknown] = unknown_id
        return ids


class WordTokenizer(Tokenizer):
    r"""Words, single punctuation marks and whitespace as tokens: ``"Be, or" -> ["Be", ",", " ", "or"]``.

    The default pattern ``\w+|[^\w\s]|[^\S\n]+|\n`` matches every character of any text, so
    joining the tokens gives the text back exactly; a run of spaces or tabs is one token, each
    line break another.

    Args:
        pattern: a regular expression whose matches are the tokens; it should match every
            character (else :meth:`join` loses the unmatched ones) and never across a line break.
    """

    DEFAULT_PATTERN = r"\w+|[^\w\s]|[^\S\n]+|\n"

    def __init__(self, pattern: str = DEFAULT_PATTERN) -> None:
        self.pattern = pattern
        self._regex = re.compile(pattern)

    def __call__(self, text: str) -> list[str]:
        """The matches of :attr:`pattern` in ``text``, in order."""
        return self._regex.findall(text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pattern!r})"


class WordEosTokenizer(Tokenizer):
    r"""The words of each line, then an end-of-line token: ``"to be\nor" -> ["to", "be", "<eos>", "or", "<eos>"]``.

    The tokens of pytorch/examples' word_language_model (``data.py``:
    ``for line in f: words = line.split() + ['<eos>']``), with which WikiText-2 and -103 are
    usually read: a line is what iterating over a text file gives (it ends at ``\n``, ``\r\n`` or
    a lone ``\r``; a last line without an ending counts too), and its words are ``str.split()``'s,
    split on any run of whitespace. :meth:`join` gives the text back up to whitespace: the words
    of a line separated by one space, each line ended by ``\n``.

    Args:
        eos: the token that ends each line.
    """

    _LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

    def __init__(self, eos: str = "<eos>") -> None:
        self.eos = eos

    def __call__(self, text: str) -> list[str]:
        """For each line of ``text``, ``line.split()`` and then :attr:`eos`."""
        return [token for line in self._LINES.findall(text) for token in (*line.split(), self.eos)]

    def join(self, tokens: Iterable[str]) -> str:
        """The words of each line separated by one space, each :attr:`eos` a line break."""
        lines, words = [], []
        for token in tokens:
            if token == self.eos:
                lines.append(" ".join(words) + "\n")
                words = []
            else:
                words.append(token)
        return "".join(lines) + " ".join(words)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.eos!r})"


class CallableTokenizer(Tokenizer):
    """Any function ``text -> sequence of tokens`` as a :class:`Tokenizer`; tokens are joined with ``separator``.

    Its :attr:`fingerprint`, which keys the token cache, is the function's qualified name and a
    hash of its bytecode, so editing the function rebuilds the cache; a callable object without
    bytecode is identified by its ``repr``. (Values a closure captures are not part of it.)

    Args:
        function: the tokenizer, e.g. ``str.split``.
        separator: put between tokens by :meth:`join` (``" "`` for ``str.split``, which then
            round-trips up to runs of whitespace).
    """

    def __init__(self, function: Callable[[str], Sequence[str]], separator: str = "") -> None:
        if not callable(function):
            raise TypeError(f"tokenizer must be callable, got {type(function).__name__}")
        self.function = function
        self.separator = separator

    def __call__(self, text: str) -> list[str]:
        """``list(function(text))``."""
        return list(self.function(text))

    def join(self, tokens: Iterable[str]) -> str:
        """The tokens separated by :attr:`separator`."""
        return self.separator.join(tokens)

    @property
    def fingerprint(self) -> str:
        """``module.qualname:<bytecode hash>`` of a function, else the ``repr`` of the callable; and the separator."""
        code = getattr(self.function, "__code__", None)
        if code is None:
            name = repr(self.function)
        else:
            bytecode = hashlib.sha256(marshal.dumps(code)).hexdigest()
            name = f"{self.function.__module__}.{self.function.__qualname__}:{bytecode}"
        return f"{type(self).__name__}({name}, separator={self.separator!r})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.function!r}, separator={self.separator!r})"


TOKENIZERS: dict[str, type[Tokenizer]] = {"character": CharacterTokenizer, "word": WordTokenizer,
                                          "word_eos": WordEosTokenizer}
"""The built-in tokenizers by name."""


TokenizerLike = Tokenizer | str | Callable[[str], Sequence[str]]
"""What :func:`as_tokenizer` takes: a tokenizer, a name in :data:`TOKENIZERS`, or a callable ``text -> tokens``."""


def as_tokenizer(tokenizer: TokenizerLike) -> Tokenizer:
    """A :class:`Tokenizer` from a tokenizer (returned as it is), a name in :data:`TOKENIZERS`, or a callable.

    Raises:
        ValueError: an unknown name.
        TypeError: neither a tokenizer, a name nor a callable.
    """
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, str):
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}: expected one of {sorted(TOKENIZERS)} or a callable")
        return TOKENIZERS[tokenizer]()
    return CallableTokenizer(tokenizer)
