"""TextDataset and TextFileDataset: the vocabulary, encode/decode, Tiny Shakespeare, the memory-mapped path, downloads."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch

import cadence.data.text as text_module
from cadence.data import DataFormatError, SequentialDataLoader, TextDataset, TextFileDataset, TokenCache
from cadence.data.text import TINY_SHAKESPEARE_URL, text_file_path
from cadence.data.tokenizers import CallableTokenizer

from tests.data.test_tokenizers import word_language_model

from .conftest import base_url, serving

N_CHARACTERS = 1_115_394


@pytest.fixture(scope="module")
def shakespeare_text(data_dir) -> str:
    return (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


@pytest.fixture
def corpus(tmp_path, data_dir) -> Path:
    """A copy of Tiny Shakespeare in a folder of its own (its token cache goes next to it)."""
    return Path(shutil.copy(data_dir / "tinyshakespeare" / "input.txt", tmp_path / "input.txt"))


def test_tiny_shakespeare_has_65_characters_and_1115394_tokens(data_dir, shakespeare_text):
    dataset = TextFileDataset(data_dir / "tinyshakespeare" / "input.txt", "character")
    vocabulary = dataset.vocabulary
    assert vocabulary.itos[:2] == ["<pad>", "<unk>"] and (vocabulary.padding_id, vocabulary.unknown_id) == (0, 1)
    assert vocabulary.itos[2:] == sorted(set(shakespeare_text)) and len(vocabulary.itos[2:]) == 65
    assert len(vocabulary) == 67 and vocabulary.dtype == torch.uint8
    assert len(dataset.train_tokens) + len(dataset.valid_tokens) == N_CHARACTERS
    split = int(N_CHARACTERS * 0.9)
    assert dataset.train == shakespeare_text[:split] and dataset.valid == shakespeare_text[split:]
    assert dataset.test == "" and dataset.test_tokens.shape == (0,)  # the default: 90/10, no test text
    assert dataset.train_tokens.dtype == torch.uint8
    assert vocabulary.decode(dataset.train_tokens) == dataset.train
    reference = torch.tensor([vocabulary.stoi[c] for c in shakespeare_text[split:]])
    assert torch.equal(dataset.valid_tokens.long(), reference)

    bare = TextFileDataset(data_dir / "tinyshakespeare" / "input.txt", "character", padding=None, unknown=None)
    assert len(bare.vocabulary) == 65 and bare.vocabulary.itos == sorted(set(shakespeare_text))
    assert bare.vocabulary.padding_id is None and bare.vocabulary.unknown_id is None


def test_word_vocabulary_needs_uint16_and_round_trips(data_dir, shakespeare_text):
    dataset = TextFileDataset(data_dir / "tinyshakespeare" / "input.txt", "word", filter_subset=200_000)
    assert len(dataset.vocabulary) > 256 and dataset.vocabulary.dtype == torch.uint16
    assert dataset.train + dataset.valid == shakespeare_text[:200_000]
    assert dataset.vocabulary.decode(dataset.train_tokens) == dataset.train
    assert dataset.vocabulary.decode(dataset.valid_tokens) == dataset.valid


def test_the_vocabulary_is_built_from_training_and_validation_text_only():
    dataset = TextDataset("mem", "word", "to be or not to be", "that is", "the question")
    assert dataset.vocabulary.itos == ["<pad>", "<unk>", " ", "be", "is", "not", "or", "that", "to"]
    assert dataset.vocabulary.decode(dataset.valid_tokens) == "that is"
    assert dataset.vocabulary.decode(dataset.test_tokens) == "<unk> <unk>"  # test-only tokens: the unknown token
    assert "TextDataset('mem', WordTokenizer(" in repr(dataset)
    assert "9 tokens, train 11, valid 3, test 3 ids" in repr(dataset)
    with pytest.raises(KeyError, match="token 'the' is not in the vocabulary, which has no unknown token"):
        TextDataset("mem", "word", "to be or not to be", "that is", "the question", unknown=None)


def test_a_given_vocabulary_and_its_checks_reach_the_data_set():
    itos = ["<pad>", "<unk>", "a", "b"]
    dataset = TextDataset("mem", CallableTokenizer(str.split, " "), "a b a", "b c", itos=itos)
    assert dataset.vocabulary.itos == itos and dataset.valid_tokens.tolist() == [3, 1]
    with pytest.raises(ValueError, match="the text holds the token '<unk>', reserved for unknown"):
        TextDataset(None, str.split, "a b", "x <unk>")


def test_filter_subset_and_line_endings_kept(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"line one\r\nline two\r\n" * 50)
    dataset = TextFileDataset(path, "character", filter_subset=25)
    assert dataset.train + dataset.valid == "line one\r\nline two\r\nline "
    assert len(dataset.train) == 22 and "\r" in dataset.vocabulary.itos


def batches(dataset: TextFileDataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    splits = (dataset.train_tokens, dataset.valid_tokens)
    loaders = [SequentialDataLoader(text=tokens, batch_size=16, seq_len=100) for tokens in splits]
    return [batch for loader in loaders for batch in loader]


def assert_same(mapped: TextFileDataset, in_memory: TextFileDataset) -> None:
    assert mapped.cache is not None and in_memory.cache is None
    assert mapped.vocabulary.itos == in_memory.vocabulary.itos and mapped.vocabulary.dtype == in_memory.vocabulary.dtype
    assert torch.equal(mapped.train_tokens, in_memory.train_tokens)
    assert torch.equal(mapped.valid_tokens, in_memory.valid_tokens)
    assert torch.equal(mapped.test_tokens, in_memory.test_tokens)
    for (xa, ya), (xb, yb) in zip(batches(mapped), batches(in_memory), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_memory_mapped_and_in_memory_give_the_same_batches(corpus):
    mapped = TextFileDataset(corpus, "character", mmap_threshold=0)
    assert mapped.train is None and mapped.valid is None
    assert mapped.cache.path == corpus.parent / "input.txt.tokens"
    assert (corpus.parent / "input.txt.tokens").stat().st_size < N_CHARACTERS + 2000  # one byte per character
    assert_same(mapped, TextFileDataset(corpus, "character"))
    assert_same(TextFileDataset(corpus, "character", mmap_threshold=0), TextFileDataset(corpus, "character"))


def test_memory_mapped_word_tokens_across_many_chunks(corpus, monkeypatch):
    monkeypatch.setattr(text_module, "CHUNK_CHARS", 997)
    kwargs = {"filter_subset": 100_003, "padding": None}
    assert_same(TextFileDataset(corpus, "word", mmap_threshold=0, **kwargs), TextFileDataset(corpus, "word", **kwargs))


def test_mmap_threshold_is_the_file_size(corpus):
    size = corpus.stat().st_size
    assert TextFileDataset(corpus, "character", mmap_threshold=size).cache is not None
    assert TextFileDataset(corpus, "character", mmap_threshold=size + 1).cache is None
    assert TextFileDataset(corpus, "character", mmap_threshold=None).cache is None


def test_split_cuts_one_file_into_training_validation_and_test_text(corpus, shakespeare_text):
    """The first int(0.8 n) characters train, the last int(0.1 n) test, those between validate; the memory-mapped
    path cuts alike (a cache built for another split beside it is not taken for this one)."""
    n = len(shakespeare_text)
    dataset = TextFileDataset(corpus, "character", split=(0.8, 0.1, 0.1))
    assert dataset.train == shakespeare_text[: int(0.8 * n)]
    assert dataset.valid == shakespeare_text[int(0.8 * n) : n - int(0.1 * n)]
    assert dataset.test == shakespeare_text[n - int(0.1 * n) :]
    assert dataset.vocabulary.decode(dataset.test_tokens) == dataset.test
    TextFileDataset(corpus, "character", mmap_threshold=0)  # a cache of the default split
    assert_same(TextFileDataset(corpus, "character", split=(0.8, 0.1, 0.1), mmap_threshold=0), dataset)
    assert_same(TextFileDataset(corpus, "character", split=[0.5, 0.25, 0.25], mmap_threshold=0, filter_subset=9999),
                TextFileDataset(corpus, "character", split=[0.5, 0.25, 0.25], filter_subset=9999))


@pytest.mark.parametrize("mmap_threshold", [None, 0])
def test_a_token_only_in_the_test_text_is_the_unknown_token(tmp_path, mmap_threshold):
    path = tmp_path / "corpus.txt"
    path.write_text("abc\n" * 9 + "abZ\n")  # 40 characters: "Z" only in the last 10%
    dataset = TextFileDataset(path, "character", split=(0.8, 0.1, 0.1), mmap_threshold=mmap_threshold)
    assert "Z" not in dataset.vocabulary.stoi
    assert dataset.vocabulary.decode(dataset.test_tokens) == "ab<unk>\n"
    with pytest.raises(KeyError, match="token 'Z' is not in the vocabulary, which has no unknown token"):
        TextFileDataset(path, "character", split=(0.8, 0.1, 0.1), unknown=None, mmap_threshold=mmap_threshold)


def split_files(folder: Path, text: str, names: tuple[str, ...] = ("train", "valid", "test")) -> dict[str, Path]:
    """``text`` cut at line breaks into a file per split (80/10/10 of its lines), named as WikiText's."""
    lines = text.splitlines(keepends=True)
    n = len(lines)
    cuts = {"train": lines[: int(0.8 * n)], "valid": lines[int(0.8 * n) : int(0.9 * n)], "test": lines[int(0.9 * n) :]}
    paths = {}
    for name in names:
        paths[name] = folder / f"wiki.{name}.tokens"
        paths[name].write_text("".join(cuts[name]), encoding="utf-8")
    return paths


