"""One-pass evaluation kernels for :class:`DeepNorm` and :class:`BatchChannelNorm` (``kernels.c``).

With torch's kernels each of these layers is two normalizations, the first writing a whole
intermediate tensor that the second reads back: in evaluation that costs 2.2-3.1x a
``BatchNorm``. The C kernels beside this file normalize each row or group while it is in
the cache. They serve the layers' fast path when no autograd graph is needed (evaluation
under ``torch.no_grad()``, inference), on contiguous float32 CPU tensors; everything else
takes torch's kernels, and the readable reference path is unchanged.

The kernels are compiled at first use with the system's C compiler (``$CC``, else ``cc``,
``gcc`` or ``clang``; a C compiler is also what ``torch.compile`` needs on CPU), which takes
a fraction of a second, and cached in ``<user cache dir of cadence>/kernels``
(``$CADENCE_KERNEL_DIR`` to override) under a name keyed by the source, the flags, the
compiler and the machine. A cached library that does not load is rebuilt. Without a
compiler, the layers keep torch's kernels, after a one-time warning.

The kernels run on one thread. With more (``torch.set_num_threads``), large inputs take torch's
kernels instead, which split the work across the threads.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import secrets
import shutil
import subprocess
import warnings
from pathlib import Path

import platformdirs
import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.c")
#: Compiler flags, tried in turn: tuned to this machine, then portable.
FLAGS = (("-O3", "-march=native", "-fopenmp-simd"), ("-O3",))
#: With ``t > 1`` threads, inputs of ``numel * (t - 1)`` elements or more take torch's kernels, which split
#: the work across the threads (measured with 2 threads: the kernels won at 1.6M elements, lost at 2.1M).
PARALLEL_NUMEL = 1 << 20

_pointer, _float, _int64 = ctypes.c_void_p, ctypes.c_float, ctypes.c_int64
_SIGNATURES = {
    "deep_norm": (_pointer, _pointer, _float, _pointer, _pointer, _float, _pointer, _int64, _int64),
    "batch_channel_norm": (_pointer, _pointer, _pointer, _pointer, _pointer, _float, _pointer, _pointer, _float,
                           _pointer, _int64, _int64, _int64, _int64),
}


def kernel_dir() -> Path:
    """Where compiled kernels are cached: ``$CADENCE_KERNEL_DIR``, else ``<user cache dir of cadence>/kernels``."""
    return Path(os.environ.get("CADENCE_KERNEL_DIR") or Path(platformdirs.user_cache_dir("cadence")) / "kernels")


def compiler() -> str | None:
    """The C compiler: ``$CC``, else the first of ``cc``, ``gcc``, ``clang`` on the ``PATH``."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built or loaded once per process; ``None`` (after a warning) when they cannot be."""
    cc = compiler()
    errors = []
    if cc is None:
        errors.append("no C compiler found ($CC, cc, gcc or clang)")
    else:
        for flags in FLAGS:
            try:
                return _compiled(cc, flags)
            except (OSError, AttributeError, subprocess.SubprocessError) as error:
                errors.append(f"{cc} {' '.join(flags)}: {error}")
    warnings.warn(f"cadence: the one-pass normalization kernels could not be built ({'; '.join(errors)}); "
                  "DeepNorm and BatchChannelNorm evaluate with torch's kernels instead", RuntimeWarning, stacklevel=3)
    return None


def _compiled(cc: str, flags: tuple[str, ...]) -> ctypes.CDLL:
    """The kernels compiled by ``cc`` with ``flags``: loaded from the cache, else compiled into it."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, cc.encode(), " ".join(flags).encode(), platform.node().encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    folder = kernel_dir()
    path = folder / f"norm-{key}.so"
    if path.is_file():
        try:
            return _load(path)
        except (OSError, AttributeError) as error:  # truncated, or not a library: build it again
            logger.warning("cached kernels %s do not load (%s); rebuilding them", path, error)
            path.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    # Compiled beside its final name and renamed into place: a library under that name is complete.
    temp = folder / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        result = subprocess.run([cc, *flags, "-shared", "-fPIC", str(SOURCE), "-o", str(temp), "-lm"],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise subprocess.SubprocessError(f"exited with {result.returncode}: {result.stderr.strip()[-500:]}")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    logger.info("compiled the normalization kernels into %s", path)
    return _load(path)


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
    lib.batch_channel_norm.restype = ctypes.c_int
    return lib


def applicable(x: torch.Tensor, *others: torch.Tensor | None) -> bool:
    """Whether the kernels can compute a layer of input ``x`` and the ``others`` (its parameters and buffers):
    float32, contiguous, on the CPU, no autograd graph needed, not being traced by ``torch.compile``, an input
    too small for torch's kernels to gain from more threads, and the kernels built."""
    if torch.compiler.is_compiling():  # torch.compile traces torch's kernels (and cannot trace a C call)
        return False
    grad = torch.is_grad_enabled()
    for t in (x, *others):
        if (t is None or t.dtype is not torch.float32 or not t.is_cpu or not t.is_contiguous()
                or (grad and t.requires_grad)):
            return False
    if x.numel() * (torch.get_num_threads() - 1) >= PARALLEL_NUMEL:
        return False
    return library() is not None


def deep_norm(x: torch.Tensor, gx: torch.Tensor, alpha: float, gamma: torch.Tensor, beta: torch.Tensor,
              eps: float) -> torch.Tensor:
    r"""$\gamma \odot \mathrm{LN}(\alpha x + gx) + \beta$ over the trailing ``gamma.numel()`` values of each row."""
    out = torch.empty_like(x)
    library().deep_norm(x.data_ptr(), gx.data_ptr(), alpha, gamma.data_ptr(), beta.data_ptr(), eps, out.data_ptr(),
                        x.numel() // gamma.numel(), gamma.numel())
    return out


def batch_channel_norm(x: torch.Tensor, mu_hat: torch.Tensor, sigma2_hat: torch.Tensor, gamma_c: torch.Tensor,
                       beta_c: torch.Tensor, eps_bn: float, gamma_g: torch.Tensor, beta_g: torch.Tensor,
                       eps_cn: float) -> torch.Tensor:
    r"""The channel normalization (``gamma_g.numel()`` groups) of the batch normalization with estimates
    $\hat{\mu}_c$, $\hat{\sigma}^2_c$ of ``x`` of shape ``[B, C, *]``."""
    samples, channels, groups = x.shape[0], x.shape[1], gamma_g.numel()
    out = torch.empty_like(x)
    status = library().batch_channel_norm(
        x.data_ptr(), mu_hat.data_ptr(), sigma2_hat.data_ptr(), gamma_c.data_ptr(), beta_c.data_ptr(), eps_bn,
        gamma_g.data_ptr(), beta_g.data_ptr(), eps_cn, out.data_ptr(), samples, groups, channels // groups,
        x[0, 0].numel() if x.numel() else 0)
    if status != 0:
        raise MemoryError(f"BatchChannelNorm's kernel could not allocate the scales of {channels} channels")
    return out
