"""Smart-HTTP Git server for one registry repository: ``git http-backend`` as CGI.

Push and fetch both go through git's own http-backend, so receive-pack runs
the repository's hooks (gitreg's pre-receive) and honours its receive.*
configuration exactly as any Git server would. This module only speaks
HTTP/1.1: it de-chunks request bodies (git sends ``Transfer-Encoding:
chunked`` for pushes over ``http.postBuffer``, 1 MiB), passes gzip request
bodies through for http-backend to inflate, and streams the CGI response.

The served URL is ``http://HOST:PORT/<directory name>`` (``.../registry.git``).

Alternative without HTTP: ``git daemon --base-path=DIR --export-all
--enable=receive-pack DIR`` serves the same repository over ``git://``; the
hooks run there too, but git:// has no authentication, so keep it on a
trusted network or behind a tunnel.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import quote, unquote

from gitreg.errors import UsageError
from gitreg.gitstore.command import git_environment

_COPY_SIZE = 64 * 1024
_MAX_CGI_HEADER = 64 * 1024
_MAX_CHUNK_LINE = 1024
# Idle limit on a client socket; a push's hook runs while we wait on the
# CGI process, not on the socket, so this does not cut long verifications.
_SOCKET_TIMEOUT = 120.0

Log = Callable[[str], None]


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...
    def readline(self, size: int = ..., /) -> bytes: ...


def _stderr_log(line: str) -> None:
    sys.stderr.write(line.rstrip("\n") + "\n")
    sys.stderr.flush()


class GitHTTPServer(ThreadingHTTPServer):
    """Serves one bare repository over smart HTTP until ``shutdown()``."""

    daemon_threads = True

    def __init__(self, repo_path: Path, host: str = "127.0.0.1", port: int = 0, *,
                 log: Log | None = _stderr_log) -> None:
        repo_path = repo_path.expanduser().resolve()
        if not (repo_path / "HEAD").is_file() or not (repo_path / "objects").is_dir():
            raise UsageError(f"{repo_path}: not a bare Git repository",
                             hint="create one with `gitreg server init PATH.git --from DIR`")
        self.repo_path = repo_path
        self.log = log
        self._counter_lock = threading.Lock()
        # Requests whose body arrived chunked (a large push), for operators and tests.
        self.chunked_requests = 0
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host, port), _GitRequestHandler)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc}") from exc

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        if host in {"0.0.0.0", "::"}:  # noqa: S104 - naming the wildcard, not binding it
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/{quote(self.repo_path.name)}"

    def get_request(self) -> tuple[socket.socket, object]:
        conn, address = super().get_request()
        # Git's protocol is many small writes and reads; Nagle adds 40 ms stalls.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address

    def count_chunked(self) -> None:
        with self._counter_lock:
            self.chunked_requests += 1

    def start(self) -> threading.Thread:
        """Serve from a background thread (tests, embedding); stop with ``stop()``."""
        # A short poll so that stop() returns quickly.
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"git-http-{self.port}", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def serve(repo_path: Path, host: str = "127.0.0.1", port: int = 0,
          ready: Callable[[int], None] | None = None, *, log: Log | None = _stderr_log) -> None:
    """Serve ``repo_path`` over smart HTTP until interrupted (SIGINT, or SIGTERM made one).

    ``ready`` is called with the bound port once the socket listens (port 0
    picks a free one).
    """
    server = GitHTTPServer(repo_path, host, port, log=log)
    try:
        if ready is not None:
            ready(server.port)
        server.serve_forever()
    finally:
        server.server_close()


def _dechunk(rfile: _Readable) -> Iterator[bytes]:
    """The payload of an HTTP/1.1 chunked body (RFC 9112 section 7.1)."""
    while True:
        line = rfile.readline(_MAX_CHUNK_LINE)
        if not line.endswith(b"\n"):
            raise ValueError("truncated or overlong chunk size line")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size < 0:
            raise ValueError("negative chunk size")
        if size == 0:
            while rfile.readline(_MAX_CHUNK_LINE) not in {b"\r\n", b"\n", b""}:
                pass  # trailers carry nothing git needs
            return
        yield from _fixed(rfile, size, short="body ended inside a chunk")
        if rfile.readline(_MAX_CHUNK_LINE) not in {b"\r\n", b"\n"}:
            raise ValueError("chunk not followed by CRLF")


def _fixed(rfile: _Readable, length: int, *,
           short: str = "body shorter than Content-Length") -> Iterator[bytes]:
    """Exactly ``length`` bytes of the body (a chunk's or a Content-Length body's)."""
    remaining = length
    while remaining:
        data = rfile.read(min(remaining, _COPY_SIZE))
        if not data:
            raise ValueError(short)
        remaining -= len(data)
        yield data


class _GitRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gitreg-git-http"
    timeout = _SOCKET_TIMEOUT
    server: GitHTTPServer

    def do_GET(self) -> None:
        self._run_backend()

    def do_POST(self) -> None:
        self._run_backend()

    def log_message(self, format: str, *args: object) -> None:
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} - {format % args}")

    def _refuse(self, status: int, text: str) -> None:
        body = (text + "\n").encode("utf-8")
        # The request body (if any) was not read: the connection cannot be reused.
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _environment(self, path_info: str, query: str, chunked: bool) -> dict[str, str]:
        repo = self.server.repo_path
        cgi = {
            "GIT_PROJECT_ROOT": str(repo.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": self.server_version,
            "SERVER_NAME": str(self.server.server_address[0]),
            "SERVER_PORT": str(self.server.port),
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "REMOTE_ADDR": self.client_address[0],
        }
        # No authentication here: receive-pack is enabled by http.receivepack
        # (set by `gitreg server init`), so REMOTE_USER stays unset.
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                cgi["CONTENT_TYPE"] = value
            elif key == "CONTENT_LENGTH":
                if not chunked:
                    cgi["CONTENT_LENGTH"] = value
            elif key not in {"TRANSFER_ENCODING", "AUTHORIZATION", "PROXY", "CONNECTION"}:
                # gzip bodies pass through: http-backend reads HTTP_CONTENT_ENCODING.
                cgi[f"HTTP_{key}"] = value
        return git_environment(cgi)

    def _run_backend(self) -> None:
        raw_path, _, query = self.path.partition("?")
        path_info = unquote(raw_path)
        prefix = "/" + self.server.repo_path.name
        if (not (path_info == prefix or path_info.startswith(prefix + "/"))
                or "/.." in path_info or "\\" in path_info):
            self._refuse(404, "not found")
            return
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked:
            self.server.count_chunked()
            body: Iterator[bytes] = _dechunk(self.rfile)
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._refuse(400, "bad Content-Length")
                return
            if length < 0:
                self._refuse(400, "bad Content-Length")
                return
            body = _fixed(self.rfile, length)
        try:
            proc = subprocess.Popen(
                ["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self._environment(path_info, query, chunked),
                cwd=self.server.repo_path,
            )
        except OSError as exc:
            self._refuse(500, f"cannot run git http-backend: {exc}")
            return
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        feeder = threading.Thread(target=self._feed, args=(body, proc.stdin), daemon=True)
        feeder.start()
        drain = threading.Thread(target=self._log_stderr, args=(proc.stderr,), daemon=True)
        drain.start()
        try:
            self._relay(proc.stdout)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        finally:
            proc.stdout.close()
            feeder.join(timeout=_SOCKET_TIMEOUT)
            if proc.poll() is None and self.close_connection:
                proc.kill()
            proc.wait()
            drain.join(timeout=5)

    def _feed(self, body: Iterator[bytes], stdin: IO[bytes]) -> None:
        try:
            for data in body:
                stdin.write(data)
        except (ValueError, OSError) as exc:
            # A broken body or a backend that stopped reading: never reuse the socket.
            self.close_connection = True
            self.log_message("request body not delivered: %s", exc)
            # Whatever the backend did not read is still in the socket.
            for _ in body:
                pass
        finally:
            try:
                stdin.close()
            except OSError:
                self.close_connection = True

    def _log_stderr(self, stderr: IO[bytes]) -> None:
        for line in stderr:
            self.log_message("http-backend: %s", line.decode("utf-8", "replace").rstrip())
        stderr.close()

    def _relay(self, stdout: IO[bytes]) -> None:
        status, reason, headers = _cgi_headers(stdout)
        if status == 0:
            self._refuse(502, "git http-backend gave no valid response")
            return
        self.send_response(status, reason)
        sized = False
        for name, value in headers:
            if name.lower() in {"connection", "transfer-encoding"}:
                continue
            sized = sized or name.lower() == "content-length"
            self.send_header(name, value)
        if not sized:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        read = getattr(stdout, "read1", stdout.read)
        while True:
            data = read(_COPY_SIZE)
            if not data:
                break
            if sized:
                self.wfile.write(data)
            else:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        if not sized:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _cgi_headers(stdout: IO[bytes]) -> tuple[int, str, list[tuple[str, str]]]:
    """Status, reason and headers of a CGI response (status 0 if malformed)."""
    headers: list[tuple[str, str]] = []
    status, reason = 200, "OK"
    seen = 0
    while True:
        line = stdout.readline(_MAX_CGI_HEADER)
        seen += len(line)
        if not line or seen > _MAX_CGI_HEADER:
            return 0, "", []
        if line in {b"\r\n", b"\n"}:
            return status, reason, headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            return 0, "", []
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            code, _, text = value.partition(" ")
            if not code.isdigit():
                return 0, "", []
            status, reason = int(code), text or "OK"
        else:
            headers.append((name, value))