def test_a_file_per_split_gives_pytorch_examples_word_tokens(tmp_path, shakespeare_text):
    """WikiText's layout read with word_eos: each file's tokens are those of pytorch/examples' word_language_model
    (test-only words are the unknown token), memory-mapped or not."""
    paths = split_files(tmp_path, shakespeare_text)
    dataset = TextFileDataset(paths, "word_eos")
    assert dataset.path == paths and dataset.train + dataset.valid + dataset.test == shakespeare_text
    vocabulary = dataset.vocabulary
    expected = {}
    for name in ("train", "valid", "test"):
        with paths[name].open("r", encoding="utf8") as f:
            expected[name] = word_language_model(f)[0]
    assert set(vocabulary.itos) == {"<pad>", "<unk>", *expected["train"], *expected["valid"]}
    assert [vocabulary.itos[i] for i in dataset.train_tokens.tolist()] == expected["train"]
    assert [vocabulary.itos[i] for i in dataset.valid_tokens.tolist()] == expected["valid"]
    test_words = [word if word in vocabulary.stoi else "<unk>" for word in expected["test"]]
    assert [vocabulary.itos[i] for i in dataset.test_tokens.tolist()] == test_words and "<unk>" in test_words
    mapped = TextFileDataset(paths, "word_eos", mmap_threshold=0)
    assert mapped.cache.path == tmp_path / "wiki.train.tokens.splits.tokens"
    assert_same(mapped, dataset)


