"""Safe extraction of tar archives (``.tar``, ``.tar.gz``, ``.tar.bz2``, ``.tar.xz``): regular files and folders only.

A tar member names its own path and type, so an untrusted archive can write anywhere the
process may (``/etc/...``, ``../../...``), plant a symbolic or hard link that a later member
writes through, or create device files and FIFOs. :func:`safe_extract` checks every member
before writing any, and admits only

- regular files and folders (no symbolic or hard links, character or block devices, FIFOs),
- relative paths that stay inside the destination (no leading ``/``, no ``..`` component).

Then it writes the members one by one with its own ``open``: the archive's permission bits,
owners and times are not applied, so no member comes out set-uid or read-only.
"""

from __future__ import annotations

import gzip
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from cadence.data.idx import DataFormatError

__all__ = ["UnsafeArchiveError", "safe_extract"]

_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}
"""Member types refused by name; any other type that is neither a file nor a folder is refused too."""


class UnsafeArchiveError(DataFormatError):
    """An archive member that :func:`safe_extract` refuses: an unsafe path or a type other than file or folder.

    ``path`` is the archive, ``member`` the refused member's name; the message names both and
    says what is wrong. Nothing of the archive has been written when it is raised.
    """

    def __init__(self, archive: str | Path, member: str, problem: str) -> None:
        self.member = member
        super().__init__(
            archive,
            f"member {member!r} {problem}: refused, nothing was extracted "
            "(an archive may hold only regular files and folders, at relative paths inside the destination)",
        )


def _check(archive: Path, member: tarfile.TarInfo, dest: Path) -> Path:
    """Where ``member`` goes under ``dest``, or :class:`UnsafeArchiveError` if it may not be extracted."""
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute():
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(archive, name, "has a '..' component, which would lead out of the destination")
    if not (member.isreg() or member.isdir()):
        kind = _KINDS.get(member.type, f"of tar type {member.type!r}")
        link = f" to {member.linkname!r}" if member.issym() or member.islnk() else ""
        raise UnsafeArchiveError(archive, name, f"is {kind}{link}, neither a regular file nor a folder")
    target = (dest / path).resolve()
    if not target.is_relative_to(dest):
        raise UnsafeArchiveError(archive, name, f"resolves to {target}, outside {dest}")
    return target


def safe_extract(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract the tar archive ``archive`` into the folder ``dest``, refusing anything but plain files and folders.

    Every member is checked first (see the module's docstring); only if all pass are they
    written, member by member, to ``dest/<member name>`` (folders created as needed, existing
    files of the same names replaced).

    Args:
        archive: the tar file, compressed or not (the compression is detected).
        dest: the folder to extract into; created if missing.

    Returns:
        The paths of the regular files written, in archive order.

    Raises:
        UnsafeArchiveError: a member has an absolute path or a ``..`` component, or is a link,
            a device or a FIFO; the message names the archive and the member.
        DataFormatError: the file is not a readable tar archive, or is truncated.
        FileNotFoundError: the archive does not exist.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [(member, _check(archive, member, dest)) for member in tar.getmembers()]
            written = []
            for member, target in members:
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None, "extractfile gives a file object for every regular member"
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                written.append(target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataFormatError(archive, f"not a readable tar archive: {type(error).__name__}: {error}") from error
    return written
