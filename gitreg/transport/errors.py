"""Errors of image downloads and document fetches.

Both branches of gitreg's hierarchy occur here: an image whose bytes differ
from its list (size or SHA-512) is *rejected*, and so is a document larger
than its cap; a server that is down, slow, or drops the connection leaves the
image *unreachable* for now, and the partial file is kept for a resume.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

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


# --- what a failed connection was, in words -------------------------------


def connection_failure(url: str, exc: BaseException) -> str:
    """Why ``url`` could not be reached, as a user reads it.

    ``cannot connect to 127.0.0.1:1: connection refused`` rather than the
    text of requests/urllib3 (``HTTPConnectionPool(...): Max retries
    exceeded ... NewConnectionError(...)``): the cause is found in the chain
    of wrapped exceptions, which keeps the operating system's own error.
    """
    where = _host_port(url)
    cause = _root_cause(exc)
    if isinstance(cause, socket.gaierror):
        host = where.rsplit(":", 1)[0]
        return f"cannot resolve host name {host}: {_os_text(cause)}"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (f"TLS verification failed for {where}: "
                f"{cause.verify_message or cause.reason or _os_text(cause)}")
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake with {where} failed: {cause.reason or _os_text(cause)}"
    if isinstance(cause, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused"
    if isinstance(cause, TimeoutError) or type(cause).__name__.endswith("TimeoutError"):
        return f"cannot connect to {where}: timed out"
    if isinstance(cause, ConnectionResetError):
        return f"connection to {where} reset by the server"
    if isinstance(cause, OSError) and cause.strerror:
        return f"cannot connect to {where}: {_os_text(cause)}"
    return f"cannot connect to {where}: {type(cause).__name__}"


def connection_lost(url: str, exc: BaseException) -> str:
    """A transfer cut short, in words (the OS error if there is one)."""
    cause = _root_cause(exc)
    detail = f": {_os_text(cause)}" if isinstance(cause, OSError) and cause.strerror else ""
    return f"connection to {_host_port(url)} lost before the end of the body{detail}"


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if parts.scheme.lower() == "https" else 80
    host = parts.hostname or "?"
    return f"{host}:{port or default}"


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost OS-level error in ``exc``'s chain (``__cause__``, ``reason``, args)."""
    seen: set[int] = set()
    found: BaseException = exc
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (socket.gaierror, ssl.SSLError, ConnectionError,
                                TimeoutError)):
            return current
        if isinstance(current, OSError) and current.errno is not None:
            found = current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None),
                  *current.args]
        todo.extend(x for x in linked if isinstance(x, BaseException))
    return found


def _os_text(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
