"""Vocabulary: built from text, encode/decode with reserved tokens, strict encoding, and its state without the data."""

from __future__ import annotations

import io

import pytest
import torch

from cadence.data import CallableTokenizer, TextFileDataset, Vocabulary
from cadence.data.tokenizers import WordTokenizer


def test_built_from_text_the_reserved_tokens_then_every_distinct_token_sorted():
    vocabulary = Vocabulary.build(["to be or not to be", "that is"], "word")
    assert vocabulary.itos == ["<pad>", "<unk>", " ", "be", "is", "not", "or", "that", "to"]
    assert (vocabulary.padding_id, vocabulary.unknown_id, vocabulary.reserved) == (0, 1, [0, 1])
    assert len(vocabulary) == 9 and vocabulary.dtype == torch.uint8
    assert vocabulary.stoi == {token: i for i, token in enumerate(vocabulary.itos)}


def test_encode_decode_unknown_and_padding():
    vocabulary = Vocabulary.build(["to be or not to be", "that is the question"], "word")
    ids = vocabulary.encode("to be, the question")
    assert ids.dtype == torch.uint8
    assert vocabulary.decode(ids) == "to be<unk> the question"
    assert (ids == vocabulary.unknown_id).sum() == 1
    padded = torch.cat([ids, torch.full((3,), vocabulary.padding_id, dtype=ids.dtype)])
    assert vocabulary.decode(padded) == vocabulary.decode(ids)
    assert vocabulary.decode(vocabulary.encode("not that")) == "not that"
    assert vocabulary.decode([vocabulary.stoi["be"], vocabulary.stoi[" "], vocabulary.stoi["or"]]) == "be or"
    assert vocabulary.encode("").tolist() == []


def test_given_tokens_and_a_callable_tokenizer():
    vocabulary = Vocabulary(["<pad>", "<unk>", "a", "b"], CallableTokenizer(str.split, " "))
    assert vocabulary.encode("b a c").tolist() == [3, 2, 1]
    assert vocabulary.decode(vocabulary.encode("a  b")) == "a b"
    assert repr(vocabulary).startswith("Vocabulary(4 tokens, CallableTokenizer(")


@pytest.mark.parametrize(
    ("texts", "kwargs", "match"),
    [
        (["a <pad> b"], {}, "the text holds the token '<pad>', reserved for padding: choose another padding"),
        (["b", "x <unk>"], {}, "the text holds the token '<unk>', reserved for unknown"),
        (["a"], {"padding": "<x>", "unknown": "<x>"}, "padding and unknown are both '<x>'"),
    ],
)
def test_bad_text_or_reserved_tokens_are_refused(texts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Vocabulary.build(texts, str.split, **kwargs)


@pytest.mark.parametrize(
    ("itos", "match"),
    [
        (["<pad>", "<unk>", "a", "a"], "itos holds the token 'a' twice"),
        (["<unk>", "a"], r"the padding token '<pad>' is not in itos: add it, or pass padding=None"),
    ],
)
def test_bad_tokens_are_refused(itos, match):
    with pytest.raises(ValueError, match=match):
        Vocabulary(itos, str.split)


def test_unknown_tokens_without_unknown_are_errors_and_bad_ids_refused():
    vocabulary = Vocabulary.build(["abc", "cab"], "character", unknown=None)
    assert vocabulary.itos == ["<pad>", "a", "b", "c"] and vocabulary.reserved == [0]
    with pytest.raises(KeyError, match="token 'z' is not in the vocabulary"):
        vocabulary.encode("abz")
    with pytest.raises(ValueError, match=r"token id 4 is outside the vocabulary of 4 tokens \(0 .. 3\)"):
        vocabulary.decode([1, 4])
    with pytest.raises(ValueError, match=r"decode expects a 1-D sequence of ids, got shape \[1, 2\]"):
        vocabulary.decode(torch.ones(1, 2, dtype=torch.long))


@pytest.mark.parametrize("unknown", ["<unk>", None])
def test_strict_encoding_names_every_token_outside_the_vocabulary_or_reserved(unknown):
    vocabulary = Vocabulary.build(["ab", "ba"], "character", unknown=unknown)
    assert vocabulary.encode("abba", strict=True).tolist() == vocabulary.encode("abba").tolist()
    with pytest.raises(ValueError, match=r"the text 'a<z' has tokens outside the vocabulary of \d: '<', 'z'$"):
        vocabulary.encode("a<z", strict=True)
    words = Vocabulary.build(["a b"], str.split)
    with pytest.raises(ValueError, match=r"outside the vocabulary of 4: '<pad>', '<unk>'$"):
        words.encode("a <unk> <pad> b", strict=True)


def test_the_state_restores_the_vocabulary_without_the_data(data_dir):
    dataset = TextFileDataset(data_dir / "tinyshakespeare" / "input.txt", "character")
    state = dataset.vocabulary.state_dict()
    assert state["tokenizer"] == "character" and state["itos"] == dataset.vocabulary.itos
    buffer = io.BytesIO()  # the state is plain data: torch.load(weights_only=True) reads it
    torch.save(state, buffer)
    buffer.seek(0)
    restored = Vocabulary.from_state_dict(torch.load(buffer, weights_only=True))
    assert restored.state_dict() == state and restored.reserved == dataset.vocabulary.reserved
    text = dataset.valid[:500]
    assert torch.equal(restored.encode(text), dataset.vocabulary.encode(text))
    assert restored.decode(dataset.valid_tokens[:500]) == text


def test_a_tokenizer_that_is_not_built_in_must_be_given_back():
    custom = Vocabulary.build(["a b"], str.split, padding=None)
    assert custom.state_dict()["tokenizer"] is None
    with pytest.raises(ValueError, match="a tokenizer that is not built in: pass tokenizer="):
        Vocabulary.from_state_dict(custom.state_dict())
    restored = Vocabulary.from_state_dict(custom.state_dict(), tokenizer=str.split)
    assert restored.encode("b a").tolist() == custom.encode("b a").tolist()
    assert Vocabulary.build(["a"], WordTokenizer(r"\w")).state_dict()["tokenizer"] is None  # not the default pattern
    with pytest.raises(KeyError, match=r"vocabulary state lacks \['tokenizer', 'padding', 'unknown'\]"):
        Vocabulary.from_state_dict({"itos": ["a"]})
