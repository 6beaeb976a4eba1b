"""The trainer, its loop, hooks and callbacks, checkpoints, interruption, devices and data parallel set-up."""

from cadence.track.checkpoints import (CheckpointError, best_checkpoint, latest_checkpoint, list_checkpoints,
                                       load_checkpoint, prune_checkpoints, read_meta, save_checkpoint)
from cadence.train.batch_index import BatchIndex
from cadence.train.callbacks import HOOKS, Callback, EarlyStopping
from cadence.train.device import DeviceError, resolve_device
from cadence.train.mode import Mode
from cadence.train.optimizer_step import NonFiniteError, OptimizerStep
from cadence.train.position import LoopPosition
from cadence.train.precision import PrecisionError, resolve_precision
from cadence.train.trainer import Trainer

__all__ = ["HOOKS", "BatchIndex", "Callback", "CheckpointError", "DeviceError", "EarlyStopping", "LoopPosition",
           "Mode", "NonFiniteError", "OptimizerStep", "PrecisionError", "Trainer", "best_checkpoint",
           "latest_checkpoint", "list_checkpoints", "load_checkpoint", "prune_checkpoints", "read_meta",
           "resolve_device", "resolve_precision", "save_checkpoint"]
