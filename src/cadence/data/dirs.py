"""Where data sets live: the ``--data-dir`` argument, else ``$CADENCE_DATA``, else a user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["ENV_VAR", "default_data_dir", "resolve_data_dir"]

ENV_VAR = "CADENCE_DATA"
"""The environment variable naming the data directory when no argument gives one."""


def default_data_dir() -> Path:
    """The fallback data directory: ``<user cache dir of cadence>/data`` (e.g. ``~/.cache/cadence/data``)."""
    return Path(platformdirs.user_cache_dir("cadence")) / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory to use, expanded (``~``) and made absolute; it need not exist.

    Precedence: ``data_dir`` if given (the ``--data-dir`` option), else the ``CADENCE_DATA``
    environment variable if set and non-empty, else :func:`default_data_dir`.

    Raises:
        ValueError: ``data_dir`` is an empty string (which would silently mean the current folder).
    """
    if data_dir is not None:
        if os.fspath(data_dir) == "":
            raise ValueError(
                "data_dir is an empty string: expected a folder path, or None to use $CADENCE_DATA or the cache folder"
            )
        path = Path(data_dir)
    elif os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
    else:
        path = default_data_dir()
    return path.expanduser().resolve()