def test_a_file_per_split_without_test_and_each_file_cut_by_filter_subset(tmp_path, shakespeare_text):
    paths = split_files(tmp_path, shakespeare_text, ("train", "valid"))
    dataset = TextFileDataset(paths, "character", filter_subset=1000)
    assert dataset.train == paths["train"].read_text()[:1000] and dataset.valid == paths["valid"].read_text()[:1000]
    assert dataset.test == "" and dataset.test_tokens.shape == (0,)
    assert_same(TextFileDataset(paths, "character", filter_subset=1000, mmap_threshold=0), dataset)
    total = sum(path.stat().st_size for path in paths.values())  # the threshold weighs all the files together
    assert TextFileDataset(paths, "character", mmap_threshold=total).cache is not None
    assert TextFileDataset(paths, "character", mmap_threshold=total + 1).cache is None


@pytest.mark.parametrize("mmap_threshold", [None, 0])
def test_an_empty_file_of_a_split_is_named(tmp_path, shakespeare_text, mmap_threshold):
    paths = split_files(tmp_path, shakespeare_text[:5000])
    paths["valid"].write_text("")
    with pytest.raises(DataFormatError, match="wiki.valid.tokens: empty"):
        TextFileDataset(paths, "character", mmap_threshold=mmap_threshold)


def test_cache_is_reused_and_rebuilt_when_text_or_tokenizer_change(corpus, monkeypatch, caplog):
    TextFileDataset(corpus, "character", mmap_threshold=0)
    built = []
    original = TokenCache.build.__func__
    monkeypatch.setattr(TokenCache, "build", classmethod(lambda cls, *a: built.append(a[0]) or original(cls, *a)))

    TextFileDataset(corpus, "character", mmap_threshold=0)
    assert built == []

    with caplog.at_level(logging.INFO):
        word = TextFileDataset(corpus, "word", mmap_threshold=0)
    assert len(built) == 1 and "built for another text or tokenizer" in caplog.text
    text = corpus.read_text()
    assert word.vocabulary.dtype == torch.uint16
    assert word.vocabulary.decode(word.valid_tokens) == text[int(len(text) * 0.9) :]

    TextFileDataset(corpus, "character", mmap_threshold=0, unknown=None)
    TextFileDataset(corpus, "character", mmap_threshold=0, filter_subset=5000)
    assert len(built) == 3

    corpus.write_text(corpus.read_text().replace("Citizen", "Citoyen"))
    changed = TextFileDataset(corpus, "character", mmap_threshold=0, filter_subset=5000)
    assert len(built) == 4 and "Citoyen" in changed.vocabulary.decode(changed.train_tokens[:100])
    assert sorted(p.name for p in corpus.parent.iterdir()) == ["input.txt", "input.txt.tokens"]


