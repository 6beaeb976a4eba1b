"""The numeric precision of a run: float32, bfloat16 or float16 autocast, or the best this machine computes natively.

``precision`` is one of :data:`PRECISIONS`:

* ``"32"``: float32 throughout;
* ``"bf16"``: ``torch.autocast`` to bfloat16 (on CPUs too), parameters and optimizer in float32;
* ``"fp16"``: autocast to float16 with a gradient scaler (``torch.amp.GradScaler``);
* ``"auto"``: ``"bf16"`` where the device computes bfloat16 natively and fast, else ``"32"``,
  decided once per process by :func:`resolve_precision`. A run records the resolved value in
  its config, so that a resume on another machine computes the same.

**Fast bfloat16 on a CPU** needs the CPU's AMX tile units (CPUID's ``amx_bf16``), oneDNN
allowed to use them (``ONEDNN_MAX_CPU_ISA`` may forbid it), and oneDNN's LSTM to take
bfloat16 (a tiny ``nn.LSTM`` forward and backward, run once). Instructions alone are not
enough, and torch's ``torch.cpu._is_*_supported()`` read CPUID only:

* on a Xeon with ``avx512_bf16`` but no AMX (measured on this project's machine, 2 threads:
  an LSTM of 2x512 units, forward and backward, 625 ms in bfloat16 against 399 ms in float32;
  a 1024x1024 ``Linear``, 27 ms against 14 ms) oneDNN's bfloat16 kernels run, slower;
* on an AVX2-only CPU a bfloat16 ``Linear`` runs emulated (8x slower than float32), and
  oneDNN's LSTM refuses bfloat16 outright ("could not create a primitive descriptor for the
  LSTM forward propagation primitive").

Forcing ``precision="bf16"`` where bfloat16 is not fast warns once that it will be slow; with a
recurrent layer that oneDNN refuses it fails at once, in one line naming what the CPU lacks
(:class:`PrecisionError`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["PRECISIONS", "PrecisionError", "autocast", "bf16_support", "check_precision", "resolve_precision"]

#: The values of ``precision``.
PRECISIONS = ("auto", "32", "bf16", "fp16")

#: oneDNN ISA limits (``ONEDNN_MAX_CPU_ISA``) below its first ISA with bfloat16 instructions, and below AMX.
_ONEDNN_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
_ONEDNN_WITHOUT_AMX = (*_ONEDNN_WITHOUT_BF16, "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512")

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
    flags, limit = _cpu_flags(), os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if "amx_bf16" not in flags:
        held = [flag for flag in _BF16_FLAGS if flag in flags]
        return (f"this CPU ({platform.processor() or platform.machine()}) has no AMX bfloat16 units (amx_bf16; its "
                f"bfloat16 instructions: {', '.join(held) or 'none'}), without which bfloat16 is slower than float32")
    if limit in _ONEDNN_WITHOUT_AMX:
        return f"ONEDNN_MAX_CPU_ISA={limit} keeps oneDNN from the CPU's AMX bfloat16 units"
    return _lstm_refused()


@functools.cache
def _lstm_refused() -> str | None:
    """Why oneDNN refuses a bfloat16 LSTM on this CPU (what it lacks), or ``None`` where a tiny one runs forward and
    backward; the generators left as they were. Asked once per process."""
    flags, limit = _cpu_flags(), os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            output, _ = nn.LSTM(4, 4)(torch.zeros(2, 1, 4))
        output.float().sum().backward()
    except RuntimeError as e:
        if not flags & set(_BF16_FLAGS):
            return f"this CPU has no bfloat16 instructions (none of {', '.join(_BF16_FLAGS)})"
        if limit in _ONEDNN_WITHOUT_BF16:
            return f"ONEDNN_MAX_CPU_ISA={limit} keeps oneDNN from the CPU's bfloat16 instructions"
        return f"oneDNN refuses a bfloat16 LSTM on this CPU ({str(e).splitlines()[0]})"
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
