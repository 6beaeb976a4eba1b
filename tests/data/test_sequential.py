"""SequentialDataLoader and SequentialUnBatchedDataset: labml_nn's batches, sharding, resume, seeded offsets, real text."""

from __future__ import annotations

import shutil

import pytest
import torch

import cadence.data.sequential as sequential_module
from cadence.data import (
    ResumableDataLoader,
    SequentialDataLoader,
    SequentialUnBatchedDataset,
    TextFileDataset,
    Vocabulary,
    collate_time_major,
)


def labml_batches(data: torch.Tensor, batch_size: int, seq_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """labml_nn's SequentialDataLoader, the reference: columns by ``view(batch_size, -1).t()``, then row slices."""
    n_batch = data.shape[0] // batch_size
    data = data.narrow(0, 0, n_batch * batch_size).view(batch_size, -1).t().contiguous()
    out, idx = [], 0
    while idx < data.shape[0] - 1:
        seq_len_ = min(seq_len, data.shape[0] - 1 - idx)
        out.append((data[idx : idx + seq_len_], data[idx + 1 : idx + seq_len_ + 1]))
        idx += seq_len_
    return out


def stream(n: int = 1000) -> torch.Tensor:
    """Token ids that say their position (mod 256), stored compactly."""
    return (torch.arange(n) % 256).to(torch.uint8)


@pytest.mark.parametrize(("n", "batch_size", "seq_len"), [(1000, 4, 10), (1003, 7, 16), (1000, 10, 99), (64, 8, 100)])
def test_batches_equal_labml_nn_including_the_short_last_one(n, batch_size, seq_len):
    tokens = stream(n)
    loader = SequentialDataLoader(text=tokens, batch_size=batch_size, seq_len=seq_len)
    reference = labml_batches(tokens.long(), batch_size, seq_len)
    batches = list(loader)
    assert len(loader) == len(batches) == len(reference)
    for (x, y), (rx, ry) in zip(batches, reference):
        assert x.dtype == y.dtype == torch.int64 and x.is_contiguous() and y.is_contiguous()
        assert x.shape == y.shape == rx.shape and x.shape[1] == batch_size
        assert torch.equal(x, rx) and torch.equal(y, ry)


def test_target_is_the_input_shifted_and_columns_continue_across_batches():
    batches = list(SequentialDataLoader(text=stream(1003), batch_size=7, seq_len=16))
    assert [len(x) for x, _ in batches] == [16] * 8 + [14]
    for (x, y), (next_x, _) in zip(batches, batches[1:]):
        assert torch.equal(y[:-1], x[1:]) and torch.equal(next_x[0], y[-1])


def test_drop_last_drops_the_short_batch():
    loader = SequentialDataLoader(text=stream(1003), batch_size=7, seq_len=16, drop_last=True)
    assert len(loader) == 8 and [len(x) for x, _ in loader] == [16] * 8


def test_batches_are_copies():
    tokens = torch.arange(100)
    x, _ = next(iter(SequentialDataLoader(text=tokens, batch_size=2, seq_len=5)))
    x.zero_()
    assert torch.equal(tokens, torch.arange(100))


def test_text_is_encoded_by_the_dataset(data_dir):
    dataset = TextFileDataset(data_dir / "tinyshakespeare" / "input.txt", "character")
    vocabulary = dataset.vocabulary
    from_text = list(SequentialDataLoader(text=dataset.valid, vocabulary=vocabulary, batch_size=16, seq_len=64))
    from_ids = list(SequentialDataLoader(text=dataset.valid_tokens, batch_size=16, seq_len=64))
    reference = labml_batches(torch.tensor([vocabulary.stoi[c] for c in dataset.valid]), 16, 64)
    assert len(from_text) == len(from_ids) == len(reference) == 109
    for (a, _), (b, _), (r, _) in zip(from_text, from_ids, reference):
        assert torch.equal(a, b) and torch.equal(a, r)
    x, y = from_ids[0]
    assert vocabulary.decode(x[:, 0]) + vocabulary.decode(y[-1:, 0]) == dataset.valid[: len(x) + 1]


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("n", [1000, 1013])
def test_shards_are_equal_disjoint_and_form_the_global_batch(world_size, n):
    tokens = torch.arange(n)
    ranks = [SequentialDataLoader(text=tokens, batch_size=4, seq_len=10, world_size=world_size, rank=r)
             for r in range(world_size)]
    single = SequentialDataLoader(text=tokens, batch_size=4 * world_size, seq_len=10)
    assert len({len(loader) for loader in ranks}) == 1 and len(ranks[0]) == len(single)
    per_rank = [list(loader) for loader in ranks]
    seen = [set(torch.cat([torch.cat([x, y]).flatten() for x, y in batches]).tolist()) for batches in per_rank]
    assert all(not a & b for i, a in enumerate(seen) for b in seen[i + 1 :])
    columns = 4 * world_size
    assert set().union(*seen) == set(range(n // columns * columns))
    for b, (x, y) in enumerate(single):
        # column j of rank r is column j * world_size + r of the single process
        assert torch.equal(torch.stack([per_rank[r][b][0] for r in range(world_size)], 2).flatten(1), x)
        assert torch.equal(torch.stack([per_rank[r][b][1] for r in range(world_size)], 2).flatten(1), y)


def test_restored_mid_epoch_yields_the_remaining_batches_then_the_same_epochs():
    original = SequentialDataLoader(text=stream(1003), batch_size=7, seq_len=16)
    list(original)
    it = iter(original)
    for _ in range(4):
        next(it)
    state = original.state_dict()
    assert state == {"epoch": 1, "position": 4}
    remaining = list(it)
    restored = SequentialDataLoader(text=stream(1003), batch_size=7, seq_len=16)
    restored.load_state_dict(state)
    resumed = list(restored)
    assert len(resumed) == len(remaining) == 5
    for (xa, ya), (xb, yb) in zip(remaining, resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert restored.state_dict() == original.state_dict() == {"epoch": 2, "position": 0}
    assert len(list(restored)) == 9 and restored.epoch == 3
    restored.set_epoch(0)
    assert restored.state_dict() == {"epoch": 0, "position": 0}


def test_memory_mapped_stream_gives_the_same_batches_while_handing_pages_back(data_dir, tmp_path, monkeypatch):
    corpus = shutil.copy(data_dir / "tinyshakespeare" / "input.txt", tmp_path / "input.txt")
    in_memory = TextFileDataset(corpus, "character")
    expected = list(SequentialDataLoader(text=in_memory.train_tokens, batch_size=32, seq_len=128))
    mapped = TextFileDataset(corpus, "character", mmap_threshold=0)
    released = []
    monkeypatch.setattr(sequential_module, "_RELEASE_BYTES", 50_000)
    monkeypatch.setattr(sequential_module, "release_pages", lambda t: released.append(t) or mapped_release(t))
    batches = list(SequentialDataLoader(text=mapped.train_tokens, batch_size=32, seq_len=128))
    assert len(batches) == len(expected) == 246
    assert len(released) == 246 // -(-50_000 // (32 * 128)) and all(t is mapped.train_tokens for t in released)
    for (xa, ya), (xb, yb) in zip(batches, expected):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


mapped_release = sequential_module.release_pages


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size=0 is out of range; expected batch_size >= 1"),
        ({"seq_len": 0}, ValueError, "seq_len=0 is out of range; expected seq_len >= 1"),
        ({"world_size": 2, "rank": 5}, ValueError, r"rank=5 is out of range; expected rank in \[0, 2\)"),
        ({"batch_size": 600}, ValueError, r"1000 tokens in 600 columns \(batch_size 600 x world_size 1\) give 1 tokens "
         "per column: expected at least 2"),
        ({"batch_size": 100, "world_size": 2, "seq_len": 5, "drop_last": True}, ValueError, "give 5 tokens per column: "
         "expected at least 6"),
        ({"text": "abc"}, TypeError, "SequentialDataLoader: text is a string, so a vocabulary= is needed"),
        ({"text": torch.zeros(10, 2, dtype=torch.long)}, TypeError,
         r"1-D tensor of token ids, got torch.int64 of shape \[10, 2\]"),
        ({"text": torch.zeros(100)}, TypeError, "1-D tensor of token ids, got torch.float32"),
        ({"text": [1, 2, 3]}, TypeError, "text must be a string or a tensor of token ids, got list"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"text": stream(1000), "batch_size": 4, "seq_len": 10} | kwargs
    with pytest.raises(error, match=match):
        SequentialDataLoader(**arguments)


def test_bad_states_and_batches():
    loader = SequentialDataLoader(text=stream(1000), batch_size=4, seq_len=10)
    with pytest.raises(KeyError, match=r"lacks \['position'\]"):
        loader.load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match="position 26 is past the end of an epoch of 25 batches"):
        loader.load_state_dict({"epoch": 1, "position": 26})
    with pytest.raises(IndexError, match="batch 25 is out of range for an epoch of 25 batches"):
        loader.batch(25)


def test_unbatched_windows_with_seeded_random_offsets():
    tokens = torch.arange(1001)
    data = SequentialUnBatchedDataset(text=tokens, seq_len=10, seed=3)
    assert len(data) == 100
    offsets = data.offsets(0)
    assert offsets.min() >= 0 and offsets.max() <= 9 and len(set(offsets.tolist())) == 10
    assert offsets[-1] == 0  # the last window has no room to move: N - 99 * 10 - 10 - 1 = 0
    for k in range(len(data)):
        x, y = data[k]
        start = 10 * k + int(offsets[k])
        assert torch.equal(x, tokens[start : start + 10]) and torch.equal(y, tokens[start + 1 : start + 11])
    torch.manual_seed(99)
    again = SequentialUnBatchedDataset(text=tokens, seq_len=10, seed=3)
    assert torch.equal(again.offsets(0), offsets) and not torch.equal(again.offsets(1), offsets)
    assert not torch.equal(SequentialUnBatchedDataset(text=tokens, seq_len=10, seed=4).offsets(0), offsets)
    again.set_epoch(1)
    assert torch.equal(again[5][0][:1], tokens[50 + again.offsets(1)[5]].view(1))


def test_unbatched_without_random_offset_is_labml_nn():
    text = "to be or not to be, that is the question"
    vocabulary = Vocabulary.build([text], "character")
    data = SequentialUnBatchedDataset(text=text, vocabulary=vocabulary, seq_len=8, is_random_offset=False)
    assert len(data) == (40 - 1) // 8
    for k in range(len(data)):
        x, y = data[k]
        assert vocabulary.decode(x) == text[8 * k : 8 * k + 8] and vocabulary.decode(y) == text[8 * k + 1 : 8 * k + 9]


def test_unbatched_through_a_resumable_loader_resumes_offsets_too():
    def make() -> ResumableDataLoader:
        data = SequentialUnBatchedDataset(text=torch.arange(2000), seq_len=16, seed=1)
        return ResumableDataLoader(data, 8, shuffle=True, seed=2)

    original = make()
    list(original)
    it = iter(original)
    for _ in range(5):
        next(it)
    state = original.state_dict()
    remaining = list(it) + list(original)
    restored = make()
    restored.load_state_dict(state)
    resumed = list(restored) + list(restored)
    assert len(resumed) == len(remaining) == 16 - 5 + 16
    for (xa, ya), (xb, yb) in zip(remaining, resumed):
        assert xa.shape[1] == 16 and torch.equal(xa, xb) and torch.equal(ya, yb)
    epochs = [torch.cat([x[:, 0] for x, _ in make()]) for _ in range(1)]
    assert not torch.equal(epochs[0] % 16, torch.zeros_like(epochs[0]))  # offsets moved the windows


def test_unbatched_workers_see_the_epoch():
    data = SequentialUnBatchedDataset(text=torch.arange(2000), seq_len=16, seed=1)
    single = ResumableDataLoader(data, 8, shuffle=True)
    workers = ResumableDataLoader(data, 8, shuffle=True, num_workers=2)
    for _ in range(2):
        for (xa, _), (xb, _) in zip(single, workers, strict=True):
            assert torch.equal(xa, xb)


def test_unbatched_bad_arguments_and_states():
    with pytest.raises(ValueError, match="10 tokens hold no window of seq_len 10 plus a target token"):
        SequentialUnBatchedDataset(text=torch.arange(10), seq_len=10)
    with pytest.raises(ValueError, match="seed=-1 is out of range; expected seed >= 0"):
        SequentialUnBatchedDataset(text=torch.arange(10), seq_len=2, seed=-1)
    data = SequentialUnBatchedDataset(text=torch.arange(100), seq_len=10)
    with pytest.raises(IndexError, match="window 9 is out of range for 9 windows"):
        data[9]
    with pytest.raises(KeyError, match=r"SequentialUnBatchedDataset state \{'epoch': 2\} lacks \['seed'\]"):
        data.load_state_dict({"epoch": 2})
    data.load_state_dict({"epoch": 2, "seed": 5})
    assert data.state_dict() == {"epoch": 2, "seed": 5}


def test_windows_collated_time_major_are_the_default_batches_transposed():
    """Column b of a time-major batch is window b, as in SequentialDataLoader's batches; the target still leads the
    input by one token."""
    windows = SequentialUnBatchedDataset(text=torch.arange(500), seq_len=12, seed=1)
    default = next(iter(ResumableDataLoader(windows, 5, shuffle=True, seed=3)))
    x, y = next(iter(ResumableDataLoader(windows, 5, shuffle=True, seed=3, collate_fn=collate_time_major)))
    assert x.shape == y.shape == (12, 5) and x.dtype == torch.int64
    assert torch.equal(x, default[0].t()) and torch.equal(y, default[1].t())
    assert torch.equal(y[:-1], x[1:])
