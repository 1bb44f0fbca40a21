"""Measuring an image file: its size and SHA-512, streamed once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gitreg.errors import UnreachableError, UsageError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageDigest:
    """What an imagelist says about an image file (``hv:size``, ``sl:checksum:sha512``)."""

    size: int
    sha512: str


def measure(path: Path) -> ImageDigest:
    """Size and SHA-512 of ``path``, reading it once whatever its size."""
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if not path.is_file():
        raise UsageError(f"{path}: not a regular file")
    digest = hashlib.sha512()
    size = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise UnreachableError(f"{path}: cannot read: {exc.strerror}") from exc
    return ImageDigest(size=size, sha512=digest.hexdigest())
