"""InMemoryLoader: coverage per epoch, seeded order, drop_last, transforms on real digits, resume, bad arguments."""

from __future__ import annotations

import pytest
import torch

from cadence.data import MNIST, InMemoryLoader


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
    assert len(loader) == 8
    for x, idx in loader:
        assert x.dtype == torch.float32 and x.shape == (len(idx), 1, 28, 28)
        direct = ((mnist.images[idx].float() / 255 - MNIST.MEAN) / MNIST.STD).unsqueeze(1)
        torch.testing.assert_close(x, direct)


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
    assert state == {"epoch": 1, "position": 3}
    remaining = list(stream)

    restored = make(shuffle=True, seed=9)
    restored.load_state_dict(state)
    resumed = list(restored)
    assert len(resumed) == len(remaining) == 5
    for (xa, ya), (xb, yb) in zip(remaining, resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert original.state_dict() == restored.state_dict() == {"epoch": 2, "position": 0}


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
    assert len(consumed) == 8 and loader.state_dict() == {"epoch": 0, "position": 8}
    reference = make(shuffle=True)
    reference.set_epoch(1)
    assert epoch_indices(loader) == epoch_indices(reference)
    assert loader.epoch == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, ValueError, "batch_size must be an integer >= 1, got 2.5"),
        ({"batch_size": True}, ValueError, "batch_size must be an integer >= 1, got True"),
        ({"seed": -1}, ValueError, "seed must be an integer >= 0, got -1"),
        ({"targets": torch.arange(49)}, ValueError, "same length, got 50 inputs and 49 targets"),
        ({"targets": torch.arange(50, device="meta")}, ValueError, "one device, got inputs on cpu and targets on meta"),
        ({"inputs": torch.zeros(0, 3), "targets": torch.zeros(0)}, ValueError, r"inputs are empty \(shape \[0, 3\]\)"),
        ({"inputs": [1, 2, 3]}, TypeError, "inputs must be a tensor .* got list"),
        ({"targets": torch.tensor(3)}, TypeError, "targets must be a tensor .* got a 0-d tensor"),
        ({"transform": "normalize"}, TypeError, "transform must be callable or None, got str"),
        ({"batch_size": 51, "drop_last": True}, ValueError, "drop_last=True with 50 examples and batch_size 51"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"inputs": torch.zeros(50, 3), "targets": torch.arange(50), "batch_size": 7} | kwargs
    with pytest.raises(error, match=match):
        InMemoryLoader(arguments.pop("inputs"), arguments.pop("targets"), arguments.pop("batch_size"), **arguments)


def test_bad_states_and_epochs():
    loader = make()
    with pytest.raises(KeyError, match="lacks \\['position'\\]"):
        loader.load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match="position 9 is past the end of an epoch of 8 batches"):
        loader.load_state_dict({"epoch": 1, "position": 9})
    with pytest.raises(ValueError, match="epoch must be an integer >= 0, got -2"):
        loader.set_epoch(-2)
