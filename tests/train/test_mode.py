import pytest

from cadence.train import Mode


def test_updates_nest_and_restore():
    mode = Mode()
    with mode.update(is_train=True):
        assert mode.is_train and not mode.is_optimize
        with mode.update(is_optimize=True):
            assert mode.is_train and mode.is_optimize
        assert mode.is_train and not mode.is_optimize
    assert not mode.is_train


def test_restored_after_an_exception():
    mode = Mode()
    with pytest.raises(RuntimeError):
        with mode.update(is_train=True, is_optimize=True):
            raise RuntimeError("boom")
    assert (mode.is_train, mode.is_optimize) == (False, False)
