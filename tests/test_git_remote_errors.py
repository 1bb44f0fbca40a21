"""A remote that cannot be had is said in gitreg's words, not curl's or git's.

Real ``git fetch`` runs against a closed port, a host name that cannot
resolve, a path with no repository and an HTTP server that answers 404: the
message names the remote and says what happened the way gitreg's own HTTP
transport says it (``cannot connect to HOST:PORT: connection refused``).
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from gitreg.errors import UnreachableError
from gitreg.gitstore.remote import fetch


@pytest.fixture
def local(tmp_path: Path) -> Path:
    path = tmp_path / "site.git"
    pygit2.init_repository(str(path), bare=True)
    return path


@pytest.fixture
def empty_web(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _message(local: Path, url: str) -> str:
    with pytest.raises(UnreachableError) as caught:
        fetch(local, url, name="r0")
    return caught.value.message


def test_a_closed_port_is_a_refused_connection(local: Path) -> None:
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/registry.git"
    assert _message(local, url) == (f"cannot fetch from remote {url}: cannot connect to "
                                    f"127.0.0.1:{port}: connection refused")


def test_a_host_that_does_not_resolve_is_named(local: Path) -> None:
    url = "http://registry.example.invalid/registry.git"
    assert _message(local, url) == (f"cannot fetch from remote {url}: cannot resolve host "
                                    "name registry.example.invalid")


def test_a_path_without_a_repository(local: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.git"
    assert _message(local, str(missing)) == (f"cannot fetch from remote {missing}: no git "
                                             f"repository at {missing}")


def test_an_http_404_is_no_repository_there(local: Path, empty_web: str) -> None:
    url = f"{empty_web}/registry.git"
    message = _message(local, url)
    assert message == f"cannot fetch from remote {url}: no git repository at {url}"
    assert "curl" not in message and "unable to access" not in message
    assert list(pygit2.Repository(str(local)).references) == []  # nothing fetched