@pytest.mark.parametrize("damage", ["flip a token", "truncate"])
def test_corrupt_cache_is_rebuilt_not_used(corpus, caplog, damage):
    reference = TextFileDataset(corpus, "character")
    cache = corpus.parent / "input.txt.tokens"
    TextFileDataset(corpus, "character", mmap_threshold=0)
    data = bytearray(cache.read_bytes())
    if damage == "truncate":
        del data[len(data) // 2 :]
    else:
        stoi = reference.vocabulary.stoi
        data[1000] = stoi["z"] if data[1000] != stoi["z"] else stoi["y"]
    cache.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        rebuilt = TextFileDataset(corpus, "character", mmap_threshold=0)
    assert "is corrupt" in caplog.text
    assert torch.equal(rebuilt.train_tokens, reference.train_tokens)
    assert TokenCache.load(cache, _key_of(corpus)) is not None


def _key_of(corpus: Path) -> str:
    """The key the cache of ``corpus`` was last built under (read back from its header)."""
    data = corpus.with_name(corpus.name + ".tokens").read_bytes()
    length = int.from_bytes(data[-16:-8], "little")
    return json.loads(data[len(data) - 16 - length : -16])["key"]


def test_cache_dir_is_made_and_used(corpus, tmp_path):
    dataset = TextFileDataset(corpus, "character", mmap_threshold=0, cache_dir=tmp_path / "cache" / "text")
    assert dataset.cache.path == tmp_path / "cache" / "text" / "input.txt.tokens"
    assert dataset.cache.path.is_file() and not (corpus.parent / "input.txt.tokens").exists()


@pytest.mark.parametrize("mmap_threshold", [None, 0])
def test_bad_files(tmp_path, mmap_threshold):
    with pytest.raises(FileNotFoundError, match="text file .*missing.txt does not exist"):
        TextFileDataset(tmp_path / "missing.txt", "character", mmap_threshold=mmap_threshold)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty.txt: empty"):
        TextFileDataset(tmp_path / "empty.txt", "character", mmap_threshold=mmap_threshold)
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1") * 10)
    with pytest.raises(DataFormatError, match="latin1.txt: not UTF-8 text"):
        TextFileDataset(tmp_path / "latin1.txt", "character", mmap_threshold=mmap_threshold)
    assert not list(tmp_path.glob("*.tokens")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"filter_subset": 0}, "filter_subset=0 is out of range; expected filter_subset >= 1"),
        ({"mmap_threshold": -1}, "mmap_threshold=-1 is out of range; expected mmap_threshold >= 0"),
        ({"mmap_threshold": 1.5}, "mmap_threshold=1.5 is a float; expected an integer"),
    ],
)
def test_bad_arguments(corpus, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=f"TextFileDataset: {match}"):
        TextFileDataset(corpus, "character", **kwargs)


@pytest.mark.parametrize("split", [(0.9, 0.1), (0.9, 0.2, 0.0), (0.0, 0.5, 0.5), (1.1, -0.1, 0.0),
                                   (float("nan"), 0.5, 0.5), "0.8,0.1,0.1", 0.9])
def test_a_bad_split_is_refused_naming_it(corpus, split):
    with pytest.raises(ValueError, match=re.escape(f"TextFileDataset: split={split!r}; expected the fractions "
                                                   "(train, valid, test)")):
        TextFileDataset(corpus, "character", split=split)


@pytest.mark.parametrize(
    ("files", "kwargs", "match"),
    [
        ({"train": "t"}, {}, r"a file per split for \['train'\]; expected the keys 'train', 'valid' and optionally"),
        ({"train": "t", "valid": "v", "dev": "d"}, {}, r"a file per split for \['train', 'valid', 'dev'\]"),
        ({"train": "t", "valid": "v"}, {"split": (0.8, 0.2, 0.0)}, "cuts a single file, but a file per split"),
        ({"train": "t", "valid": "v"}, {"sha256": "0" * 64}, "expected a mapping of the split names"),
        (None, {"sha256": {"train": "0" * 64}}, "is a mapping for a single file"),
    ],
)
def test_bad_files_per_split_are_refused(corpus, files, kwargs, match):
    with pytest.raises(ValueError, match=f"TextFileDataset: .*{match}"):
        TextFileDataset(corpus if files is None else files, "character", **kwargs)


