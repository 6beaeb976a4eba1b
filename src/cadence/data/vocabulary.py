"""A vocabulary: tokens and their ids, with reserved padding and unknown tokens; it encodes text and decodes ids.

After labml_nn's ``TextDataset`` (its ``itos``, ``stoi`` and ``text_to_i``): the id of a token is
its position in :attr:`Vocabulary.itos`. :meth:`Vocabulary.build` makes one from text: the
reserved tokens first (padding, id 0; unknown, the next id), then every distinct token of the
text, sorted. A data set builds its vocabulary that way (:class:`~cadence.data.text.TextDataset`);
a model's run stores it (:meth:`Vocabulary.state_dict`, plain lists and strings) so that text
can be encoded and generated ids decoded with no data at hand (``cadence generate``).

Text is tokenized a chunk of whole lines at a time (:func:`line_chunks`), so a tokenizer must
never make a token across a line break (see :mod:`cadence.data.tokenizers`); ids are stored in
the smallest unsigned integer dtype that holds the vocabulary
(:func:`~cadence.data.token_cache.token_dtype`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from cadence.data.token_cache import token_dtype
from cadence.data.tokenizers import TOKENIZERS, TokenizerLike, as_tokenizer

__all__ = ["CHUNK_CHARS", "PADDING", "UNKNOWN", "Vocabulary", "line_chunks"]

PADDING = "<pad>"
"""The default padding token, id 0."""
UNKNOWN = "<unk>"
"""The default unknown token, id 1: stands for any token the vocabulary lacks."""

CHUNK_CHARS = 1 << 18
"""Text is tokenized in chunks of about this many characters, extended to the end of a line."""


class Vocabulary:
    """Tokens and their ids: ``itos[id]`` is the token of ``id``; :meth:`encode` and :meth:`decode` go between them.

    Args:
        itos: the tokens, id -> token, the reserved ones included.
        tokenizer: how text splits into tokens and tokens join into text: a
            :class:`~cadence.data.tokenizers.Tokenizer`, a name (``"character"``, ``"word"``,
            ``"word_eos"``) or a callable (see :func:`~cadence.data.tokenizers.as_tokenizer`).
        padding: the padding token, never decoded, or ``None`` for none.
        unknown: the token that stands for any token outside the vocabulary, or ``None``: then
            encoding such a token is an error.

    Attributes:
        itos: id -> token.
        stoi: token -> id.
        tokenizer: the :class:`~cadence.data.tokenizers.Tokenizer`.
        padding, unknown: the reserved tokens, or ``None``.
        padding_id, unknown_id: their ids, or ``None``.
        reserved: the ids of the reserved tokens, which are not text: a sampler never draws them.
        dtype: the smallest unsigned integer dtype holding every id.

    Raises:
        ValueError: the reserved tokens are equal, ``itos`` repeats a token or lacks a reserved one.
    """

    def __init__(
        self, itos: Sequence[str], tokenizer: TokenizerLike, *, padding: str | None = PADDING,
        unknown: str | None = UNKNOWN,
    ) -> None:
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
        self.tokenizer = as_tokenizer(tokenizer)
        self.padding, self.unknown = padding, unknown
        self.padding_id = None if padding is None else self.stoi[padding]
        self.unknown_id = None if unknown is None else self.stoi[unknown]
        self.reserved = [i for i in (self.padding_id, self.unknown_id) if i is not None]
        self.dtype = token_dtype(len(self.itos))

    @classmethod
    def build(
        cls, texts: Iterable[str], tokenizer: TokenizerLike, *, padding: str | None = PADDING,
        unknown: str | None = UNKNOWN,
    ) -> Vocabulary:
        """The vocabulary of ``texts``: the reserved tokens, then every distinct token of the texts, sorted.

        Raises:
            ValueError: the text holds a reserved token (choose another one, or ``None``).
        """
        tokenizer = as_tokenizer(tokenizer)
        tokens: set[str] = set()
        for text in texts:
            for chunk in line_chunks(text):
                tokens.update(tokenizer(chunk))
        for role, token in (("padding", padding), ("unknown", unknown)):
            if token in tokens:
                raise ValueError(
                    f"the text holds the token {token!r}, reserved for {role}: choose another {role} token, or None"
                )
        itos = [token for token in (padding, unknown) if token is not None] + sorted(tokens)
        return cls(itos, tokenizer, padding=padding, unknown=unknown)

    def __len__(self) -> int:
        """The number of tokens, reserved ones included."""
        return len(self.itos)

    def encode(self, text: str, *, strict: bool = False) -> torch.Tensor:
        """The token ids of ``text``, a 1-D tensor of :attr:`dtype`.

        A token outside the vocabulary gets :attr:`unknown_id`; with ``strict``, or without an
        unknown token, it is an error instead (``strict`` also refuses the reserved tokens, which
        are not text: use it on text a user typed, such as a prompt).

        Raises:
            ValueError: with ``strict``, tokens outside the vocabulary or reserved, all named.
            KeyError: a token outside the vocabulary, which has no unknown token.
        """
        if strict:
            outside = sorted({token for chunk in line_chunks(text) for token in self.tokenizer(chunk)
                              if token not in self.stoi or self.stoi[token] in self.reserved})
            if outside:
                shown = text if len(text) <= 80 else text[:77] + "..."
                raise ValueError(f"the text {shown!r} has tokens outside the vocabulary of {len(self)}: "
                                 f"{', '.join(map(repr, outside))}")
        dtype = torch.empty(0, dtype=self.dtype).numpy().dtype
        # numpy narrows the ids: torch's conversion spreads over threads and crawls when a core is busy.
        chunks = [torch.from_numpy(self.tokenizer.encode(chunk, self.stoi, self.unknown_id).astype(dtype))
                  for chunk in line_chunks(text)]
        return torch.cat(chunks) if chunks else torch.empty(0, dtype=self.dtype)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text of token ``ids`` (1-D), joined by the tokenizer; padding is left out.

        ``decode(encode(text)) == text`` for any text made of vocabulary tokens (for tokenizers
        whose :meth:`~cadence.data.tokenizers.Tokenizer.join` gives the text back).

        Raises:
            ValueError: an id is outside ``0 .. len(self) - 1``, or ``ids`` is not 1-D.
        """
        ids = torch.as_tensor(ids)
        if ids.ndim != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got shape {list(ids.shape)}")
        values = ids.long().tolist()
        bad = [i for i in values if not 0 <= i < len(self)]
        if bad:
            raise ValueError(
                f"token id {bad[0]} is outside the vocabulary of {len(self)} tokens (0 .. {len(self) - 1})"
            )
        return self.tokenizer.join(self.itos[i] for i in values if i != self.padding_id)

    def state_dict(self) -> dict[str, Any]:
        """``{"itos", "tokenizer", "padding", "unknown"}``, plain lists and strings (``torch.load(weights_only=True)``
        reads them): the tokenizer by its name in :data:`~cadence.data.tokenizers.TOKENIZERS`, or ``None`` for
        another tokenizer, which :meth:`from_state_dict` must then be given."""
        name = next((name for name, kind in TOKENIZERS.items() if kind().fingerprint == self.tokenizer.fingerprint),
                    None)
        return {"itos": self.itos, "tokenizer": name, "padding": self.padding, "unknown": self.unknown}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], tokenizer: TokenizerLike | None = None) -> Vocabulary:
        """The vocabulary of a :meth:`state_dict`; ``tokenizer`` replaces the one it names (needed when it names none).

        Raises:
            KeyError: ``state`` lacks one of its keys.
            ValueError: ``state`` names no tokenizer and none is given.
        """
        missing = [key for key in ("itos", "tokenizer", "padding", "unknown") if key not in state]
        if missing:
            raise KeyError(f"vocabulary state lacks {missing}: expected the keys of Vocabulary.state_dict()")
        if tokenizer is None and state["tokenizer"] is None:
            raise ValueError("the vocabulary was saved with a tokenizer that is not built in: pass tokenizer=, "
                             "the one it was built with")
        return cls(state["itos"], state["tokenizer"] if tokenizer is None else tokenizer, padding=state["padding"],
                   unknown=state["unknown"])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} tokens, {self.tokenizer!r}, padding={self.padding!r}, "
                f"unknown={self.unknown!r})")


def line_chunks(text: str) -> Iterator[str]:
    """``text`` in pieces of at least :data:`CHUNK_CHARS` characters, each ending at its first line break from there
    on (or at the end of the text)."""
    start = 0
    while start < len(text):
        stop = text.find("\n", start + CHUNK_CHARS - 1) + 1 or len(text)
        yield text[start:stop]
        start = stop
