"""Image downloads: one streaming pass through SHA-512 under a hard size cap.

The body is read once. The calling thread receives it and writes it into the
partial file while a second thread hashes the same buffers (hashlib releases
the GIL), so a download runs at about the hash rate. A watchdog thread
enforces the per-image deadline and the minimum throughput by shutting the
socket down. Only a file whose size and SHA-512 both match is fsynced and
renamed to its final path; an interrupted transfer keeps its partial file for
an HTTP Range resume, a wrong one deletes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
import urllib3

from gitreg.durable import fsync_dir, fsync_file
from gitreg.errors import RejectedError, UnreachableError, UsageError
from gitreg.transport.errors import (
    DownloadError,
    DownloadInterrupted,
    DownloadTimeout,
    DownloadTooSlow,
    ImageHashMismatch,
    ImageMismatch,
    ImageSizeMismatch,
    LocalWriteError,
    connection_failure,
    connection_lost,
)

if TYPE_CHECKING:
    from _hashlib import HASH

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_RATE_WINDOW",
    "DownloadError",
    "DownloadInterrupted",
    "DownloadResult",
    "DownloadTimeout",
    "DownloadTooSlow",
    "ImageHashMismatch",
    "ImageMismatch",
    "ImageSizeMismatch",
    "LocalWriteError",
    "download_image",
]

MIB = 1 << 20
# The unit of writing to the partial file and of progress reports.
DEFAULT_CHUNK_SIZE = MIB
# The unit handed from the receiving thread to the hashing thread: fewer,
# larger hand-offs than 1 MiB ones made a 2 GiB download ~10% faster
# (docs/benchmarks.md). The pipeline holds _PIPELINE_DEPTH of them.
_HASH_BATCH = 4 * MIB
DEFAULT_RATE_WINDOW = 30.0
# Buffers in flight between receiving and hashing: enough to absorb jitter,
# few enough that memory stays at a few chunk sizes whatever the image size.
_PIPELINE_DEPTH = 4
# Every this many bytes, start writeback of what was written and drop it from
# the page cache: the final fsync then has little left to do, and a 2 GiB
# image does not evict everything else from memory.
_WRITEBACK_STEP = 32 * MIB

_SHA512_HEX = re.compile(r"[0-9a-f]{128}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*")
_SCHEMES = ("http", "https", "file")

Progress = Callable[[int], None]
_ReadInto = Callable[[memoryview], int]


@dataclass(frozen=True)
class DownloadResult:
    """A verified image at ``path``."""

    url: str
    path: Path
    size: int
    sha512: str
    resumed_from: int
    """Bytes of an earlier partial file that were reused (0: downloaded whole)."""
    seconds: float


def download_image(
    url: str,
    partial_path: Path,
    final_path: Path,
    *,
    size: int,
    sha512: str,
    deadline: float,
    min_rate: float,
    rate_window: float = DEFAULT_RATE_WINDOW,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
    session: requests.Session | None = None,
) -> DownloadResult:
    """Download ``url`` to ``final_path``, verified against ``size`` and ``sha512``.

    ``deadline`` bounds the whole call in seconds; ``min_rate`` (bytes/s,
    0 to disable) is the least average throughput over any ``rate_window``
    seconds. ``progress`` is called with the number of image bytes held so
    far (absolute, so a restart from zero is shown as such), after each
    ``chunk_size`` bytes written to ``partial_path``. ``session`` may
    carry a connection pool or a CA bundle; TLS verification is never off.

    Raises ``ImageSizeMismatch`` / ``ImageHashMismatch`` (partial deleted),
    ``DownloadError`` and its subclasses ``DownloadInterrupted``,
    ``DownloadTimeout``, ``DownloadTooSlow`` (partial kept for a resume), or
    ``LocalWriteError``. ``final_path`` is only ever a fully verified file.
    One call per ``partial_path`` at a time: the caller keeps workers apart.
    """
    expected = sha512.lower()
    _check_arguments(url, size=size, sha512=expected, deadline=deadline,
                     min_rate=min_rate, rate_window=rate_window, chunk_size=chunk_size)
    started = time.monotonic()
    limits = _Limits(url=url, deadline=deadline, deadline_at=started + deadline,
                     min_rate=min_rate, window=rate_window)
    job = _Job(url=url, partial=partial_path, size=size, limits=limits,
               chunk_size=chunk_size, progress=progress)
    try:
        partial_path.parent.mkdir(parents=True, exist_ok=True)
        final_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalWriteError(str(exc.filename or partial_path.parent), _reason(exc)) from exc

    own_session = session is None
    active = requests.Session() if session is None else session
    try:
        # A second pass happens only when a resumed partial file turns out to
        # have been the corrupt part: the server then gets one clean chance.
        for attempt in (1, 2):
            held, hasher = _rehash_partial(partial_path, size, chunk_size)
            if held == size and partial_path.is_file() and hasher.hexdigest() == expected:
                # An earlier run may have died before its fsync: sync before trusting.
                _sync_partial(partial_path)
                _install(partial_path, final_path)
                return DownloadResult(url, final_path, size, expected, held,
                                      time.monotonic() - started)
            if held == size:
                _discard(partial_path)
                held, hasher = 0, hashlib.sha512()
            try:
                start, digest = _transfer(job, active, held, hasher)
            except (RejectedError, LocalWriteError):
                _discard(partial_path)
                raise
            if digest != expected:
                _discard(partial_path)
                if start > 0 and attempt == 1:
                    continue
                raise ImageHashMismatch(url, expected=expected, got=digest)
            _install(partial_path, final_path)
            return DownloadResult(url, final_path, size, expected, start,
                                  time.monotonic() - started)
        raise AssertionError("unreachable: the second attempt always returns or raises")
    finally:
        if own_session:
            active.close()


def _check_arguments(url: str, *, size: int, sha512: str, deadline: float, min_rate: float,
                     rate_window: float, chunk_size: int) -> None:
    if urlsplit(url).scheme.lower() not in _SCHEMES:
        raise DownloadError(url, "unsupported URL scheme (http, https and file are supported)")
    if size < 0:
        raise UsageError(f"{url}: image size must not be negative, got {size}")
    if not _SHA512_HEX.fullmatch(sha512):
        raise UsageError(f"{url}: expected SHA-512 must be 128 hex digits, got {sha512!r}")
    if deadline <= 0 or rate_window <= 0 or min_rate < 0:
        raise UsageError(f"{url}: deadline and rate window must be positive, "
                         f"min_rate not negative (got {deadline}, {rate_window}, {min_rate})")
    if chunk_size < 4096:
        raise UsageError(f"{url}: chunk size must be at least 4096 bytes, got {chunk_size}")


# --- limits --------------------------------------------------------------


@dataclass(frozen=True)
class _Limits:
    url: str
    deadline: float
    deadline_at: float
    min_rate: float
    window: float

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    def timeout_error(self) -> DownloadTimeout:
        return DownloadTimeout(self.url, f"not finished within the deadline of {self.deadline:g} s",
                               hint="the partial file is kept; the next run resumes it")

    def slow_error(self, rate: float) -> DownloadTooSlow:
        return DownloadTooSlow(
            self.url,
            f"{rate:.0f} bytes/s over the last {self.window:g} s, "
            f"below the minimum of {self.min_rate:.0f} bytes/s",
            hint="the partial file is kept; the next run resumes it",
        )

    def stalled_error(self) -> DownloadTimeout:
        """No byte for a whole socket timeout: the deadline, or a rate of zero."""
        if self.remaining() <= 0 or self.min_rate <= 0:
            return self.timeout_error()
        return self.slow_error(0.0)

    def socket_timeout(self) -> float:
        remaining = self.remaining()
        if remaining <= 0:
            raise self.timeout_error()
        # Waiting a whole window for any byte already means a rate below the minimum.
        return min(remaining, self.window) if self.min_rate > 0 else remaining


class _Watchdog:
    """Samples the byte count; on a broken limit it records why and aborts the read.

    The reading thread cannot check limits while blocked in a read, so the
    verdict comes from here and ``abort`` (a socket shutdown) unblocks it.
    """

    def __init__(self, limits: _Limits, abort: Callable[[], None]) -> None:
        self.received = 0
        self.verdict: DownloadError | None = None
        self._limits = limits
        self._abort = abort
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._tick = max(0.005, min(0.25, min(limits.window, limits.deadline) / 10))
        self._thread = threading.Thread(target=self._run, name="gitreg-download-watchdog",
                                        daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        limits = self._limits
        samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        while not self._stopped.wait(self._tick):
            now = time.monotonic()
            received = self.received
            if now >= limits.deadline_at:
                self._fail(limits.timeout_error())
                return
            if limits.min_rate <= 0:
                continue
            samples.append((now, received))
            while len(samples) > 1 and samples[1][0] <= now - limits.window:
                samples.popleft()
            since, base = samples[0]
            span = now - since
            if span >= limits.window and received - base < limits.min_rate * span:
                self._fail(limits.slow_error((received - base) / span))
                return

    def _fail(self, error: DownloadError) -> None:
        with self._lock:
            if self._stopped.is_set():
                return
            self.verdict = error
            self._abort()


# --- writing and hashing -------------------------------------------------


class _HashingWriter:
    """Writes to the partial file while a second thread hashes the same buffers.

    Bytes are stored (written, counted in ``held``) a chunk at a time as they
    arrive, and handed to the hashing thread a whole buffer at a time.
    """

    def __init__(self, fd: int, path: Path, hasher: HASH, held: int, buffer_size: int) -> None:
        self.held = held
        self._fd = fd
        self._path = path
        self._hasher = hasher
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(_PIPELINE_DEPTH):
            self._free.put(bytearray(buffer_size))
        self._todo: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._advised = held
        self._thread = threading.Thread(target=self._hash_loop, name="gitreg-download-hash",
                                        daemon=True)
        self._thread.start()

    def take(self) -> bytearray:
        return self._free.get()

    def give_back(self, buf: bytearray) -> None:
        self._free.put(buf)

    def store(self, view: memoryview) -> None:
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            raise LocalWriteError(str(self._path), _reason(exc)) from exc
        self.held += done
        if self.held - self._advised >= _WRITEBACK_STEP:
            self._write_back()

    def hash_later(self, buf: bytearray, length: int) -> None:
        """Hash the first ``length`` bytes of ``buf``, then return it to the pool."""
        self._todo.put((buf, length))

    def _write_back(self) -> None:
        # Advise the previous step again (now written back, so it is dropped)
        # together with the new one (this starts its writeback). Only a hint.
        start = max(0, self._advised - _WRITEBACK_STEP)
        if hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                os.posix_fadvise(self._fd, start, self.held - start, os.POSIX_FADV_DONTNEED)
        self._advised = self.held

    def _hash_loop(self) -> None:
        while (item := self._todo.get()) is not None:
            buf, length = item
            with memoryview(buf) as whole, whole[:length] as view:
                self._hasher.update(view)
            self._free.put(buf)

    def finish(self) -> str:
        """Wait for the hash of everything handed over; sync the file to disk."""
        self.close()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise LocalWriteError(str(self._path), _reason(exc)) from exc
        return self._hasher.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()


def _pump(job: _Job, read_into: _ReadInto, writer: _HashingWriter, watchdog: _Watchdog) -> None:
    """Move the body into ``writer`` until it ends cleanly within the size.

    At most one byte beyond the expected size is read: enough to tell an
    over-long (or endless) body from a complete one.
    """
    limit = job.size - writer.held + 1
    got = 0
    deadline_at = job.limits.deadline_at
    while True:
        buf = writer.take()
        filled = stored = 0
        ended = False
        with memoryview(buf) as view:
            try:
                while filled < len(buf):
                    room = min(len(buf) - filled, limit - got - filled)
                    if room <= 0:
                        break
                    try:
                        n = read_into(view[filled:filled + room])
                    except UnreachableError as exc:
                        # A read the watchdog aborted fails; its verdict is the reason.
                        if watchdog.verdict is None:
                            raise
                        raise watchdog.verdict from exc
                    if watchdog.verdict is not None:
                        raise watchdog.verdict
                    if n == 0:
                        ended = True
                        break
                    filled += n
                    watchdog.received += n
                    if filled - stored >= job.chunk_size:
                        _store(job, writer, view[stored:filled])
                        stored = filled
                    if time.monotonic() >= deadline_at:
                        raise job.limits.timeout_error()
            except UnreachableError:
                # Keep every byte that arrived: the resume starts after them.
                keep = min(filled, limit - 1 - got)
                if keep > stored:
                    _store(job, writer, view[stored:keep])
                writer.give_back(buf)
                raise
            got += filled
            if got >= limit:
                writer.give_back(buf)
                raise ImageSizeMismatch(job.url, expected=f"{job.size} bytes",
                                        got=f"more than {job.size} bytes",
                                        detail="the body did not end at the endorsed size")
            if filled > stored:
                _store(job, writer, view[stored:filled])
        if filled:
            writer.hash_later(buf, filled)
        else:
            writer.give_back(buf)
        if ended:
            return


def _store(job: _Job, writer: _HashingWriter, view: memoryview) -> None:
    writer.store(view)
    if job.progress is not None:
        job.progress(writer.held)


# --- one transfer --------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    url: str
    partial: Path
    size: int
    limits: _Limits
    chunk_size: int
    progress: Progress | None


def _transfer(job: _Job, session: requests.Session, held: int, hasher: HASH) -> tuple[int, str]:
    """Fetch the rest of the image after ``held`` bytes; return (start offset, SHA-512).

    The partial file is created only once the source answered, and kept
    (synced) when the transfer fails for want of the server; the caller
    deletes it when the bytes are wrong.
    """
    if urlsplit(job.url).scheme.lower() == "file":
        return _transfer_file(job, held, hasher)
    return _transfer_http(job, session, held, hasher)


@contextlib.contextmanager
def _partial_file(job: _Job) -> Iterator[int]:
    try:
        fd = os.open(job.partial, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LocalWriteError(str(job.partial), _reason(exc)) from exc
    try:
        yield fd
    except UnreachableError:
        # Make what arrived durable, so a resume after a crash trusts no torn tail.
        with contextlib.suppress(OSError):
            os.fdatasync(fd)
        raise
    finally:
        os.close(fd)


def _run_writer(job: _Job, fd: int, held: int, hasher: HASH, *, read_into: _ReadInto,
                abort: Callable[[], None]) -> str:
    """Stream the body after ``held`` into the partial file; return its SHA-512."""
    try:
        os.ftruncate(fd, held)
        os.lseek(fd, held, os.SEEK_SET)
    except OSError as exc:
        raise LocalWriteError(str(job.partial), _reason(exc)) from exc
    if job.progress is not None:
        job.progress(held)
    # Buffers of _HASH_BATCH (or the whole rest of a smaller image) keep the
    # hand-offs to the hashing thread few; stores and progress stay per chunk.
    buffer_size = max(4096, min(max(job.chunk_size, _HASH_BATCH), job.size - held + 1))
    writer = _HashingWriter(fd, job.partial, hasher, held, buffer_size)
    try:
        with _Watchdog(job.limits, abort) as watchdog:
            _pump(job, read_into, writer, watchdog)
        digest = writer.finish()
    finally:
        writer.close()
    if writer.held < job.size:
        raise ImageSizeMismatch(job.url, expected=f"{job.size} bytes", got=f"{writer.held} bytes",
                                detail="the body ended early")
    return digest


def _transfer_file(job: _Job, held: int, hasher: HASH) -> tuple[int, str]:
    parts = urlsplit(job.url)
    if parts.netloc not in ("", "localhost"):
        raise DownloadError(job.url, "file URLs must name a local file (no host)")
    source = url2pathname(parts.path)
    try:
        reader = Path(source).open("rb", buffering=0)  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise DownloadError(job.url, f"cannot open {source}: {_reason(exc)}") from exc
    with reader:
        info = os.fstat(reader.fileno())
        regular = stat.S_ISREG(info.st_mode)
        if regular and info.st_size != job.size:
            raise ImageSizeMismatch(job.url, expected=f"{job.size} bytes",
                                    got=f"{info.st_size} bytes", detail="size of the file")
        if held and not regular:
            held, hasher = 0, hashlib.sha512()
        if held:
            reader.seek(held)

        def read_into(view: memoryview) -> int:
            try:
                return reader.readinto(view) or 0
            except OSError as exc:
                raise DownloadInterrupted(job.url, f"read failed: {_reason(exc)}") from exc

        with _partial_file(job) as fd:
            return held, _run_writer(job, fd, held, hasher, read_into=read_into,
                                     abort=lambda: None)


def _transfer_http(job: _Job, session: requests.Session, held: int,
                   hasher: HASH) -> tuple[int, str]:
    with _open_body(job, session, held) as (response, start):
        if start != held:
            held, hasher = start, hashlib.sha512()
        raw = response.raw

        def abort() -> None:
            # Shutting the read side down wakes the blocked read with EOF.
            try:
                raw.shutdown()
            except (ValueError, RuntimeError, OSError):
                response.close()

        def read_into(view: memoryview) -> int:
            try:
                data = raw.read1(len(view), decode_content=False)
            except urllib3.exceptions.ReadTimeoutError as exc:
                raise job.limits.stalled_error() from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise DownloadInterrupted(
                    job.url, connection_lost(job.url, exc),
                    hint="the partial file is kept; the next run resumes it",
                ) from exc
            n = len(data)
            view[:n] = data
            return n

        with _partial_file(job) as fd:
            return held, _run_writer(job, fd, held, hasher, read_into=read_into, abort=abort)


@contextlib.contextmanager
def _open_body(job: _Job, session: requests.Session,
               held: int) -> Iterator[tuple[requests.Response, int]]:
    """Yield the response whose body continues the image, and where it starts."""
    offset = held
    while True:
        response = _request(job, session, offset)
        try:
            start = _body_start(job, response, offset)
            if start is None:
                # The server cannot continue where the partial file ends:
                # fetch the whole image instead.
                response.close()
                offset = 0
                continue
            yield response, start
            return
        finally:
            response.close()


def _request(job: _Job, session: requests.Session, offset: int) -> requests.Response:
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    timeout = job.limits.socket_timeout()
    # A caller may name its own CA bundle, but can never switch verification off.
    verify: bool | str = session.verify if isinstance(session.verify, str) else True
    try:
        return session.get(job.url, headers=headers, stream=True, timeout=(timeout, timeout),
                           verify=verify, allow_redirects=True)
    except requests.exceptions.SSLError as exc:
        raise DownloadError(
            job.url, connection_failure(job.url, exc),
            hint="the server's certificate must be valid for its host name and signed by a "
                 "trusted CA; gitreg never downloads without verifying TLS",
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise DownloadTimeout(job.url, f"no answer within {timeout:.3g} s") from exc
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
            OSError) as exc:
        raise DownloadError(job.url, connection_failure(job.url, exc)) from exc


def _body_start(job: _Job, response: requests.Response, offset: int) -> int | None:
    """Where the body starts in the image; None if the request must be redone from 0."""
    status = response.status_code
    if status == 200:
        _check_declared_length(job, response, 0)
        return 0
    if offset and status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match is None:
            return None
        first, last, total = match.groups()
        if total != "*" and int(total) != job.size:
            raise _declared_size_mismatch(job, int(total))
        if int(first) != offset or int(last) != job.size - 1:
            return None
        _check_declared_length(job, response, offset)
        return offset
    if offset and status == 416:
        match = _UNSATISFIED_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match is not None and int(match.group(1)) != job.size:
            raise _declared_size_mismatch(job, int(match.group(1)))
        return None
    reason = f" {response.reason}" if response.reason else ""
    raise DownloadError(job.url, f"HTTP {status}{reason}", status=status)


def _check_declared_length(job: _Job, response: requests.Response, start: int) -> None:
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and start + int(declared) != job.size:
        raise _declared_size_mismatch(job, start + int(declared))


def _declared_size_mismatch(job: _Job, total: int) -> ImageSizeMismatch:
    return ImageSizeMismatch(job.url, expected=f"{job.size} bytes", got=f"{total} bytes",
                             detail="as declared by the server")


# --- the partial and the final file --------------------------------------


def _rehash_partial(path: Path, size: int, chunk_size: int) -> tuple[int, HASH]:
    """Hash what an earlier attempt left; a partial longer than the image is dropped."""
    hasher = hashlib.sha512()
    try:
        reader = path.open("rb", buffering=0)
    except FileNotFoundError:
        return 0, hasher
    except OSError as exc:
        raise LocalWriteError(str(path), _reason(exc)) from exc
    with reader:
        if os.fstat(reader.fileno()).st_size > size:
            _discard(path)
            return 0, hasher
        held = 0
        buf = bytearray(chunk_size)
        with memoryview(buf) as view:
            try:
                while n := reader.readinto(view):
                    hasher.update(view[:n])
                    held += n
            except OSError as exc:
                raise LocalWriteError(str(path), _reason(exc)) from exc
    return held, hasher


def _sync_partial(path: Path) -> None:
    try:
        fsync_file(path)
    except OSError as exc:
        raise LocalWriteError(str(path), _reason(exc)) from exc


def _install(partial: Path, final: Path) -> None:
    try:
        partial.replace(final)
        fsync_dir(final.parent)
        if partial.parent != final.parent:
            fsync_dir(partial.parent)
    except OSError as exc:
        raise LocalWriteError(str(final), _reason(exc)) from exc


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)

