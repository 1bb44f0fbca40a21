"""Fetch one small document (an imagelist to import) from a URL or a local path.

Never more than ``max_size`` bytes are read, whatever the server declares or
the file system says, and TLS is always verified.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
import urllib3

from gitreg.errors import UsageError
from gitreg.transport.errors import (
    ContentTooLargeError,
    DownloadError,
    DownloadTimeout,
    connection_failure,
    connection_lost,
)

__all__ = ["ContentTooLargeError", "DownloadError", "DownloadTimeout", "fetch_bytes"]

_PIECE = 64 * 1024


def fetch_bytes(url_or_path: str, *, max_size: int, timeout: float = 30) -> bytes:
    """Return the content of an ``http(s)://`` or ``file://`` URL, or of a local path.

    ``timeout`` bounds the whole fetch in seconds. Raises
    ``ContentTooLargeError`` beyond ``max_size`` bytes, ``DownloadError``
    (or ``DownloadTimeout``) when the document cannot be had, ``UsageError``
    for a scheme gitreg does not fetch from.
    """
    if max_size < 0 or timeout <= 0:
        raise UsageError(f"{url_or_path}: max_size must not be negative and timeout must be "
                         f"positive (got {max_size}, {timeout})")
    parts = urlsplit(url_or_path)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_http(url_or_path, max_size, timeout)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"{url_or_path}: file URLs must name a local file (no host)")
        return _read_file(url_or_path, Path(url2pathname(parts.path)), max_size)
    # One letter is a Windows drive, not a scheme.
    if scheme and len(scheme) > 1:
        raise UsageError(f"{url_or_path}: unsupported URL scheme {scheme!r} "
                         "(use http, https, file or a local path)")
    return _read_file(url_or_path, Path(url_or_path), max_size)


def _fetch_http(url: str, max_size: int, timeout: float) -> bytes:
    give_up = time.monotonic() + timeout
    try:
        # verify=True also when a caller's environment says otherwise;
        # REQUESTS_CA_BUNDLE may still name the CAs to trust.
        # identity: the cap then counts wire bytes, and no compression bomb is unpacked.
        response = requests.get(url, stream=True, timeout=(timeout, timeout), verify=True,
                                headers={"Accept-Encoding": "identity"})
    except requests.exceptions.Timeout as exc:
        raise DownloadTimeout(url, f"no answer within {timeout:g} s") from exc
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
            OSError) as exc:
        # TLS failures too: connection_failure says which.
        raise DownloadError(url, connection_failure(url, exc)) from exc
    with response:
        if response.status_code != 200:
            reason = f" {response.reason}" if response.reason else ""
            raise DownloadError(url, f"HTTP {response.status_code}{reason}",
                                status=response.status_code)
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > max_size:
            raise ContentTooLargeError(url, max_size=max_size, got=int(declared))
        body = bytearray()
        raw = response.raw
        # A timer cuts a stalled read at the deadline: shutting the socket
        # down wakes the blocked read.
        timer = threading.Timer(max(0.0, give_up - time.monotonic()), _shutdown, (raw,))
        timer.start()
        try:
            while True:
                # Decoded pieces: a compressed body is capped after decompression.
                piece = raw.read1(_PIECE, decode_content=True)
                if time.monotonic() >= give_up:
                    raise DownloadTimeout(url, f"not complete within {timeout:g} s")
                if not piece:
                    break
                body += piece
                if len(body) > max_size:
                    raise ContentTooLargeError(url, max_size=max_size)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
                OSError) as exc:
            if time.monotonic() >= give_up:
                raise DownloadTimeout(url, f"not complete within {timeout:g} s") from exc
            raise DownloadError(url, connection_lost(url, exc)) from exc
        finally:
            timer.cancel()
    return bytes(body)


def _shutdown(raw: urllib3.response.BaseHTTPResponse) -> None:
    with contextlib.suppress(ValueError, RuntimeError, OSError):
        raw.shutdown()


def _read_file(source: str, path: Path, max_size: int) -> bytes:
    try:
        with path.open("rb") as reader:
            info = os.fstat(reader.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > max_size:
                raise ContentTooLargeError(source, max_size=max_size, got=info.st_size)
            data = reader.read(max_size + 1)
    except OSError as exc:
        raise DownloadError(source, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_size:
        raise ContentTooLargeError(source, max_size=max_size)
    return data
