import pytest

from cadence.train import BatchIndex


def test_last_and_intervals():
    indices = [BatchIndex(i, 7) for i in range(7)]
    assert [b.is_last for b in indices] == [False] * 6 + [True]
    assert [b.idx for b in indices if b.is_interval(3)] == [2, 5, 6]
    assert not any(b.is_interval(0) for b in indices)


@pytest.mark.parametrize("idx, total", [(-1, 5), (5, 5), (0, 0)])
def test_out_of_range_fails(idx, total):
    with pytest.raises(ValueError, match=rf"idx={idx} is outside \[0, total={total}\)"):
        BatchIndex(idx, total)
