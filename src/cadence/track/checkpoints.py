"""Checkpoints: one folder per checkpoint, written atomically, found without guessing, loaded without running code.

Layout, in a run's folder (these names are public: scripts may rely on them)::

    checkpoints/
      step-<N>/                 the checkpoint taken after optimizer step N
        model.safetensors       the model's weights: any safetensors reader opens it (tied tensors stored once)
        state.pt                everything else (optimizer, schedules, scaler, RNGs, loaders, metrics,
                                callbacks), read with ``torch.load(weights_only=True)``
        meta.json               what it is: format, cadence version, experiment, step, epoch, metrics

**Atomic.** A checkpoint is written into a hidden partial folder beside its final name
(``.step-<N>.<random>.part``); every file is flushed and synced to disk, then the folder is
renamed into place and the parent folder synced. A folder named ``step-<N>`` is therefore
always complete, whatever stops the writing (SIGKILL, a full disk, a power cut), and the
checkpoints written before it are never touched. A partial folder left by a killed process
is removed by a later write once it has been untouched for an hour.

**Found without guessing.** :func:`latest_checkpoint` is the ``step-<N>`` folder with the
largest ``N``; :func:`best_checkpoint` the one whose ``meta.json`` holds the best value of a
metric. Every reader of checkpoints (the trainer, ``cadence show``, ``cadence generate``) goes
through this module, the one place that knows the layout.

**Loaded without running code.** Weights come from safetensors, the rest from
``torch.load(weights_only=True)`` (tensors, numbers, strings and containers only; the
random generators' states are stored as tensors for this). A checkpoint that does not fit
the model fails with the missing keys, the unexpected keys and the shape mismatches; one of
another experiment, or of another format, says so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import safetensors.torch
import torch
from torch import nn

from cadence import __version__
from cadence.data.partial import partial_path
from cadence.optim.sharded import local

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINTS", "FORMAT", "META_FILE", "MODEL_FILE", "STATE_FILE", "CheckpointError", "best_checkpoint",
           "checkpoint_path", "checkpoints_root", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "prune_checkpoints",
           "begin_checkpoint", "check_fits", "commit_checkpoint", "is_sharded", "read_checkpoint", "read_meta",
           "read_weights", "save_checkpoint", "saved_by", "shard_shapes", "write_state", "write_weights", "write_whole_weights"]

#: The folder of a run's checkpoints.
CHECKPOINTS = "checkpoints"
MODEL_FILE, STATE_FILE, META_FILE = "model.safetensors", "state.pt", "meta.json"
#: What ``torch.distributed.checkpoint`` writes beside its ``*.distcp`` shards.
SHARDS_METADATA = ".metadata"
#: The layout version this cadence writes and reads.
FORMAT = 2

_STEP = re.compile(r"step-(\d+)")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: unreadable, of another format or experiment, or not fitting the model."""


