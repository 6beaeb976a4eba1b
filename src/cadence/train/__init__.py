"""The trainer, its loop, modes, batch index and checkpoints."""

from cadence.train.batch_index import BatchIndex
from cadence.train.checkpoint import load_checkpoint, save_checkpoint
from cadence.train.mode import Mode
from cadence.train.trainer import Trainer

__all__ = ["BatchIndex", "Mode", "Trainer", "load_checkpoint", "save_checkpoint"]
