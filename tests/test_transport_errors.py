"""Connection failures are said in words, not in requests/urllib3's texts.

Real sockets on 127.0.0.1: a port nobody listens on (refused), a listener
that never answers (timeout), and a name under ``.invalid`` (RFC 6761: it
never resolves). Users used to read ``HTTPConnectionPool(host='127.0.0.1',
port=1): Max retries exceeded ... NewConnectionError(...)``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitreg.transport.download import download_image
from gitreg.transport.errors import DownloadError, DownloadTimeout
from gitreg.transport.fetch import fetch_bytes
from tests.fixtures.env import RunCli

LIBRARY_TEXTS = ("HTTPConnectionPool", "HTTPSConnectionPool", "Max retries", "NewConnection",
                 "NameResolutionError", "urllib3", "object at 0x")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def _plain(text: str) -> None:
    for fragment in LIBRARY_TEXTS:
        assert fragment not in text, text


def test_refused_connection_names_host_and_port() -> None:
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/list.json"
    with pytest.raises(DownloadError) as caught:
        fetch_bytes(url, max_size=1000, timeout=10)
    assert caught.value.message == f"{url}: cannot connect to 127.0.0.1:{port}: connection refused"


def test_https_refused_connection_too() -> None:
    port = _closed_port()
    url = f"https://127.0.0.1:{port}/list.json"
    with pytest.raises(DownloadError) as caught:
        fetch_bytes(url, max_size=1000, timeout=10)
    assert caught.value.message == f"{url}: cannot connect to 127.0.0.1:{port}: connection refused"


def test_unresolvable_name_says_so() -> None:
    url = "http://nonexistent.invalid/list.json"
    with pytest.raises(DownloadError) as caught:
        fetch_bytes(url, max_size=1000, timeout=10)
    # The resolver's own words follow ("name or service not known", or a
    # temporary failure on a machine without DNS).
    assert caught.value.message.startswith(
        f"{url}: cannot resolve host name nonexistent.invalid: ")
    _plain(caught.value.message)


def test_silent_server_times_out_in_words(silent_server: int) -> None:
    url = f"http://127.0.0.1:{silent_server}/list.json"
    with pytest.raises(DownloadTimeout) as caught:
        fetch_bytes(url, max_size=1000, timeout=0.5)
    assert caught.value.message == f"{url}: no answer within 0.5 s"


def test_image_download_from_a_closed_port(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/image.qcow2"
    with pytest.raises(DownloadError) as caught:
        download_image(url, tmp_path / "partial", tmp_path / "final", size=10,
                       sha512="0" * 128, deadline=10, min_rate=0)
    assert caught.value.message == f"{url}: cannot connect to 127.0.0.1:{port}: connection refused"
    assert not (tmp_path / "final").exists()


def test_import_prints_one_plain_line(run_cli: RunCli, tmp_path: Path) -> None:
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/list.signed"
    done = run_cli(["import", url, "--ca-dir", tmp_path])
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"error: {url}: cannot connect to 127.0.0.1:{port}: connection refused"]
    dns = run_cli(["import", "http://nonexistent.invalid/list.signed", "--ca-dir", tmp_path])
    assert dns.returncode == 3
    assert dns.stderr.startswith("error: http://nonexistent.invalid/list.signed: cannot "
                                 "resolve host name nonexistent.invalid: ")
    _plain(dns.stderr)