BODY = "Tiny corpus.\nTwo lines of it.\n".encode() * 20
SHA = hashlib.sha256(BODY).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/texts/tiny/corpus.txt"
        self.send_response(200 if ok else 404)
        body = BODY if ok else b"not found"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server_url():
    with serving(Handler) as httpd:
        yield base_url(httpd)


def test_url_is_downloaded_into_the_data_directory(server_url, tmp_path):
    url = f"{server_url}/texts/tiny/corpus.txt"
    dataset = TextFileDataset(url, "character", sha256=SHA, data_dir=tmp_path)
    assert dataset.path == tmp_path.resolve() / "tiny" / "corpus.txt"
    assert dataset.path.read_bytes() == BODY
    assert dataset.train + dataset.valid == BODY.decode()
    # Present now: used without a download, so neither the server nor the checksum is needed.
    again = TextFileDataset("http://127.0.0.1:9/texts/tiny/corpus.txt", "character", data_dir=tmp_path)
    assert torch.equal(again.train_tokens, dataset.train_tokens)


def test_urls_of_a_file_per_split_are_downloaded_and_verified_each(server_url, tmp_path):
    url = f"{server_url}/texts/tiny/corpus.txt"
    with pytest.raises(FileNotFoundError, match=f"SHA-256 mismatch: expected {'1' * 64}"):
        TextFileDataset({"train": url, "valid": url}, "character", sha256={"train": "1" * 64}, data_dir=tmp_path)
    dataset = TextFileDataset({"train": url, "valid": url}, "character", sha256={"train": SHA}, data_dir=tmp_path)
    assert dataset.train == dataset.valid == BODY.decode()


def test_text_file_path_fetches_a_urls_file_once_and_passes_local_paths_through(server_url, tmp_path, monkeypatch):
    url = f"{server_url}/texts/tiny/corpus.txt"
    path = text_file_path(url, sha256=SHA, data_dir=tmp_path / "data")
    assert path == (tmp_path / "data" / "tiny" / "corpus.txt").resolve() and path.read_bytes() == BODY
    monkeypatch.setattr(text_module, "download_file", lambda *args: pytest.fail("no download expected"))
    assert text_file_path(url, data_dir=tmp_path / "data") == path  # present: no download, no checksum needed
    assert text_file_path(path) == path
    with pytest.raises(FileNotFoundError, match=f"text file {tmp_path / 'absent.txt'} does not exist"):
        text_file_path(tmp_path / "absent.txt")


def test_url_checksum_mismatch_leaves_nothing(server_url, tmp_path):
    url = f"{server_url}/texts/tiny/corpus.txt"
    with pytest.raises(FileNotFoundError) as info:
        TextFileDataset(url, "character", sha256="0" * 64, data_dir=tmp_path)
    message = str(info.value)
    assert f"corpus.txt is missing from {tmp_path.resolve() / 'tiny'}: place it there" in message
    assert url in message and f"SHA-256 mismatch: expected {'0' * 64}, got {SHA}" in message
    assert list((tmp_path / "tiny").iterdir()) == []


def test_url_offline_says_where_to_put_the_file(refused_base, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"place it there, or point the data directory .* holding tiny/corpus.txt"):
        TextFileDataset(f"{refused_base}/tiny/corpus.txt", "character", sha256=SHA, data_dir=tmp_path)


def test_url_needs_a_checksum_and_a_file_name(server_url, tmp_path):
    with pytest.raises(ValueError, match=r"no sha256 for http://.*/texts/tiny/corpus.txt: downloads are verified"):
        TextFileDataset(f"{server_url}/texts/tiny/corpus.txt", "character", data_dir=tmp_path)
    for url in (f"{server_url}/", f"{server_url}/texts/.."):
        with pytest.raises(ValueError, match="does not end with a file name"):
            TextFileDataset(url, "character", sha256=SHA, data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_tiny_shakespeare_url_resolves_to_the_data_directory(data_dir, monkeypatch):
    monkeypatch.setattr(text_module, "download_file", lambda *args: pytest.fail("no download expected"))
    dataset = TextFileDataset(TINY_SHAKESPEARE_URL, "character", data_dir=data_dir)
    assert dataset.path == data_dir / "tinyshakespeare" / "input.txt"
    assert text_module.KNOWN_SHA256[TINY_SHAKESPEARE_URL] == hashlib.sha256(dataset.path.read_bytes()).hexdigest()
