"""Durable file writes: whole or not at all, and still there after a crash.

Every component that writes a file a reader may act on (a list draft, an
imported list, a cached image) goes through here, so "nothing half-written
when a run is interrupted" holds in one place.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from gitreg.errors import UnreachableError


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable: the directory entry itself must reach disk."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems (and tmpfs in containers) refuse fsync on directories.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename.

    Raises ``UnreachableError`` naming the path when the disk refuses.
    """
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UnreachableError(f"{path}: cannot write: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
        fsync_dir(directory)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UnreachableError(f"{path}: cannot write: {exc.strerror}") from exc
