"""Which device a run trains on: CUDA when present, else Apple's MPS, else the CPU; any can be forced."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DEVICES", "DeviceError", "resolve_device", "to_device"]

#: The names ``device=`` accepts (``"cuda:1"`` picks a CUDA device by index).
DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ValueError):
    """A device that is not a device name, or that this machine does not have."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` to train on.

    ``"auto"`` (or ``None``) takes CUDA when present, else MPS, else the CPU. A named device
    the machine lacks fails with one line that names it and what the machine has (torch's
    own failure is an ``AssertionError`` traceback from deep inside its CUDA initialisation).
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device={device!r} is not a device; expected one of {', '.join(DEVICES)} "
                          f"(or 'cuda:<index>')") from None
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device={device!r} is not supported; expected one of {', '.join(DEVICES)}")
    available = _available()
    if resolved.type not in available:
        raise DeviceError(f"device={device!r}: this machine has no {resolved.type.upper()} device; it has: "
                          f"{', '.join(available)} (device=auto picks the best of them)")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DeviceError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA devices "
                          f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return resolved


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def _available() -> list[str]:
    return ["cpu", *(["cuda"] if torch.cuda.is_available() else []), *(["mps"] if _mps_available() else [])]


def to_device(batch: Any, device: torch.device) -> Any:
    """A tensor, or a tuple/list/dict of them (nested), moved to ``device`` (without waiting, where it can)."""
    if isinstance(batch, torch.Tensor):
        return batch if batch.device == device else batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)([to_device(b, device) for b in batch])
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
