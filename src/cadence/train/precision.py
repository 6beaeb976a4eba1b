"""The numeric precision of a run: float32, bfloat16 or float16 autocast, or the best this machine computes natively.

``precision`` is one of :data:`PRECISIONS`:

* ``"32"``: float32 throughout;
* ``"bf16"``: ``torch.autocast`` to bfloat16 (on CPUs too), parameters and optimizer in float32;
* ``"fp16"``: autocast to float16 with a gradient scaler (``torch.amp.GradScaler``);
* ``"auto"``: ``"bf16"`` where the device computes bfloat16 natively and fast, else ``"32"``,
  decided once per process by :func:`resolve_precision`. A run records the resolved value in
  its config, so that a resume on another machine computes the same.

**Fast bfloat16 on a CPU** needs bfloat16 instructions (CPUID's ``avx512_bf16`` or ``amx_bf16``; Arm's
``bf16``), oneDNN allowed to use them (``ONEDNN_MAX_CPU_ISA`` may forbid it), oneDNN's LSTM taking bfloat16 (a tiny
``nn.LSTM`` forward and backward), and oneDNN's bfloat16 matmul outrunning float32's (a 512x512 product, best of 5
each). Each is asked once per process. The instructions alone are not enough, and torch's
``torch.cpu._is_*_supported()`` read CPUID only, whatever oneDNN may use:

* on an AVX2-only CPU a bfloat16 ``Linear`` runs emulated (forward and backward 5x slower than float32 on an AMD
  EPYC limited to AVX2), and oneDNN's LSTM refuses bfloat16 outright ("could not create a primitive descriptor for
  the LSTM forward propagation primitive");
* the same instructions do not pay everywhere. Measured with 2 threads, an LSTM of 2x512 units forward and backward
  took 366 ms in bfloat16 against 613 ms in float32 on an AMD EPYC with ``avx512_bf16``, and 625 ms against 399 ms
  on an Intel Xeon (model 207, under KVM) with ``avx512_bf16`` but its AMX units hidden, where a 1024x1024
  ``Linear`` took 27 ms against 14 ms. The matmul probe tells the two apart (0.51x float32's time on that EPYC:
  ``python benchmarks/precision.py``).

Forcing ``precision="bf16"`` where bfloat16 is not fast warns once that it will be slow; with a
recurrent layer that oneDNN refuses it fails at once, in one line naming what the CPU lacks
(:class:`PrecisionError`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import timeit
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["PRECISIONS", "PrecisionError", "autocast", "bf16_support", "check_precision", "resolve_precision"]

#: The values of ``precision``.
PRECISIONS = ("auto", "32", "bf16", "fp16")

#: oneDNN ISA limits (``ONEDNN_MAX_CPU_ISA``) below its first ISA with bfloat16 instructions.
_ONEDNN_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")

#: The CPU flags of bfloat16 instructions: x86's AVX-512 BF16 and AMX BF16, Arm's BF16.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")

#: The layers whose bfloat16 kernels oneDNN refuses on a CPU without native bfloat16.
_REFUSED = (nn.LSTM,)

_NO_CONTEXT = contextlib.nullcontext()


class PrecisionError(ValueError):
    """A precision this machine cannot compute."""


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` with ``"auto"`` resolved for ``device``: ``"bf16"`` where it computes bfloat16 natively
    (see :func:`bf16_support`), else ``"32"``; the others as they are. An unknown value is a ``ValueError``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {', '.join(map(repr, PRECISIONS))}")
    if precision != "auto":
        return precision
    return "bf16" if bf16_support(device) is None else "32"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a step computes in at a resolved ``precision``: autocast to bfloat16 or float16, or nothing."""
    if precision == "32":
        return _NO_CONTEXT
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def bf16_support(device: torch.device) -> str | None:
    """``None`` where ``device`` computes bfloat16 natively and fast, else why not (what the machine lacks), in
    words."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else f"{torch.cuda.get_device_name(device)} has no bfloat16"
    if device.type == "cpu":
        return _cpu_bf16_support()
    return f"cadence does not use bfloat16 autocast on {device.type} devices"


def check_precision(precision: str, device: torch.device, model: nn.Module) -> None:
    """Before training ``model`` on ``device`` at a resolved ``precision``: where bfloat16 is asked for but not fast,
    a layer oneDNN refuses is a :class:`PrecisionError` naming it and what the CPU lacks; otherwise one warning
    says that it will be slow."""
    if precision != "bf16":
        return
    missing = bf16_support(device)
    if missing is None:
        return
    refused = [(name, module) for name, module in model.named_modules() if isinstance(module, _REFUSED)]
    if refused and device.type == "cpu" and _lstm_refused() is not None:
        name, module = refused[0]
        layer = f"the model's {type(module).__name__} {name!r}" if name else f"the model, an {type(module).__name__}"
        raise PrecisionError(f"precision='bf16': {_lstm_refused()}, so oneDNN has no bfloat16 kernel of {layer}; "
                             f"use precision='auto' (float32 on this machine) or '32'")
    warnings.warn(f"precision='bf16': {missing}, so training will be slower than in float32; precision='auto' picks "
                  f"float32 on this machine", RuntimeWarning, stacklevel=3)


@functools.cache
def _cpu_bf16_support() -> str | None:
    """Whether this process's CPU computes bfloat16 natively and fast (see the module docstring); asked once."""
    return _bf16_instructions_missing() or _lstm_refused() or _bf16_slower()


def _bf16_instructions_missing() -> str | None:
    """What keeps oneDNN from bfloat16 instructions here: the CPU has none, or ``ONEDNN_MAX_CPU_ISA`` forbids them;
    ``None`` where it may use them."""
    if not _cpu_flags() & set(_BF16_FLAGS):
        return (f"this CPU ({platform.processor() or platform.machine()}) has no bfloat16 instructions "
                f"(none of {', '.join(_BF16_FLAGS)})")
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if limit in _ONEDNN_WITHOUT_BF16:
        return f"ONEDNN_MAX_CPU_ISA={limit} keeps oneDNN from the CPU's bfloat16 instructions"
    return None


@functools.cache
def _bf16_slower() -> str | None:
    """How much longer oneDNN's bfloat16 matmul takes than float32's on this CPU, or ``None`` where it is faster:
    a 512x512 product, the best of 5 of each after one warm-up. Asked once per process."""
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.ones(512, 512, dtype=dtype)
        best[dtype] = min(timeit.repeat(lambda x=x: torch.mm(x, x), number=1, repeat=6)[1:])
    ratio = best[torch.bfloat16] / best[torch.float32]
    return None if ratio < 1 else f"oneDNN's bfloat16 matmul takes {ratio:.1f}x float32's time on this CPU"


@functools.cache
def _lstm_refused() -> str | None:
    """Why oneDNN refuses a bfloat16 LSTM on this CPU (what it lacks), or ``None`` where a tiny one runs forward and
    backward; the generators left as they were. Asked once per process."""
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            output, _ = nn.LSTM(4, 4)(torch.zeros(2, 1, 4))
        output.float().sum().backward()
    except RuntimeError as e:
        return _bf16_instructions_missing() or f"oneDNN refuses a bfloat16 LSTM on this CPU ({str(e).splitlines()[0]})"
    return None


def _cpu_flags() -> set[str]:
    """The CPU's feature flags: /proc/cpuinfo's on Linux, else what torch reads from CPUID."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() in ("flags", "Features"):
                return set(value.split())
    supported = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return {"avx512_bf16"} if supported is not None and supported() else set()
