"""ResumableSampler and ResumableDataLoader: DistributedSampler's sharding, seeded orders, exact resume, workers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler, TensorDataset

from cadence.data import InMemoryLoader, ResumableDataLoader, ResumableSampler
from cadence.data.epochs import shard


def dataset(n: int = 50) -> TensorDataset:
    """Examples whose second field is their index, so every batch says which examples it holds."""
    return TensorDataset(torch.arange(n * 2, dtype=torch.float32).reshape(n, 2), torch.arange(n))


def indices(batches) -> list[int]:
    return [i for _, y in batches for i in y.tolist()]


@pytest.mark.parametrize("n", [1, 5, 10, 11, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_equal_distributed_samplers(n, world_size, drop_last):
    order = torch.arange(n)
    for rank in range(world_size):
        ours = shard(order, world_size, rank, drop_last).tolist()
        torch_sampler = DistributedSampler(range(n), world_size, rank, shuffle=False, drop_last=drop_last)
        assert ours == list(torch_sampler)


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("n", [50, 49, 7])
def test_shards_are_equal_disjoint_and_cover_the_epoch(world_size, n):
    samplers = [ResumableSampler(range(n), seed=3, world_size=world_size, rank=r) for r in range(world_size)]
    shards = [s.order(2) for s in samplers]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == -(-n // world_size)
    everything = torch.cat(shards).tolist()
    assert set(everything) == set(range(n))
    assert len(everything) - n == (-n) % world_size  # only the wrapped padding repeats
    truncated = [ResumableSampler(range(n), seed=3, world_size=world_size, rank=r, drop_last=True).order(2)
                 for r in range(world_size)]
    flat = torch.cat(truncated).tolist()
    assert len(flat) == len(set(flat)) == n - n % world_size


def test_order_is_the_in_memory_loaders_and_a_function_of_seed_and_epoch():
    sampler = ResumableSampler(range(50), seed=7)
    loader = InMemoryLoader(torch.zeros(50), torch.arange(50), 10, shuffle=True, seed=7)
    for epoch in range(3):
        assert torch.equal(sampler.order(epoch), loader.order(epoch))
    assert not torch.equal(sampler.order(0), sampler.order(1))
    torch.manual_seed(1)
    first = sampler.order(4)
    torch.manual_seed(2)
    assert torch.equal(first, ResumableSampler(range(50), seed=7).order(4))
    assert ResumableSampler(range(5), shuffle=False).order(9).tolist() == [0, 1, 2, 3, 4]


def test_sampler_yields_from_its_start():
    sampler = ResumableSampler(range(20), seed=1, world_size=3, rank=2)
    sampler.set_epoch(4, start=3)
    assert list(sampler) == sampler.order(4)[3:].tolist() and len(sampler) == 4
    with pytest.raises(ValueError, match="start 8 is past the end of an epoch of 7 indices"):
        sampler.set_epoch(0, start=8)


def test_loader_epochs_cover_the_data():
    loader = ResumableDataLoader(dataset(), 8, shuffle=True, seed=2)
    assert len(loader) == 7
    epochs = [indices(loader) for _ in range(3)]
    assert all(sorted(e) == list(range(50)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert loader.state_dict() == {"epoch": 3, "position": 0, "seed": 2}
    assert epochs[1] == ResumableSampler(range(50), seed=2).order(1).tolist()


@pytest.mark.parametrize("drop_last", [False, True])
def test_restored_mid_epoch_yields_the_remaining_batches_then_the_same_epochs(drop_last):
    original = ResumableDataLoader(dataset(), 8, shuffle=True, seed=5, drop_last=drop_last)
    list(original)
    stream = iter(original)
    for _ in range(3):
        next(stream)
    state = original.state_dict()
    assert state == {"epoch": 1, "position": 3, "seed": 5}
    remaining = list(stream)
    following = [list(original) for _ in range(2)]

    restored = ResumableDataLoader(dataset(), 8, shuffle=True, seed=0, drop_last=drop_last)
    restored.load_state_dict(state)
    resumed = list(restored)
    assert len(resumed) == len(remaining) == len(original) - 3
    for (xa, ya), (xb, yb) in zip(remaining, resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert [indices(restored) for _ in range(2)] == [indices(e) for e in following]
    assert restored.state_dict() == original.state_dict() == {"epoch": 4, "position": 0, "seed": 5}


def test_workers_give_the_same_batches_and_prefetching_does_not_move_the_position():
    single = ResumableDataLoader(dataset(), 4, shuffle=True, seed=1)
    workers = ResumableDataLoader(dataset(), 4, shuffle=True, seed=1, num_workers=2, prefetch_factor=4)
    taken = [y for _, (_, y) in zip(range(3), workers)]
    assert workers.state_dict()["position"] == 3
    rest = indices(workers)
    assert [i for y in taken for i in y.tolist()] + rest == indices(single)


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_loaders_are_equal_in_length_disjoint_and_cover(world_size):
    loaders = [ResumableDataLoader(dataset(49), 5, shuffle=True, seed=4, world_size=world_size, rank=r)
               for r in range(world_size)]
    assert len({len(loader) for loader in loaders}) == 1
    epochs = [indices(loader) for loader in loaders]
    assert set().union(*map(set, epochs)) == set(range(49))
    assert sum(map(len, epochs)) - 49 == (-49) % world_size


def test_stopped_pass_is_continued_and_set_epoch_restarts():
    loader = ResumableDataLoader(dataset(), 8, shuffle=True)
    full = indices(ResumableDataLoader(dataset(), 8, shuffle=True))
    first = indices(y for _, y in zip(range(2), loader))
    assert first + indices(loader) == full
    loader.set_epoch(0)
    assert indices(loader) == full


def test_pass_stopped_after_its_last_batch_moves_to_next_epoch():
    loader = ResumableDataLoader(dataset(), 8, shuffle=True)
    consumed = [y for _, (_, y) in zip(range(len(loader)), loader)]
    assert len(consumed) == 7 and loader.state_dict() == {"epoch": 0, "position": 7, "seed": 0}
    assert indices(loader) == ResumableSampler(range(50)).order(1).tolist()
    assert loader.epoch == 2


def test_set_epoch_of_the_dataset_is_called_before_each_pass():
    class Recording(TensorDataset):
        epochs: list[int] = []

        def set_epoch(self, epoch: int) -> None:
            self.epochs.append(epoch)

    data = Recording(torch.arange(10))
    loader = ResumableDataLoader(data, 3)
    list(loader)
    list(loader)
    loader.load_state_dict({"epoch": 7, "position": 1, "seed": 0})
    list(loader)
    assert data.epochs == [0, 1, 7]
    with pytest.raises(ValueError, match="persistent_workers=True with Recording, which has set_epoch"):
        ResumableDataLoader(data, 3, num_workers=1, persistent_workers=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"world_size": 0}, ValueError, "world_size=0 is out of range; expected world_size >= 1"),
        ({"world_size": 2, "rank": 2}, ValueError, r"rank=2 is out of range; expected rank in \[0, 2\)"),
        ({"rank": -1}, ValueError, r"rank=-1 is out of range; expected rank in \[0, 1\)"),
        ({"seed": -3}, ValueError, "seed=-3 is out of range; expected seed >= 0"),
        ({"batch_size": 0}, ValueError, "batch_size=0 is out of range; expected batch_size >= 1"),
        ({"batch_size": 26, "drop_last": True, "world_size": 2, "rank": 1}, ValueError,
         "drop_last=True with 25 examples per rank and batch_size 26 leaves no batch"),
        ({"world_size": 60, "rank": 0, "drop_last": True}, ValueError,
         "50 examples shared by world_size 60 leave rank 0 no example with drop_last=True"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"batch_size": 8} | kwargs
    with pytest.raises(error, match=match):
        ResumableDataLoader(dataset(), arguments.pop("batch_size"), **arguments)


def test_bad_states():
    loader = ResumableDataLoader(dataset(), 8)
    with pytest.raises(KeyError, match=r"ResumableDataLoader state \{'epoch': 1, 'position': 0\} lacks \['seed'\]"):
        loader.load_state_dict({"epoch": 1, "position": 0})
    with pytest.raises(ValueError, match="loader state position 8 is past the end of an epoch of 7 batches"):
        loader.load_state_dict({"epoch": 1, "position": 8, "seed": 0})
    with pytest.raises(ValueError, match="state: epoch=-1 is out of range; expected epoch >= 0"):
        loader.load_state_dict({"epoch": -1, "position": 0, "seed": 0})
    with pytest.raises(TypeError, match="state: seed=1.5 is a float; expected an integer"):
        loader.load_state_dict({"epoch": 0, "position": 0, "seed": 1.5})
    assert loader.state_dict() == {"epoch": 0, "position": 0, "seed": 0}


@pytest.mark.parametrize("n, world_size, batch_size", [(201, 2, 50), (203, 4, 16), (7, 3, 2), (5, 4, 1), (200, 2, 64)])
def test_leaving_out_each_batchs_padding_counts_every_example_exactly_once(n, world_size, batch_size):
    """What data parallel validation relies on: every rank has as many batches, and without the rows ``padding``
    names, the ranks' batches hold each example exactly once, in both cadence loaders."""
    for make in (lambda rank: InMemoryLoader(torch.arange(n)[:, None], torch.arange(n), batch_size,
                                             world_size=world_size, rank=rank),
                 lambda rank: ResumableDataLoader(list(range(n)), batch_size, world_size=world_size, rank=rank)):
        seen, lengths = [], set()
        for rank in range(world_size):
            loader = make(rank)
            lengths.add(len(loader))
            for b, batch in enumerate(loader):
                rows = batch[1] if isinstance(batch, (list, tuple)) else batch
                seen += rows[:len(rows) - loader.padding(b)].tolist()
        assert len(lengths) == 1 and sorted(seen) == list(range(n))
