"""Partial files: what a data file or folder is built as, beside its final name, before it is renamed into place.

A file or folder under its final name is then always complete, whatever interrupts the
writing. A process that fails removes its own partial file; one killed outright (SIGKILL,
power loss) cannot, so :func:`partial_path` removes those of the same destination that no
process has touched for :data:`STALE_SECONDS` (a live transfer writes far more often, and a
stalled one times out within seconds), while the partial files of processes still at work
on it (other ranks) stay.
"""

from __future__ import annotations

import glob
import logging
import secrets
import shutil
import time
from pathlib import Path

logger = logging.getLogger(__name__)

STALE_SECONDS = 3600.0
"""A partial file untouched this long was left by a killed process."""


def partial_path(dest: Path) -> Path:
    """A fresh hidden name beside ``dest`` (``.<name>.<random>.part``) to build ``dest`` under.

    Partial files of ``dest`` left by killed processes are removed first.
    """
    cutoff = time.time() - STALE_SECONDS
    for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        try:
            if stale.lstat().st_mtime >= cutoff:
                continue
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        except FileNotFoundError:  # another process removed it first
            continue
        except OSError as error:  # not ours to remove (another user's, a read-only folder): leave it
            logger.warning("could not remove %s, left by a process killed while writing %s: %s",
                           stale, dest.name, error)
            continue
        logger.info("removed %s, left by a process killed while writing %s", stale, dest.name)
    return dest.parent / f".{dest.name}.{secrets.token_hex(4)}.part"
