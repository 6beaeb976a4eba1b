"""Tests of :mod:`cadence.nn.norm.kernels`: the one-pass evaluation kernels of DeepNorm and Batch-Channel
Normalization against the papers' equations in float64, when they apply, and how they are built."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from cadence.nn.norm import BatchChannelNorm, DeepNorm, kernels

from .conftest import TOL, far_from_zero, pair, randomize_affine, standardized64
from .test_batch_channel_norm import PaperBatchChannelNorm
from .test_deep_norm import paper_deep_norm


@pytest.fixture
def calls(monkeypatch):
    """How often each kernel ran."""
    counts = {"deep_norm": 0, "batch_channel_norm": 0}
    for name in counts:
        original = getattr(kernels, name)

        def spy(*args, name=name, original=original):
            counts[name] += 1
            return original(*args)

        monkeypatch.setattr(kernels, name, spy)
    return counts


@pytest.fixture
def fresh_library(tmp_path, monkeypatch):
    """An empty kernel cache folder, and no library loaded yet in this process (nor left behind)."""
    monkeypatch.setenv("CADENCE_KERNEL_DIR", str(tmp_path))
    kernels.library.cache_clear()
    yield tmp_path
    kernels.library.cache_clear()


@pytest.mark.parametrize("shape, normalized_shape", [((4, 7, 16), 16), ((1, 13), 13), ((3, 4, 8), (4, 8)),
                                                     ((32, 128, 512), 512)])
def test_deep_norm_kernel_is_the_papers(calls, shape, normalized_shape):
    norm = randomize_affine(DeepNorm(2.5, normalized_shape))
    x, gx = torch.randn(shape), torch.randn(shape)
    with torch.no_grad():
        y = norm(x, gx)
    dims = 2 if isinstance(normalized_shape, tuple) else 1
    flat = (*shape[:-dims], -1)
    paper = paper_deep_norm(x.reshape(flat), gx.reshape(flat), 2.5, norm.layer_norm.weight.detach().reshape(-1),
                            norm.layer_norm.bias.detach().reshape(-1)).reshape(shape)
    torch.testing.assert_close(y, paper, **TOL)
    assert calls["deep_norm"] == 1


@pytest.mark.parametrize("estimate", [True, False], ids=["estimated", "batch-stats"])
@pytest.mark.parametrize("shape", [(16, 12), (4, 12, 10), (4, 12, 5, 7), (2, 12, 3, 2, 4)])
def test_batch_channel_norm_kernel_is_the_papers(calls, shape, estimate):
    theirs = PaperBatchChannelNorm(12, 2, estimate, min(len(shape), 4))
    if len(shape) == 5 and not estimate:
        theirs.batch_norm = torch.nn.BatchNorm3d(12, momentum=0.3, dtype=torch.float64)
    ours, theirs = pair(BatchChannelNorm(12, 2, momentum=0.3, estimate=estimate), theirs)
    for i in range(3):
        x = torch.randn(shape) * (1 + i) + i
        ours(x)
        theirs(x)
    ours.eval()
    theirs.eval()
    x = torch.randn(shape) * 2 + 1
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), **TOL)
    assert calls["batch_channel_norm"] == 1


def test_kernels_are_stable_far_from_zero():
    """Inputs of mean 1e4 and unit variance: the variance is taken after subtracting the mean."""
    deep = DeepNorm(1.0, 64)
    x, gx = far_from_zero((8, 64)), torch.zeros(8, 64)
    with torch.no_grad():
        torch.testing.assert_close(deep(x, gx), standardized64(x, (-1,)), atol=1e-2, rtol=0, check_dtype=False)
    bcn = BatchChannelNorm(8, 2).eval()  # estimates 0 and 1: the channel normalization sees the mean 1e4
    x = far_from_zero((4, 8, 6, 6))
    with torch.no_grad():
        y = bcn(x)
    expected = standardized64(x.reshape(4, 2, -1), (-1,)).reshape(x.shape)
    torch.testing.assert_close(y, expected, atol=1e-2, rtol=0, check_dtype=False)


def test_autograd_and_unsupported_inputs_take_torchs_kernels(calls):
    deep, bcn = randomize_affine(DeepNorm(2.0, 16)), randomize_affine(BatchChannelNorm(8, 2)).eval()
    x, gx = torch.randn(4, 16), torch.randn(4, 16)
    assert deep(x, gx).requires_grad  # the parameters need gradients: torch's kernels, under autograd
    images = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        deep(x.t().contiguous().t(), gx)  # not contiguous
        DeepNorm(2.0, 16, reference=True)(x, gx)
        assert calls == {"deep_norm": 0, "batch_channel_norm": 0}
        torch.testing.assert_close(deep(x, gx), deep(x.t().contiguous().t(), gx), **TOL)
        expected = bcn(images)
        assert calls == {"deep_norm": 1, "batch_channel_norm": 1}
        torch.testing.assert_close(bcn(images.transpose(2, 3)), expected.transpose(2, 3), **TOL)
        torch.testing.assert_close(bcn(images.bfloat16()), expected.bfloat16(), atol=5e-2, rtol=2e-2)
        bcn.train()
        bcn(images)  # training: the estimates move first
    assert calls == {"deep_norm": 1, "batch_channel_norm": 1}


def test_models_compiled_whole_trace_torchs_kernels(calls):
    deep, bcn = randomize_affine(DeepNorm(2.0, 16)), randomize_affine(BatchChannelNorm(8, 2)).eval()
    x, gx, images = torch.randn(4, 16), torch.randn(4, 16), torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        compiled = torch.compile(lambda x, gx, images: (deep(x, gx), bcn(images)), fullgraph=True)
        for ours, eager in zip(compiled(x, gx, images), (deep(x, gx), bcn(images))):
            torch.testing.assert_close(ours, eager, **TOL)
    assert calls == {"deep_norm": 1, "batch_channel_norm": 1}  # the eager calls only


def test_with_more_threads_large_inputs_take_torchs_parallel_kernels(calls, monkeypatch):
    deep = DeepNorm(2.0, 64)
    small, large = torch.randn(4, 64), torch.randn(64, 64)
    monkeypatch.setattr(kernels, "PARALLEL_NUMEL", 1000)  # 4096 elements * (2 - 1) threads: torch's kernels
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            deep(small, small)
            assert calls["deep_norm"] == 1
            deep(large, large)
            assert calls["deep_norm"] == 1
        torch.set_num_threads(1)
        with torch.no_grad():
            deep(large, large)
            assert calls["deep_norm"] == 2
    finally:
        torch.set_num_threads(threads)


def test_without_a_compiler_the_layers_warn_once_and_keep_torchs_kernels(fresh_library, monkeypatch, calls):
    monkeypatch.setenv("CC", str(fresh_library / "no-such-cc"))
    deep = DeepNorm(2.0, 16)
    x, gx = torch.randn(4, 16), torch.randn(4, 16)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match=r"kernels could not be built \(.*no-such-cc"):
        y = deep(x, gx)
    with torch.no_grad():
        deep(x, gx)  # no second warning: pytest turns cadence's RuntimeWarnings into errors
    torch.testing.assert_close(y, deep(x, gx).detach())
    assert calls["deep_norm"] == 0


def load_in_a_new_process(folder) -> str:
    """``repr(kernels.library())`` in a fresh Python (``dlopen`` keeps reusing a library this process loaded)."""
    code = "from cadence.nn.norm import kernels; print(kernels.library())"
    env = {**os.environ, "CADENCE_KERNEL_DIR": str(folder), "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_cached_kernels_are_reused_and_a_broken_one_rebuilt(fresh_library):
    assert kernels.library() is not None
    [built] = fresh_library.glob("norm-*.so")
    stamp = built.stat().st_mtime_ns
    assert "CDLL" in load_in_a_new_process(fresh_library)
    assert built.stat().st_mtime_ns == stamp  # loaded from the cache, not compiled again
    built.unlink()  # replaced, not truncated in place: this process still maps the loaded library's pages
    built.write_bytes(b"half a library")  # a truncated copy, another machine's file
    output = load_in_a_new_process(fresh_library)
    assert "CDLL" in output and "do not load" in output and "rebuilding" in output
    assert built.stat().st_size > len(b"half a library")
    assert [p.name for p in fresh_library.iterdir()] == [built.name]  # no partial file left


def test_flags_the_compiler_refuses_fall_back_to_portable_ones(fresh_library, monkeypatch):
    monkeypatch.setattr(kernels, "FLAGS", (("-O3", "--no-such-flag"), ("-O2",)))
    lib = kernels.library()
    assert lib is not None and len(list(fresh_library.glob("norm-*.so"))) == 1
