"""InMemoryLoader: coverage per epoch, seeded order, drop_last, its length in samples, transforms on real digits,
resume, sharding (against torch's DistributedSampler), seeded augmentation, bad arguments."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.utils.data import DistributedSampler

from cadence.data import MNIST, Compose, InMemoryLoader, RandomCrop, RandomHorizontalFlip


def make(n: int = 50, batch_size: int = 7, **kwargs) -> InMemoryLoader:
    """A loader whose targets are the example indices, so every batch says which examples it holds."""
    inputs = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    return InMemoryLoader(inputs, torch.arange(n), batch_size, **kwargs)


def epoch_indices(loader: InMemoryLoader) -> list[int]:
    return torch.cat([y for _, y in loader]).tolist()


@pytest.mark.parametrize("shuffle", [False, True])
def test_each_epoch_covers_the_data_exactly_once(shuffle):
    loader = make(shuffle=shuffle)
    assert len(loader) == 8
    for _ in range(3):
        batches = list(loader)
        assert [len(y) for _, y in batches] == [7] * 7 + [1]
        assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(50))
        for x, y in batches:
            assert torch.equal(x, loader.inputs[y])


def test_no_shuffle_keeps_order():
    assert epoch_indices(make()) == list(range(50))


def test_drop_last():
    loader = make(drop_last=True, shuffle=True)
    assert len(loader) == 7
    indices = epoch_indices(loader)
    assert len(indices) == 49 and len(set(indices)) == 49


def test_exact_multiple_has_no_short_batch():
    loader = make(n=21, batch_size=7, drop_last=False)
    assert len(loader) == 3 and [len(y) for _, y in loader] == [7, 7, 7]


def test_same_seed_same_order_and_epochs_differ():
    a, b = make(shuffle=True, seed=5), make(shuffle=True, seed=5)
    first_a, first_b = epoch_indices(a), epoch_indices(b)
    assert first_a == first_b
    assert first_a != list(range(50))
    second = epoch_indices(a)
    assert second != first_a
    assert epoch_indices(make(shuffle=True, seed=6)) != first_a


def test_epoch_order_is_a_function_of_seed_and_epoch():
    loader = make(shuffle=True, seed=1)
    for _ in range(3):
        list(loader)
    assert loader.epoch == 3
    fresh = make(shuffle=True, seed=1)
    fresh.set_epoch(3)
    assert epoch_indices(fresh) == epoch_indices(loader)
    assert torch.equal(make(shuffle=True, seed=1).order(4), loader.order(4))


def test_order_ignores_global_random_state():
    torch.manual_seed(123)
    a = make(shuffle=True).order(0)
    torch.manual_seed(456)
    assert torch.equal(a, make(shuffle=True).order(0))


def test_real_digits_normalized_in_whole_batches(data_dir):
    mnist = MNIST(data_dir, train=False, download=False)
    loader = InMemoryLoader(mnist.images, torch.arange(len(mnist)), 256, shuffle=True, transform=MNIST.normalize)
    assert len(loader) == math.ceil(len(mnist) / 256)
    for x, idx in loader:
        assert x.dtype == torch.float32 and x.shape == (len(idx), 1, 28, 28)
        direct = ((mnist.images[idx].float() / 255 - MNIST.MEAN) / MNIST.STD).unsqueeze(1)
        torch.testing.assert_close(x, direct)


@pytest.mark.parametrize("drop_last", [False, True], ids=["short last batch", "drop_last"])
def test_num_samples_is_the_length_in_samples_on_real_digits(data_dir, drop_last):
    mnist = MNIST(data_dir, train=True, download=False)
    loader = InMemoryLoader(mnist.images, mnist.labels, 256, drop_last=drop_last)
    assert loader.num_samples == sum(len(y) for _, y in loader)
    assert loader.num_samples == (len(mnist) // 256 * 256 if drop_last else len(mnist))
    assert make(50, 7).num_samples == 50 and make(50, 7, drop_last=True).num_samples == 49


def test_real_labels_stay_with_their_images(data_dir):
    mnist = MNIST(data_dir, train=False, download=False)
    loader = InMemoryLoader(mnist.images, mnist.labels, 500, shuffle=True, seed=2)
    indices = InMemoryLoader(torch.arange(len(mnist)), mnist.labels, 500, shuffle=True, seed=2)
    for (x, y), (idx, _) in zip(loader, indices):
        assert x.dtype == torch.uint8 and x.shape == (len(idx), 28, 28) and y.dtype == torch.int64
        assert torch.equal(x, mnist.images[idx]) and torch.equal(y, mnist.labels[idx])


def test_batches_are_copies_not_views():
    loader = make()
    x, _ = next(iter(loader))
    x.zero_()
    assert loader.inputs[1, 0] == 3


def test_restored_mid_epoch_yields_exactly_the_remaining_batches():
    original = make(shuffle=True, seed=9)
    list(original)
    stream = iter(original)
    for _ in range(3):
        next(stream)
    state = original.state_dict()
    assert state == {"epoch": 1, "position": 3, "seed": 9}
    remaining = list(stream)

    restored = make(shuffle=True, seed=9)
    restored.load_state_dict(state)
    resumed = list(restored)
    assert len(resumed) == len(remaining) == 5
    for (xa, ya), (xb, yb) in zip(remaining, resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert original.state_dict() == restored.state_dict() == {"epoch": 2, "position": 0, "seed": 9}


def test_stopped_pass_is_continued_and_set_epoch_restarts():
    loader = make(shuffle=True)
    full = epoch_indices(make(shuffle=True))
    first = [y for _, (_, y) in zip(range(2), loader)]
    rest = epoch_indices(loader)
    assert torch.cat(first).tolist() + rest == full
    assert loader.epoch == 1
    loader.set_epoch(0)
    assert epoch_indices(loader) == full


def test_pass_stopped_after_its_last_batch_moves_to_next_epoch():
    loader = make(shuffle=True)
    consumed = [y for _, (_, y) in zip(range(len(loader)), loader)]
    assert len(consumed) == 8 and loader.state_dict() == {"epoch": 0, "position": 8, "seed": 0}
    reference = make(shuffle=True)
    reference.set_epoch(1)
    assert epoch_indices(loader) == epoch_indices(reference)
    assert loader.epoch == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size=0 is out of range; expected batch_size >= 1"),
        ({"batch_size": 2.5}, TypeError, "batch_size=2.5 is a float; expected an integer"),
        ({"batch_size": True}, TypeError, "batch_size=True is a bool; expected an integer"),
        ({"seed": -1}, ValueError, "seed=-1 is out of range; expected seed >= 0"),
        ({"targets": torch.arange(49)}, ValueError, "same length, got 50 inputs and 49 targets"),
        ({"targets": torch.arange(50, device="meta")}, ValueError, "one device, got inputs on cpu and targets on meta"),
        ({"inputs": torch.zeros(0, 3), "targets": torch.zeros(0)}, ValueError, r"inputs are empty \(shape \[0, 3\]\)"),
        ({"inputs": [1, 2, 3]}, TypeError, "inputs must be a tensor .* got list"),
        ({"targets": torch.tensor(3)}, TypeError, "targets must be a tensor .* got a 0-d tensor"),
        ({"transform": "normalize"}, TypeError, "transform must be callable or None, got str"),
        ({"augment": 3}, TypeError, "augment must be callable or None, got int"),
        ({"batch_size": 51, "drop_last": True}, ValueError, "drop_last=True with 50 examples and batch_size 51"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"inputs": torch.zeros(50, 3), "targets": torch.arange(50), "batch_size": 7} | kwargs
    with pytest.raises(error, match=match):
        InMemoryLoader(arguments.pop("inputs"), arguments.pop("targets"), arguments.pop("batch_size"), **arguments)


def test_bad_states_and_epochs():
    loader = make()
    with pytest.raises(KeyError, match="lacks \\['position', 'seed'\\]"):
        loader.load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match="position 9 is past the end of an epoch of 8 batches"):
        loader.load_state_dict({"epoch": 1, "position": 9, "seed": 0})
    with pytest.raises(ValueError, match="state: seed=-3 is out of range; expected seed >= 0"):
        loader.load_state_dict({"epoch": 1, "position": 2, "seed": -3})
    with pytest.raises(TypeError, match="state: epoch=1.5 is a float; expected an integer"):
        loader.load_state_dict({"epoch": 1.5, "position": 2, "seed": 0})
    assert loader.state_dict() == {"epoch": 0, "position": 0, "seed": 0}
    with pytest.raises(ValueError, match="epoch=-2 is out of range; expected epoch >= 0"):
        loader.set_epoch(-2)


def test_loaded_seed_replaces_the_constructed_one():
    saved = make(shuffle=True, seed=4)
    restored = make(shuffle=True, seed=0)
    restored.load_state_dict(saved.state_dict())
    assert restored.seed == 4 and epoch_indices(restored) == epoch_indices(saved)


# Sharding: world_size ranks split each epoch as torch.utils.data.DistributedSampler does.

SHARDINGS = [(n, world_size, drop_last)
             for n in (50, 49, 10, 7, 2) for world_size in (2, 3) for drop_last in (False, True)
             if not (drop_last and n < world_size)]  # that leaves no example per rank: see test_bad_sharding


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
@pytest.mark.parametrize(("n", "world_size", "drop_last"), SHARDINGS,
                         ids=[f"n{n}-ws{w}{'-drop_last' if d else ''}" for n, w, d in SHARDINGS])
def test_shards_are_those_of_distributed_sampler(n, world_size, drop_last, shuffle):
    loaders = [make(n, 1, shuffle=shuffle, seed=7, drop_last=drop_last, world_size=world_size, rank=r)
               for r in range(world_size)]
    for epoch in range(2):
        order = loaders[0].order(epoch)
        for rank, loader in enumerate(loaders):
            sampler = DistributedSampler(range(n), world_size, rank, shuffle=False, drop_last=drop_last)
            assert loader.shard(epoch).tolist() == order[list(sampler)].tolist()
            assert torch.equal(loader.order(epoch), order)  # every rank shuffles alike


@pytest.mark.parametrize("drop_last", [False, True], ids=["pad", "drop_last"])
@pytest.mark.parametrize(("n", "world_size", "batch_size"), [(50, 2, 7), (50, 3, 7), (49, 3, 5), (10, 3, 2), (4, 3, 1)])
def test_ranks_get_equal_batches_disjoint_shards_covering_the_epoch(n, world_size, batch_size, drop_last):
    loaders = [make(n, batch_size, shuffle=True, seed=3, drop_last=drop_last, world_size=world_size, rank=r)
               for r in range(world_size)]
    lengths = {len(loader) for loader in loaders}
    assert len(lengths) == 1
    per_rank = [[y for _, y in loader] for loader in loaders]
    assert all(len(batches) == len(loaders[0]) for batches in per_rank)
    for batches in zip(*per_rank):  # batch b has one size on every rank, so a collective step never waits
        assert len({len(y) for y in batches}) == 1
    seen = [torch.cat(batches).tolist() for batches in per_rank]
    assert [loader.num_samples for loader in loaders] == [len(s) for s in seen]  # the length in samples
    everything = list(itertools.chain(*seen))
    shard_size = (n // world_size) if drop_last else -(-n // world_size)
    if drop_last:
        assert all(len(s) == shard_size - shard_size % batch_size for s in seen)
        assert len(set(everything)) == len(everything)  # disjoint: nothing repeated
    else:
        assert all(len(s) == shard_size for s in seen)
        assert set(everything) == set(range(n))  # the union covers the epoch
        assert len(everything) - len(set(everything)) == world_size * shard_size - n  # only the padding repeats


def test_sharded_real_digits_cover_the_split_once(data_dir):
    mnist = MNIST(data_dir, train=False, download=False)
    loaders = [InMemoryLoader(mnist.images, torch.arange(len(mnist)), 128, shuffle=True, world_size=3, rank=r)
               for r in range(3)]
    n = len(mnist)
    shard = math.ceil(n / 3)  # each rank's share, the order padded by wrapping around
    assert [len(loader) for loader in loaders] == [math.ceil(shard / 128)] * 3
    indices = torch.cat([idx for loader in loaders for _, idx in loader])
    assert len(indices) == 3 * shard and set(indices.tolist()) == set(range(n))


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_loader_restored_mid_epoch(world_size):
    for rank in range(world_size):
        kwargs = {"shuffle": True, "seed": 11, "world_size": world_size, "rank": rank, "augment": Compose(noise)}
        uninterrupted = make(49, 4, **kwargs)
        expected = [list(uninterrupted) for _ in range(3)]
        original = make(49, 4, **kwargs)
        list(original)
        stream = iter(original)
        head = [next(stream) for _ in range(2)]
        state = original.state_dict()
        restored = make(49, 4, **(kwargs | {"seed": 0}))
        restored.load_state_dict(state)
        resumed = [head + list(restored), list(restored)]
        for got_epochs, want_epochs in zip(resumed, expected[1:]):
            assert len(got_epochs) == len(want_epochs) == len(original)
            for (xa, ya), (xb, yb) in zip(got_epochs, want_epochs):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"world_size": 0}, "world_size=0 is out of range; expected world_size >= 1"),
        ({"world_size": 2.0}, "world_size=2.0 is a float; expected an integer"),
        ({"world_size": 3, "rank": 3}, r"rank=3 is out of range; expected rank in \[0, 3\)"),
        ({"world_size": 3, "rank": -1}, r"rank=-1 is out of range; expected rank in \[0, 3\)"),
        ({"rank": 1}, r"rank=1 is out of range; expected rank in \[0, 1\)"),
        ({"world_size": 51, "drop_last": True}, "50 examples and world_size 51 leaves no example per rank: "
                                                "expected world_size <= 50"),
        ({"world_size": 3, "drop_last": True, "batch_size": 17},
         r"50 examples split across world_size 3 \(16 each\) and batch_size 17 leaves no batch: "
         "expected batch_size <= 16"),
    ],
)
def test_bad_sharding(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        InMemoryLoader(torch.zeros(50, 3), torch.arange(50), **({"batch_size": 7} | kwargs))


# Augmentation: applied to the gathered batch before the transform, seeded per (seed, epoch, rank, batch).


def noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A test augmentation whose output shows every draw: x + uniform noise."""
    return x + torch.rand(x.shape, generator=generator)


