"""Reading a user's input file and writing output files without half-writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gitreg.errors import UnreachableError, UsageError


def read_input(path: Path, *, max_size: int) -> bytes:
    """Read a file named on the command line; a missing one is a usage error."""
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a file")
    try:
        with path.open("rb") as handle:
            # One byte past the cap is enough to tell "too large" without reading it all.
            return handle.read(max_size + 1)
    except OSError as exc:
        raise UnreachableError(f"{path}: cannot read: {exc.strerror}") from exc


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename: never half-written."""
    directory = path.parent if str(path.parent) else Path()
    try:
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
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UnreachableError(f"{path}: cannot write: {exc.strerror}") from exc
