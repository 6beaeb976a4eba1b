"""TokenCache: compact dtypes, atomic build, every corruption detected, pages handed back."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from cadence.data.token_cache import MAGIC, TokenCache, release_pages, token_dtype

ITOS = ["<pad>", "<unk>", "a", "b", "c"]
KEY = "k" * 64


def parts(n_train: int = 1000, n_valid: int = 300, n_test: int = 200, chunk: int = 128,
          dtype: torch.dtype = torch.uint8):
    """Chunks of ids 0 .. 4 over a training, a validation and a test part, and the whole of the first two."""
    train = torch.arange(n_train) % 5
    valid = (torch.arange(n_valid) * 3) % 5
    test = (torch.arange(n_test) * 2 + 1) % 5
    chunks = [(part, c.to(dtype)) for part, ids in enumerate((train, valid, test)) for c in ids.split(chunk)]
    return chunks, train, valid


@pytest.mark.parametrize(
    ("n_tokens", "dtype"),
    [(1, torch.uint8), (256, torch.uint8), (257, torch.uint16), (2**16, torch.uint16), (2**16 + 1, torch.uint32),
     (2**32, torch.uint32), (2**32 + 1, torch.int64)],
)
def test_token_dtype_is_the_smallest_that_fits(n_tokens, dtype):
    assert token_dtype(n_tokens) == dtype
    if dtype != torch.int64:
        assert torch.tensor([n_tokens - 1]).to(dtype).long().item() == n_tokens - 1


def test_build_then_load_maps_the_same_tokens(tmp_path):
    chunks, train, valid = parts()
    test = (torch.arange(200) * 2 + 1) % 5
    built = TokenCache.build(tmp_path / "c.tokens", KEY, ITOS, chunks)
    assert [p.name for p in tmp_path.iterdir()] == ["c.tokens"]
    loaded = TokenCache.load(tmp_path / "c.tokens", KEY)
    for cache in (built, loaded):
        assert cache.itos == ITOS
        assert cache.train.dtype == torch.uint8 and torch.equal(cache.train.long(), train)
        assert torch.equal(cache.valid.long(), valid) and torch.equal(cache.test.long(), test)
    size = (tmp_path / "c.tokens").stat().st_size
    assert size > 1500 and size < 1500 + 400  # one byte per token, plus magic numbers and header


def test_wide_vocabulary_stored_in_uint16(tmp_path):
    itos = [f"w{i}" for i in range(300)]
    ids = torch.tensor([0, 299, 256, 7], dtype=torch.uint16)
    TokenCache.build(tmp_path / "c.tokens", KEY, itos, [(0, ids[:3]), (1, ids[3:])])
    cache = TokenCache.load(tmp_path / "c.tokens", KEY)
    assert cache.train.dtype == torch.uint16 and cache.train.long().tolist() == [0, 299, 256]


def test_writes_to_the_tensors_never_reach_the_file(tmp_path):
    chunks, train, _ = parts()
    cache = TokenCache.build(tmp_path / "c.tokens", KEY, ITOS, chunks)
    cache.train[:10] = 4
    assert torch.equal(TokenCache.load(tmp_path / "c.tokens", KEY).train.long(), train)


def test_no_tokens_at_all(tmp_path):
    TokenCache.build(tmp_path / "c.tokens", KEY, ITOS, [])
    cache = TokenCache.load(tmp_path / "c.tokens", KEY)
    assert cache.train.shape == cache.valid.shape == cache.test.shape == (0,) and cache.train.dtype == torch.uint8


def test_wrong_dtype_refused_and_nothing_left(tmp_path):
    chunks, _, _ = parts(dtype=torch.int64)
    with pytest.raises(TypeError, match="token ids of dtype torch.int64 for a vocabulary of 5: expected torch.uint8"):
        TokenCache.build(tmp_path / "c.tokens", KEY, ITOS, chunks)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_build_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    chunks, train, _ = parts()
    TokenCache.build(tmp_path / "c.tokens", KEY, ITOS, chunks)

    def interrupted():
        yield chunks[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TokenCache.build(tmp_path / "c.tokens", "other", ITOS, interrupted())
    assert [p.name for p in tmp_path.iterdir()] == ["c.tokens"]
    assert torch.equal(TokenCache.load(tmp_path / "c.tokens", KEY).train.long(), train)


def test_missing_or_other_key_is_none(tmp_path, caplog):
    assert TokenCache.load(tmp_path / "none.tokens", KEY) is None
    TokenCache.build(tmp_path / "c.tokens", KEY, ITOS, parts()[0])
    with caplog.at_level(logging.INFO):
        assert TokenCache.load(tmp_path / "c.tokens", "x" * 64) is None
    assert "built for another text or tokenizer" in caplog.text


def header_start(data: bytes) -> int:
    return len(data) - 16 - int.from_bytes(data[-16:-8], "little")


def rewrite_header(data: bytes, change) -> bytes:
    """``data`` with its JSON header passed through ``change``."""
    start = header_start(data)
    header = json.loads(data[start:-16])
    change(header)
    encoded = json.dumps(header).encode()
    return data[:start] + encoded + len(encoded).to_bytes(8, "little") + MAGIC


CORRUPTIONS = {
    "truncated": (lambda d: d[:-5], "does not end with the magic number"),
    "cut in the tokens": (lambda d: d[:500] + d[header_start(d) :], "bytes of tokens where the header says"),
    "flipped token": (lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:], "tokens do not match their SHA-256"),
    "bad first magic": (lambda d: b"X" + d[1:], "not starting with"),
    "empty": (lambda d: b"", "0 bytes"),
    "header length too large": (lambda d: d[:-16] + (10**9).to_bytes(8, "little") + MAGIC, "exceeds the file"),
    "header not JSON": (lambda d: d[: header_start(d)] + b"{" * (len(d) - 16 - header_start(d)) + d[-16:],
                        "unreadable header"),
    "header not UTF-8": (lambda d: d[: header_start(d)] + b"\xff" * (len(d) - 16 - header_start(d)) + d[-16:],
                         "unreadable header"),
    "header not an object": (lambda d: d[: header_start(d)] + b"[1]".ljust(len(d) - 16 - header_start(d)) + d[-16:],
                             "header lacks one of"),
    "count off by one": (lambda d: rewrite_header(d, lambda h: h.update(train=h["train"] + 1)), "where the header says"),
    "test count off by one": (lambda d: rewrite_header(d, lambda h: h.update(test=h["test"] - 1)),
                              "where the header says 1000 + 300 + 199 uint8"),
    "a version 1 file, without test tokens": (lambda d: rewrite_header(d, lambda h: h.pop("test")),
                                               "header lacks one of"),
    "negative count": (lambda d: rewrite_header(d, lambda h: h.update(train=-1, valid=h["valid"] + h["train"] + 1)),
                       "where the header says"),
    "wrong dtype": (lambda d: rewrite_header(d, lambda h: h.update(dtype="uint16")), "is not the token dtype of 5"),
    "no such dtype": (lambda d: rewrite_header(d, lambda h: h.update(dtype="float32")), "is not the token dtype"),
    "field missing": (lambda d: rewrite_header(d, lambda h: h.pop("sha256")), "header lacks one of"),
    "field of wrong type": (lambda d: rewrite_header(d, lambda h: h.update(itos="abc")), "header lacks one of"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_corrupt_files_are_never_used(tmp_path, caplog, corruption):
    change, reason = CORRUPTIONS[corruption]
    path = tmp_path / "c.tokens"
    TokenCache.build(path, KEY, ITOS, parts()[0])
    path.write_bytes(change(path.read_bytes()))
    with caplog.at_level(logging.WARNING):
        assert TokenCache.load(path, KEY) is None
    assert f"token cache {path} is corrupt" in caplog.text and reason in caplog.text


def resident_file_kb() -> int:
    """This process's resident file-backed memory (Linux), in kB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssFile:"))


def test_release_pages_hands_back_the_mapped_pages(tmp_path):
    n = 32 * 2**20
    chunks = [(0, torch.full((2**20,), i % 5, dtype=torch.uint8)) for i in range(n // 2**20)]
    cache = TokenCache.build(tmp_path / "c.tokens", KEY, ITOS, chunks)
    before = resident_file_kb()
    assert int(cache.train[:: 4096].long().sum()) > 0  # touch every page
    touched = resident_file_kb()
    assert touched - before > 24 * 1024
    release_pages(cache.valid)  # any view of the mapping releases all of it
    assert touched - resident_file_kb() > 24 * 1024
    assert torch.equal(cache.train[2**20 : 2**20 + 3], torch.ones(3, dtype=torch.uint8))  # read back from the file


def test_release_pages_leaves_other_tensors_alone():
    tokens = torch.arange(10_000) % 7
    release_pages(tokens)
    assert torch.equal(tokens, torch.arange(10_000) % 7)
