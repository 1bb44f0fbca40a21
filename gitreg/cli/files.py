"""Reading a user's input file and writing output files without half-writes."""

from __future__ import annotations

import os
from pathlib import Path

from gitreg.durable import write_atomic
from gitreg.errors import UnreachableError, UsageError

__all__ = ["read_input", "read_small", "write_atomic"]


def read_input(path: Path, *, max_size: int) -> tuple[bytes, int]:
    """Read a file named on the command line: (at most ``max_size + 1`` bytes, its size).

    A missing file or a directory is a usage error; a size over ``max_size``
    is for the caller to report (the size tells it by how much).
    """
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a file")
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            # One byte past the cap tells "too large" without reading it all.
            data = handle.read(max_size + 1)
    except OSError as exc:
        raise UnreachableError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return data, max(size, len(data))


def read_small(path: Path, *, what: str, max_size: int = 1 << 20) -> bytes:
    """Read a small input (a certificate, a key) whole; too large is a usage error."""
    data, size = read_input(path, max_size=max_size)
    if size > max_size:
        raise UsageError(f"{path}: {size} bytes is too large for {what}")
    return data