def test_augment_runs_on_the_gathered_batch_before_transform():
    calls = []

    def augment(x, generator):
        calls.append(("augment", x.dtype, generator))
        return x.flip(-1)

    def transform(x):
        calls.append(("transform", x.dtype, None))
        return x.float()

    loader = InMemoryLoader(torch.arange(60, dtype=torch.uint8).reshape(20, 3), torch.arange(20), 8,
                            augment=augment, transform=transform)
    batches = list(loader)
    assert [c[:2] for c in calls] == [("augment", torch.uint8), ("transform", torch.uint8)] * 3
    for (x, y), (_, _, generator) in zip(batches, calls[::2]):
        assert torch.equal(x, loader.inputs[y].flip(-1).float())
        assert isinstance(generator, torch.Generator)


def test_augmented_batch_is_a_function_of_seed_epoch_rank_and_batch():
    loader = make(shuffle=True, seed=5, augment=noise)
    list(loader)
    second = list(loader)  # epoch 1
    for b, (x, y) in enumerate(second):
        generator = make(seed=5).generator(1, b)
        torch.testing.assert_close(x, loader.inputs[y] + torch.rand(loader.inputs[y].shape, generator=generator))
    draws = {key: torch.rand(4, generator=make(seed=key[0], world_size=2, rank=key[2]).generator(key[1], key[3]))
             for key in [(5, 1, 0, 0), (6, 1, 0, 0), (5, 2, 0, 0), (5, 1, 1, 0), (5, 1, 0, 1)]}
    assert len({tuple(d.tolist()) for d in draws.values()}) == 5


def test_augment_ignores_global_random_state():
    torch.manual_seed(1)
    a = list(make(shuffle=True, augment=noise))
    torch.manual_seed(2)
    b = list(make(shuffle=True, augment=noise))
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))


def test_cifar_augmentation_on_real_digits_keeps_labels_and_changes_pixels(data_dir):
    mnist = MNIST(data_dir, train=False, download=False)
    augment = Compose(RandomCrop(4), RandomHorizontalFlip())
    plain = InMemoryLoader(mnist.images, mnist.labels, 250, shuffle=True, seed=1, transform=MNIST.normalize)
    augmented = InMemoryLoader(mnist.images, mnist.labels, 250, shuffle=True, seed=1, transform=MNIST.normalize,
                               augment=augment)
    for (xa, ya), (xb, yb) in zip(plain, augmented):
        assert torch.equal(ya, yb) and xb.shape == xa.shape == (len(ya), 1, 28, 28)
        changed = (xa != xb).flatten(1).any(1).float().mean().item()
        assert changed > 0.9  # about 1 - 1/81 * 1/2 of the digits move or flip
        # Padding is black before normalization: the minimum of each batch is the normalized 0.
        assert xb.min().item() == pytest.approx(-MNIST.MEAN / MNIST.STD)
