"""Fetching a document for `gitreg import`: real HTTP(S) server, real files."""

from __future__ import annotations

import time

import pytest

from gitreg.errors import RejectedError, UnreachableError, UsageError
from gitreg.transport.fetch import (
    ContentTooLargeError,
    DownloadError,
    DownloadTimeout,
    fetch_bytes,
)

DOC = b'{"hv:imagelist": {"dc:identifier": "x"}}\n' * 100


def test_http_document_is_returned_whole(image_server):
    url = image_server.serve("/list.json", DOC)
    assert fetch_bytes(url, max_size=len(DOC)) == DOC


def test_declared_too_large_is_rejected_without_reading(image_server):
    url = image_server.serve("/big.json", DOC)
    with pytest.raises(ContentTooLargeError) as caught:
        fetch_bytes(url, max_size=len(DOC) - 1)
    assert isinstance(caught.value, RejectedError)
    assert caught.value.got == len(DOC)
    assert url in caught.value.message


def test_endless_body_is_cut_at_the_cap(image_server):
    url = image_server.serve("/endless.json", endless=True)
    with pytest.raises(ContentTooLargeError):
        fetch_bytes(url, max_size=100_000)
    [hit] = image_server.hits("/endless.json", at_least=1)
    assert hit.sent < 100_000 + 4 * 1024 * 1024


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_is_unreachable_with_status(image_server, status):
    url = image_server.serve("/gone.json", status=status)
    with pytest.raises(DownloadError) as caught:
        fetch_bytes(url, max_size=1000)
    assert isinstance(caught.value, UnreachableError)
    assert caught.value.status == status
    assert str(status) in caught.value.message and url in caught.value.message


def test_slow_server_hits_the_timeout(image_server):
    url = image_server.serve("/slow.json", DOC, rate=500)
    started = time.monotonic()
    with pytest.raises(DownloadTimeout):
        fetch_bytes(url, max_size=len(DOC), timeout=0.5)
    assert time.monotonic() - started < 3


def test_local_path_and_file_url(tmp_path):
    path = tmp_path / "list.json"
    path.write_bytes(DOC)
    assert fetch_bytes(str(path), max_size=len(DOC)) == DOC
    assert fetch_bytes(path.as_uri(), max_size=len(DOC)) == DOC


def test_local_file_too_large_is_rejected(tmp_path):
    path = tmp_path / "list.json"
    path.write_bytes(DOC)
    with pytest.raises(ContentTooLargeError) as caught:
        fetch_bytes(str(path), max_size=10)
    assert str(path) in caught.value.message
    assert path.read_bytes() == DOC


def test_missing_local_file_is_unreachable(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(DownloadError) as caught:
        fetch_bytes(str(missing), max_size=10)
    assert str(missing) in caught.value.message


def test_https_needs_a_trusted_ca(https_image_server, monkeypatch):
    url = https_image_server.serve("/list.json", DOC)
    with pytest.raises(DownloadError) as caught:
        fetch_bytes(url, max_size=len(DOC))
    assert "TLS verification failed" in caught.value.message
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(https_image_server.ca_file))
    assert fetch_bytes(url, max_size=len(DOC)) == DOC


def test_unsupported_scheme_is_a_usage_error():
    with pytest.raises(UsageError):
        fetch_bytes("ftp://example.org/list.json", max_size=10)