def save_checkpoint(root: str | os.PathLike, step: int, model: nn.Module | Mapping[str, torch.Tensor],
                    state: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Write checkpoint ``root/step-<step>`` atomically and return its path.

    ``model``'s weights (or a state dict of them) go to ``model.safetensors``, ``state``
    (tensors, numbers, strings and containers of them) to ``state.pt``, ``meta`` (JSON) with the
    format and cadence version to ``meta.json``. A checkpoint of the same step is replaced (the
    new one is complete before the old one goes).
    """
    partial, final = begin_checkpoint(root, step)
    try:
        write_weights(partial, model.state_dict() if isinstance(model, nn.Module) else model)
        write_state(partial, step, state, meta)
        return commit_checkpoint(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def begin_checkpoint(root: str | os.PathLike, step: int) -> tuple[Path, Path]:
    """``(partial, final)``: a new hidden folder to write checkpoint ``root/step-<step>`` into, and its final name."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    partial = partial_path(final)
    partial.mkdir()
    return partial, final


def write_weights(folder: Path, weights: Mapping[str, torch.Tensor]) -> None:
    """``weights`` (a model's state dict, tied tensors stored once) into ``folder/model.safetensors``."""
    write_weights_file(folder / MODEL_FILE, weights)


def write_weights_file(path: Path, weights: Mapping[str, torch.Tensor]) -> None:
    """``weights`` (tied tensors stored once) into the safetensors file ``path``, synced."""
    _write(path, lambda f: f.write(safetensors.torch.save(_deduplicated(dict(weights)))))


def write_whole_weights(checkpoint: Path, weights: Mapping[str, torch.Tensor]) -> Path:
    """Add ``model.safetensors`` (whole ``weights``) to the complete checkpoint ``checkpoint`` (a sharded one), written
    beside it under a hidden name and renamed into place; return its path."""
    partial = partial_path(checkpoint / MODEL_FILE)
    try:
        write_weights_file(partial, weights)
        partial.rename(checkpoint / MODEL_FILE)
        _sync(checkpoint)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return checkpoint / MODEL_FILE


def write_state(folder: Path, step: int, state: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """``state`` into ``folder/state.pt`` and ``meta`` (with the format, cadence's version and ``step``) into
    ``folder/meta.json``."""
    _write(folder / STATE_FILE, lambda f: torch.save(dict(state), f))
    meta = {"format": FORMAT, "cadence": __version__, "step": step, **meta}
    _write(folder / META_FILE, lambda f: f.write(json.dumps(meta, indent=2).encode() + b"\n"))


def commit_checkpoint(partial: Path, final: Path) -> Path:
    """Make the complete checkpoint in ``partial`` visible as ``final``: synced to disk, then renamed (replacing a
    checkpoint of the same step only once the new one is in place); return ``final``."""
    _sync(partial)
    if final.exists():
        old = partial_path(final)
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old)
    else:
        partial.rename(final)
    _sync(final.parent)
    return final


def is_sharded(path: str | os.PathLike) -> bool:
    """Whether checkpoint ``path`` holds its weights and optimizer state as ``torch.distributed.checkpoint`` shards
    (``*.distcp`` files and DCP's ``.metadata``) rather than ``model.safetensors``."""
    return (Path(path) / SHARDS_METADATA).is_file()


def checkpoints_root(path: str | os.PathLike) -> Path:
    """The folder holding the ``step-<N>`` checkpoints of ``path``: a run's folder (its ``checkpoints/``) or
    that folder itself."""
    path = Path(path)
    return path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """The complete checkpoints under ``root`` (a run's folder, or its ``checkpoints/``), oldest (smallest step)
    first."""
    root = checkpoints_root(root)
    found = [(int(m[1]), p) for p in root.glob("step-*") if (m := _STEP.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``root`` (a run's folder, or its ``checkpoints/``): the largest step,
    or ``None``."""
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint ``path`` names: a ``step-<N>`` folder itself, or a run's folder (or its ``checkpoints/``): its
    newest. None there is a ``FileNotFoundError`` saying what was expected."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {path}: expected a {CHECKPOINTS}/step-<N>/ folder in it, or the "
                                f"path of one")
    return found


def best_checkpoint(root: str | os.PathLike, metric: str = "valid.loss", mode: str = "min") -> Path:
    """The checkpoint under ``root`` (a run's folder, or its ``checkpoints/``) whose ``meta.json`` holds the best
    value of ``metric``: the lowest (``mode="min"``) or the highest (``"max"``); the newest of equals.

    The trainer writes each checkpoint's latest reported values into its ``meta.json``, so any
    key the run reported (``valid.loss``, ``valid.accuracy``) can be asked for. A folder
    without checkpoints, or none holding ``metric``, is an error listing what they hold.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"best_checkpoint: mode={mode!r}; expected 'min' or 'max'")
    found = list_checkpoints(root)
    if not found:
        raise FileNotFoundError(f"best_checkpoint: no checkpoint in {root}: expected step-<N> folders in it or in "
                                f"its {CHECKPOINTS}/")
    scored = _scored(found, metric, mode)
    if not scored:
        held = sorted({key for path in found for key in read_meta(path).get("metrics", {})})
        raise KeyError(f"best_checkpoint: no checkpoint in {root} holds a value of {metric!r}; they hold: "
                       f"{', '.join(held) or 'no metrics'}")
    return min(scored)[2]


def _scored(checkpoints: list[Path], metric: str, mode: str) -> list[tuple[float, int, Path]]:
    """``(score, -step, path)`` of each checkpoint holding a number for ``metric``: the smallest score is the best,
    and of equal scores the newest."""
    scored = []
    for path in checkpoints:
        value = read_meta(path).get("metrics", {}).get(metric)
        if isinstance(value, (int, float)) and value == value:
            scored.append((value if mode == "min" else -value, -int(_STEP.fullmatch(path.name)[1]), path))
    return scored


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of checkpoint ``path``, checked to be of this cadence's format."""
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is not a cadence checkpoint: it has no {META_FILE}") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: {META_FILE} is unreadable: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        written = meta.get("cadence", "an unknown version") if isinstance(meta, dict) else "an unknown version"
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format') if isinstance(meta, dict) else None!r}"
                              f" (written by cadence {written}); cadence {__version__} reads format {FORMAT}")
    return meta


def load_checkpoint(path: str | os.PathLike, model: nn.Module, *,
                    experiment: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load checkpoint ``path``'s weights into ``model``; return its ``(state, meta)``.

    ``experiment``, when given, must be the one the checkpoint was saved for. Nothing is
    changed when the checkpoint is refused: the weights are checked against ``model``
    (missing and unexpected keys, shapes) before any is copied. The weights of a sharded
    checkpoint (:func:`is_sharded`) are read whole, into this one process.
    """
    state, meta = read_checkpoint(path, experiment=experiment)
    weights = read_weights(path, meta)
    check_fits(model, weights, f"checkpoint {path} ({saved_by(meta)})")
    own = model.state_dict()
    with torch.no_grad():
        for key, tensor in own.items():
            source = weights.get(key)
            if source is None:  # tied to a saved tensor, which has filled it
                continue
            tensor.copy_(source)
    return state, meta


def saved_by(meta: Mapping[str, Any]) -> str:
    """What wrote a checkpoint, from its ``meta.json``, for messages."""
    return f"saved by cadence {meta.get('cadence')} for experiment {meta.get('experiment')!r} at step {meta['step']}"


def read_checkpoint(path: str | os.PathLike, *, experiment: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Checkpoint ``path``'s ``(state, meta)`` (``state.pt`` and ``meta.json``), checked to be of ``experiment`` when
    given."""
    path = Path(path)
    meta = read_meta(path)
    if experiment is not None and meta.get("experiment") != experiment:
        raise CheckpointError(f"checkpoint {path} was {saved_by(meta)}, not for experiment {experiment!r}")
    if meta.get("cadence") != __version__:
        logger.info("checkpoint %s was written by cadence %s; this is cadence %s", path, meta.get("cadence"),
                    __version__)
    try:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True), meta
    except Exception as e:  # a truncated, corrupt or foreign file; or one that asks to run code (refused)
        raise CheckpointError(f"checkpoint {path} ({saved_by(meta)}) is unreadable: {type(e).__name__}: {e}") from None


def read_weights(path: str | os.PathLike, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Checkpoint ``path``'s weights, whole, on the CPU: ``model.safetensors``, or else its ``torch.distributed.checkpoint``
    shards' ``model.*`` entries gathered into this process."""
    path = Path(path)
    try:
        if (path / MODEL_FILE).is_file() or not is_sharded(path):
            return safetensors.torch.load_file(path / MODEL_FILE)
        import torch.distributed.checkpoint as dcp  # here: importing it costs every command a second

        shapes = shard_shapes(path, "model.")
        whole = {f"model.{key}": torch.empty(size, dtype=dtype) for key, (size, dtype) in shapes.items()}
        dcp.load(whole, checkpoint_id=path, no_dist=True)
        return {key[len("model."):]: tensor for key, tensor in whole.items()}
    except Exception as e:  # a truncated, corrupt or foreign file
        raise CheckpointError(f"checkpoint {path} ({saved_by(meta)}) is unreadable: {type(e).__name__}: {e}") from None


def shard_shapes(path: Path, prefix: str) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """The whole shape and dtype of each tensor a sharded checkpoint holds under ``prefix`` (prefix removed)."""
    from torch.distributed.checkpoint import FileSystemReader

    entries = FileSystemReader(path).read_metadata().state_dict_metadata
    return {key[len(prefix):]: (entry.size, entry.properties.dtype) for key, entry in entries.items()
            if key.startswith(prefix) and hasattr(entry, "chunks")}


def prune_checkpoints(root: str | os.PathLike, keep_last: int, keep_best: int = 0, metric: str | None = None,
                      mode: str = "min") -> list[Path]:
    """Delete the checkpoints under ``root`` but the ``keep_last`` newest and the ``keep_best`` best by
    ``metric`` (its value in each checkpoint's ``meta.json``; ``mode`` ``"min"`` or ``"max"``).

    The newest checkpoint is always kept. Returns the deleted folders.
    """
    checkpoints = list_checkpoints(root)
    keep = set(checkpoints[-max(keep_last, 1):])
    if keep_best and metric is not None:
        keep.update(path for _, _, path in sorted(_scored(checkpoints, metric, mode))[:keep_best])
    deleted = [path for path in checkpoints if path not in keep]
    for path in deleted:
        shutil.rmtree(path)
    return deleted


def _deduplicated(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with each storage once (tied weights: the first name kept), contiguous, for safetensors."""
    seen: dict[tuple[int, int, tuple[int, ...], torch.dtype], str] = {}
    unique = {}
    for key, tensor in state_dict.items():
        shard = local(tensor)  # a sharded parameter's identity is its shard's
        identity = (shard.untyped_storage().data_ptr(), shard.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and identity in seen:
            continue
        seen[identity] = key
        unique[key] = tensor.detach().contiguous()
    return unique


def check_fits(model: nn.Module, weights: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse ``weights`` that do not fit ``model`` (missing and unexpected keys, shape mismatches), naming them."""
    own = model.state_dict()
    tied = set(own) - set(_deduplicated(own))
    missing = [k for k in own if k not in weights and k not in tied]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k}: saved {list(weights[k].shape)}, model {list(own[k].shape)}"
              for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing keys: {', '.join(missing)}" if missing else "",
                 f"unexpected keys: {', '.join(unexpected)}" if unexpected else "",
                 f"shape mismatches: {'; '.join(shapes)}" if shapes else ""]
        raise CheckpointError(f"{where} does not fit the model ({type(model).__name__}): "
                              f"{'; '.join(p for p in parts if p)}")


def _write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _sync(folder: Path) -> None:
    """Make a folder's entries (renames, new files) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
