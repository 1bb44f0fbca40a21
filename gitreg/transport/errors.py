"""Errors of image downloads and document fetches.

Both branches of gitreg's hierarchy occur here: an image whose bytes differ
from its list (size or SHA-512) is *rejected*, and so is a document larger
than its cap; a server that is down, slow, or drops the connection leaves the
image *unreachable* for now, and the partial file is kept for a resume.
"""

from __future__ import annotations

from gitreg.errors import GitregError, RejectedError, UnreachableError


class DownloadError(UnreachableError):
    """The URL could not be had: connection, TLS, HTTP status or a dropped transfer."""

    def __init__(self, url: str, reason: str, *, status: int | None = None,
                 hint: str | None = None) -> None:
        self.url = url
        self.reason = reason
        self.status = status
        super().__init__(f"{url}: {reason}", hint=hint)


class DownloadInterrupted(DownloadError):  # noqa: N818 (names shared with the site code)
    """The connection broke before the whole body arrived; a resume can continue."""


class DownloadTimeout(DownloadError):  # noqa: N818 (names shared with the site code)
    """The per-image deadline passed before the download finished."""


class DownloadTooSlow(DownloadTimeout):
    """The average throughput over the rate window fell below the minimum."""


class ImageMismatch(RejectedError):  # noqa: N818 (names shared with the site code)
    """The served image is not the one the list endorses (size or SHA-512)."""

    what = "image"

    def __init__(self, url: str, *, expected: str, got: str, detail: str = "") -> None:
        self.url = url
        self.expected = expected
        self.got = got
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"{url}: {self.what} mismatch: expected {expected}, got {got}{extra}",
            hint="the server does not serve the endorsed image; "
                 "tell the list's endorser, do not fetch it from elsewhere",
        )


class ImageSizeMismatch(ImageMismatch):
    """The body is shorter or longer than ``hv:size``."""

    what = "size"


class ImageHashMismatch(ImageMismatch):
    """The body has the right size but not the endorsed SHA-512."""

    what = "SHA-512"


class ContentTooLargeError(RejectedError):
    """A fetched document exceeds the size cap of its kind."""

    def __init__(self, source: str, *, max_size: int, got: int | None = None) -> None:
        self.source = source
        self.max_size = max_size
        self.got = got
        got_text = f" (declared {got} bytes)" if got is not None else ""
        super().__init__(f"{source}: larger than the limit of {max_size} bytes{got_text}")


class LocalWriteError(GitregError):
    """The downloaded bytes could not be stored (disk full, permissions, ...)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"{path}: cannot write the download: {reason}")
