"""The real data sets the tests read, fetched into the data directory with cadence's own verified downloads."""

from __future__ import annotations

from pathlib import Path

from cadence.data import ENV_VAR, MNIST, TINY_SHAKESPEARE_URL, DataFormatError, text_file_path

#: The files the data tests read, relative to the data directory (MNIST's gzip files, as downloaded).
REAL_DATA = (
    "mnist/train-images-idx3-ubyte.gz",
    "mnist/train-labels-idx1-ubyte.gz",
    "mnist/t10k-images-idx3-ubyte.gz",
    "mnist/t10k-labels-idx1-ubyte.gz",
    "tinyshakespeare/input.txt",
)


class RealDataMissing(Exception):
    """The real data sets are not in the data directory and could not be downloaded into it."""


def fetch_real_data(root: Path) -> None:
    """Download into ``root`` whatever of :data:`REAL_DATA` is missing, and check MNIST's files by structure.

    Downloads are cadence's own: MNIST from its mirrors and Tiny Shakespeare from its URL, each
    verified against its SHA-256. Files already present are validated by structure only (magic
    number, dims, counts), so a subset in the official format serves as well as the full sets.

    Raises:
        RealDataMissing: a file is still missing or is not valid; the message names ``root``,
            the files the tests need, ``CADENCE_DATA`` and every error met.
    """
    errors = []
    for train in (True, False):
        try:
            MNIST(root, train=train)
        except (OSError, DataFormatError) as error:
            errors.append(str(error))
    try:
        text_file_path(TINY_SHAKESPEARE_URL, data_dir=root)
    except OSError as error:
        errors.append(str(error))
    absent = [name for name in REAL_DATA if not (root / name).is_file()]
    if absent and not errors:  # MNIST read its uncompressed files: the tests open the gzip ones
        errors.append(f"not there: {', '.join(absent)} (MNIST's uncompressed files do not serve the tests)")
    if errors:
        files = "".join(f"\n  {name}" for name in REAL_DATA)
        reasons = "".join(f"\n- {error}" for error in errors)
        raise RealDataMissing(
            f"the tests need real data in the data directory {root} (${ENV_VAR}, else the user cache folder):"
            f"{files}\nFetching or reading it failed:{reasons}"
            f"\nSet {ENV_VAR} to a folder holding these files, or run once with network access so that they are "
            f"downloaded."
        )
