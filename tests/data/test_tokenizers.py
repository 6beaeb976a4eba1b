"""Tokenizers: round trips, no token across a line break, the vectorized character path against the look-up."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cadence.data.tokenizers import (
    CallableTokenizer,
    CharacterTokenizer,
    Tokenizer,
    WordEosTokenizer,
    WordTokenizer,
    as_tokenizer,
)
from cadence.data.vocabulary import Vocabulary

SAMPLE = "First Citizen:\r\nBefore we proceed any further, hear me speak.\n\n\tAll:  Speak, speak! — naïve café 42\n"


def lookup(text: str, tokenizer: Tokenizer, stoi: dict[str, int], unknown_id: int | None) -> np.ndarray:
    """The reference: one dictionary look-up per token."""
    return np.array([stoi[t] if t in stoi else unknown_id for t in tokenizer(text)], dtype=np.int64)


def test_character_tokens_and_round_trip():
    tokenizer = CharacterTokenizer()
    assert tokenizer("To be") == ["T", "o", " ", "b", "e"]
    assert tokenizer.join(tokenizer(SAMPLE)) == SAMPLE


def test_word_tokens_and_round_trip():
    tokenizer = WordTokenizer()
    tokens = ["Be", ",", " ", "or", "  ", "not", "\t", "to", " ", "be", "!", "\r", "\n"]
    assert tokenizer("Be, or  not\tto be!\r\n") == tokens
    assert tokenizer.join(tokenizer(SAMPLE)) == SAMPLE


def by_lines(tokenizer: Tokenizer, text: str) -> list[str]:
    """The tokens of each piece of ``text`` that ends just after a line break, one piece after the other."""
    return [token for piece in re.split(r"(?<=\n)", text) for token in tokenizer(piece)]


@given(st.text())
def test_word_tokenizer_round_trips_any_text_and_never_spans_a_line_break(text):
    tokenizer = WordTokenizer()
    tokens = tokenizer(text)
    assert "".join(tokens) == text
    assert by_lines(tokenizer, text) == tokens


@pytest.mark.parametrize("tokenizer", [CharacterTokenizer(), WordTokenizer(), WordEosTokenizer()], ids=repr)
def test_real_text_tokenized_line_by_line_gives_the_same_tokens(data_dir, tokenizer):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text()[:50_000]
    assert by_lines(tokenizer, text) == tokenizer(text)


@pytest.mark.parametrize("tokenizer", [CharacterTokenizer(), WordTokenizer()], ids=repr)
def test_encode_equals_one_lookup_per_token(data_dir, tokenizer):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text()[:100_000]
    vocabulary = sorted(set(tokenizer(text[:20_000])))
    stoi = {token: i + 2 for i, token in enumerate(vocabulary)} | {"<pad>": 0, "<unk>": 1}
    ids = tokenizer.encode(text, stoi, 1)
    expected = lookup(text, tokenizer, stoi, 1)
    assert ids.dtype == np.int64 and np.array_equal(ids, expected)
    assert (ids == 1).any() and (ids > 1).any()


def test_vectorized_character_encode_outside_the_basic_plane_and_without_characters():
    tokenizer = CharacterTokenizer()
    stoi = {"<unk>": 0, "a": 1, "é": 2, "😀": 3}
    text = "aé😀b\U0001f600"
    assert tokenizer.encode(text, stoi, 0).tolist() == lookup(text, tokenizer, stoi, 0).tolist() == [1, 2, 3, 0, 3]
    assert tokenizer.encode("ab", {"<unk>": 5}, 5).tolist() == [5, 5]
    assert tokenizer.encode("", stoi, 0).tolist() == []


@pytest.mark.parametrize("tokenizer", [CharacterTokenizer(), WordTokenizer()], ids=repr)
def test_unknown_token_without_unknown_id_is_an_error(tokenizer):
    with pytest.raises(KeyError, match="token 'b' is not in the vocabulary, which has no unknown token"):
        tokenizer.encode("a b", {"a": 0, " ": 1}, None)


def test_callable_tokenizer_joins_with_its_separator():
    tokenizer = as_tokenizer(str.split)
    assert isinstance(tokenizer, CallableTokenizer)
    assert tokenizer("to  be\nor") == ["to", "be", "or"]
    assert CallableTokenizer(str.split, " ").join(["to", "be"]) == "to be"


def first(text: str) -> list[str]:
    return text.split()


def second(text: str) -> list[str]:
    return text.split(" ")


def test_fingerprints_tell_tokenizers_apart_and_are_stable():
    prints = [
        CharacterTokenizer().fingerprint,
        WordTokenizer().fingerprint,
        WordTokenizer(r"\w+|\W").fingerprint,
        WordEosTokenizer().fingerprint,
        WordEosTokenizer("</s>").fingerprint,
        CallableTokenizer(first).fingerprint,
        CallableTokenizer(second).fingerprint,
        CallableTokenizer(first, " ").fingerprint,
        CallableTokenizer(str.split).fingerprint,
    ]
    assert len(set(prints)) == len(prints)
    assert CallableTokenizer(first).fingerprint == CallableTokenizer(first).fingerprint
    assert WordTokenizer().fingerprint == WordTokenizer().fingerprint


def test_fingerprint_follows_the_function_code():
    def tokenize(text: str) -> list[str]:
        return list(text)

    before = CallableTokenizer(tokenize).fingerprint
    tokenize.__code__ = second.__code__
    assert CallableTokenizer(tokenize).fingerprint != before


def test_as_tokenizer():
    word = WordTokenizer()
    assert as_tokenizer(word) is word
    assert isinstance(as_tokenizer("character"), CharacterTokenizer)
    assert isinstance(as_tokenizer("word"), WordTokenizer)
    assert isinstance(as_tokenizer("word_eos"), WordEosTokenizer)
    with pytest.raises(ValueError, match=r"unknown tokenizer 'bpe': expected one of \['character', 'word', 'word_eos'"):
        as_tokenizer("bpe")
    with pytest.raises(TypeError, match="tokenizer must be callable, got int"):
        as_tokenizer(3)


def word_language_model(lines: io.TextIOBase) -> tuple[list[str], list[str]]:
    """pytorch/examples' word_language_model/data.py, the reference: ``Corpus.tokenize`` of a file opened with
    ``open(path, 'r', encoding="utf8")``; its tokens and its ``Dictionary.idx2word``."""
    idx2word: list[str] = []
    word2idx: dict[str, int] = {}
    tokens = []
    for line in lines:
        words = line.split() + ["<eos>"]
        for word in words:
            if word not in word2idx:
                idx2word.append(word)
                word2idx[word] = len(idx2word) - 1
        tokens += words
    return tokens, idx2word


def test_word_eos_gives_the_tokens_and_words_of_pytorch_examples_on_real_text(data_dir):
    path = data_dir / "tinyshakespeare" / "input.txt"
    with path.open("r", encoding="utf8") as f:
        expected, idx2word = word_language_model(f)
    text = path.read_text(encoding="utf-8")
    assert WordEosTokenizer()(text) == expected
    vocabulary = Vocabulary.build([text], "word_eos", padding=None, unknown=None)
    assert vocabulary.itos == sorted(idx2word)
    assert [vocabulary.itos[i] for i in vocabulary.encode(text).tolist()] == expected


@given(st.text(st.characters(blacklist_categories=["Cs"])))
@example("\r\rblank lines\rended by a lone \\r\r\n\n")
def test_word_eos_is_pytorch_examples_on_any_text_and_never_spans_a_line_break(text):
    """Any line endings (\\n, \\r\\n, a lone \\r), blank lines, whitespace of every kind, no final line break."""
    as_opened = io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="utf8")  # what open(path, "r") gives
    tokenizer = WordEosTokenizer()
    assert tokenizer(text) == word_language_model(as_opened)[0]
    assert by_lines(tokenizer, text) == tokenizer(text)


def test_word_eos_joins_lines_of_words():
    tokenizer = WordEosTokenizer()
    assert tokenizer(" to  be\r\n\nor\rnot") == ["to", "be", "<eos>", "<eos>", "or", "<eos>", "not", "<eos>"]
    assert tokenizer.join(tokenizer(" to  be\r\n\nor\rnot")) == "to be\n\nor\nnot\n"
    assert tokenizer.join(["a", "b"]) == "a b" and tokenizer("") == []
