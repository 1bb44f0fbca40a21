"""Image downloads against a real HTTP(S) server on 127.0.0.1 and real files."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitreg.errors import RejectedError, UnreachableError, UsageError
from gitreg.transport.download import (
    DownloadError,
    DownloadInterrupted,
    DownloadTimeout,
    DownloadTooSlow,
    ImageHashMismatch,
    ImageSizeMismatch,
    download_image,
)

KIB = 1024
MIB = 1024 * KIB
CHUNK = 64 * KIB


def sha512(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


@pytest.fixture
def image() -> bytes:
    return os.urandom(3 * MIB + 123)


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "partial" / "img", tmp_path / "cache" / "img"


def fetch(url: str, paths: tuple[Path, Path], body: bytes, **kw):
    options = {"size": len(body), "sha512": sha512(body), "deadline": 20.0, "min_rate": 0.0,
               "chunk_size": CHUNK}
    options.update(kw)
    return download_image(url, paths[0], paths[1], **options)


def test_good_download_lands_verified_at_final_path(image_server, image, paths):
    url = image_server.serve("/good.img", image)
    seen: list[int] = []
    result = fetch(url, paths, image, progress=seen.append, min_rate=1000.0)
    partial, final = paths
    assert final.read_bytes() == image
    assert not partial.exists()
    assert result.sha512 == sha512(image)
    assert result.size == len(image)
    assert result.resumed_from == 0
    assert result.path == final
    assert seen[0] == 0 and seen[-1] == len(image)
    assert seen == sorted(seen)
    [hit] = image_server.hits("/good.img", at_least=1)
    assert hit.range is None and hit.status == 200


def test_resume_after_dropped_connection_uses_range(image_server, image, paths):
    cut = MIB + 1000
    url = image_server.serve("/drop.img", image, drop_after=cut)
    partial, final = paths
    with pytest.raises(DownloadInterrupted) as caught:
        fetch(url, paths, image)
    assert url in str(caught.value)
    assert isinstance(caught.value, UnreachableError)
    assert not final.exists()
    kept = partial.read_bytes()
    assert 0 < len(kept) <= cut
    assert image.startswith(kept)

    result = fetch(url, paths, image)
    assert result.resumed_from == len(kept)
    assert final.read_bytes() == image
    assert not partial.exists()
    hits = image_server.hits("/drop.img", at_least=2)
    assert [h.range for h in hits] == [None, f"bytes={len(kept)}-"]
    assert hits[1].status == 206
    assert hits[1].sent == len(image) - len(kept)


def test_server_ignoring_range_restarts_from_zero(image_server, image, paths):
    url = image_server.serve("/norange.img", image, ranges=False, drop_after=MIB)
    partial, final = paths
    with pytest.raises(DownloadInterrupted):
        fetch(url, paths, image)
    assert partial.stat().st_size > 0

    result = fetch(url, paths, image)
    assert result.resumed_from == 0
    assert final.read_bytes() == image
    hits = image_server.hits("/norange.img", at_least=2)
    assert hits[1].range is not None and hits[1].status == 200


def test_wrong_bytes_are_rejected_and_leave_nothing(image_server, image, paths):
    wrong = bytearray(image)
    wrong[len(wrong) // 2] ^= 0xFF
    url = image_server.serve("/wrong.img", bytes(wrong))
    with pytest.raises(ImageHashMismatch) as caught:
        fetch(url, paths, image)
    error = caught.value
    assert isinstance(error, RejectedError)
    assert error.expected == sha512(image)
    assert error.got == sha512(bytes(wrong))
    assert url in error.message and sha512(image) in error.message
    assert not paths[0].exists()
    assert not paths[1].exists()


def test_endless_stream_fails_after_the_size(image_server, paths):
    size = MIB
    url = image_server.serve("/endless.img", endless=True)
    with pytest.raises(ImageSizeMismatch) as caught:
        download_image(url, *paths, size=size, sha512="0" * 128, deadline=20.0, min_rate=0.0,
                       chunk_size=CHUNK)
    assert "more than" in caught.value.got
    assert not paths[0].exists() and not paths[1].exists()
    [hit] = image_server.hits("/endless.img", at_least=1)
    # The server stops when the client hangs up; what it wrote beyond the
    # size is at most the socket buffers in between, far from its own cap.
    assert size < hit.sent <= size + 4 * MIB


def test_declared_wrong_length_is_rejected_before_the_body(image_server, image, paths):
    url = image_server.serve("/long.img", image + b"extra")
    with pytest.raises(ImageSizeMismatch) as caught:
        fetch(url, paths, image)
    assert caught.value.got == f"{len(image) + 5} bytes"
    assert not paths[0].exists() and not paths[1].exists()


def test_trickle_below_min_rate_times_out_and_keeps_partial(image_server, paths):
    body = os.urandom(64 * KIB)
    url = image_server.serve("/slow.img", body, rate=2000)
    started = time.monotonic()
    with pytest.raises(DownloadTooSlow) as caught:
        fetch(url, paths, body, min_rate=50_000.0, rate_window=0.3, deadline=20.0)
    assert time.monotonic() - started < 3
    assert isinstance(caught.value, UnreachableError)
    assert "below the minimum" in caught.value.message
    assert not paths[1].exists()
    assert body.startswith(paths[0].read_bytes())


def test_stalled_server_is_abandoned_within_the_window(image_server, paths):
    body = os.urandom(64 * KIB)
    url = image_server.serve("/stall.img", body, rate=0.2)  # one byte per 5 s
    started = time.monotonic()
    with pytest.raises(DownloadTooSlow):
        fetch(url, paths, body, min_rate=1000.0, rate_window=0.3, deadline=20.0)
    assert time.monotonic() - started < 2.5
    assert not paths[1].exists()


def test_deadline_stops_a_download_fast_enough_for_the_rate(image_server, paths):
    body = os.urandom(256 * KIB)
    url = image_server.serve("/long-haul.img", body, rate=40_000)
    started = time.monotonic()
    with pytest.raises(DownloadTimeout) as caught:
        fetch(url, paths, body, min_rate=1000.0, rate_window=0.3, deadline=0.8)
    elapsed = time.monotonic() - started
    assert not isinstance(caught.value, DownloadTooSlow)
    assert 0.7 < elapsed < 2.5
    assert "deadline" in caught.value.message
    assert not paths[1].exists()
    assert 0 < paths[0].stat().st_size < len(body)


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_names_url_and_status(image_server, image, paths, status):
    url = image_server.serve("/missing.img", status=status)
    with pytest.raises(DownloadError) as caught:
        fetch(url, paths, image)
    assert caught.value.status == status
    assert url in caught.value.message and str(status) in caught.value.message
    assert not paths[0].exists() and not paths[1].exists()


def test_connection_refused_is_unreachable(paths, image):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.img"
    with pytest.raises(DownloadError) as caught:
        fetch(url, paths, image)
    assert url in caught.value.message
    assert not paths[0].exists() and not paths[1].exists()


def test_corrupt_partial_is_replaced_by_a_full_download(image_server, image, paths):
    partial, final = paths
    partial.parent.mkdir(parents=True)
    partial.write_bytes(os.urandom(MIB))  # not a prefix of the image
    url = image_server.serve("/c.img", image)
    result = fetch(url, paths, image)
    assert result.resumed_from == 0
    assert final.read_bytes() == image
    hits = image_server.hits("/c.img", at_least=2)
    assert [h.range for h in hits] == [f"bytes={MIB}-", None]


def test_partial_longer_than_the_image_is_discarded(image_server, image, paths):
    partial, final = paths
    partial.parent.mkdir(parents=True)
    partial.write_bytes(image + b"tail")
    url = image_server.serve("/l.img", image)
    assert fetch(url, paths, image).resumed_from == 0
    assert final.read_bytes() == image
    assert [h.range for h in image_server.hits("/l.img", at_least=1)] == [None]


def test_complete_verified_partial_needs_no_request(image_server, image, paths):
    partial, final = paths
    partial.parent.mkdir(parents=True)
    partial.write_bytes(image)
    url = image_server.serve("/done.img", image)
    result = fetch(url, paths, image)
    assert result.resumed_from == len(image)
    assert final.read_bytes() == image
    assert image_server.hits("/done.img") == []


def test_range_not_satisfiable_with_other_size_is_rejected(image_server, image, paths):
    partial, final = paths
    partial.parent.mkdir(parents=True)
    partial.write_bytes(image[:MIB])
    url = image_server.serve("/short.img", image[:KIB])  # the server has a smaller file
    with pytest.raises(ImageSizeMismatch) as caught:
        fetch(url, paths, image)
    assert caught.value.got == f"{KIB} bytes"
    assert image_server.hits("/short.img", at_least=1)[0].status == 416
    assert not partial.exists() and not final.exists()


def test_file_url_download_and_resume(tmp_path, image, paths):
    source = tmp_path / "src" / "image.raw"
    source.parent.mkdir()
    source.write_bytes(image)
    partial, final = paths
    partial.parent.mkdir(parents=True)
    partial.write_bytes(image[:12345])
    result = fetch(source.as_uri(), paths, image)
    assert result.resumed_from == 12345
    assert final.read_bytes() == image
    assert not partial.exists()


def test_file_url_of_other_size_is_rejected(tmp_path, image, paths):
    source = tmp_path / "image.raw"
    source.write_bytes(image[:-1])
    with pytest.raises(ImageSizeMismatch):
        fetch(source.as_uri(), paths, image)
    assert not paths[0].exists() and not paths[1].exists()


def test_missing_file_url_is_unreachable(tmp_path, image, paths):
    url = (tmp_path / "nowhere.raw").as_uri()
    with pytest.raises(DownloadError) as caught:
        fetch(url, paths, image)
    assert url in caught.value.message
    assert not paths[0].exists()


def test_https_with_the_servers_ca_verifies(https_image_server, image, paths):
    url = https_image_server.serve("/tls.img", image)
    with requests.Session() as session:
        session.verify = str(https_image_server.ca_file)
        result = fetch(url, paths, image, session=session)
    assert result.path.read_bytes() == image


@pytest.mark.parametrize("verify", [True, False])
def test_https_untrusted_certificate_is_refused_even_with_verify_off(
        https_image_server, image, paths, verify):
    url = https_image_server.serve("/tls.img", image)
    with requests.Session() as session:
        session.verify = verify
        with pytest.raises(DownloadError) as caught:
            fetch(url, paths, image, session=session)
    assert "TLS verification failed" in caught.value.message
    assert not paths[0].exists() and not paths[1].exists()


def test_empty_image(image_server, paths):
    url = image_server.serve("/empty.img", b"")
    result = fetch(url, paths, b"")
    assert result.path.read_bytes() == b""


@pytest.mark.parametrize(("url", "options"), [
    ("ftp://example.org/x.img", {}),
    ("http://127.0.0.1:9/x.img", {"sha512": "xyz"}),
    ("http://127.0.0.1:9/x.img", {"deadline": 0.0}),
])
def test_bad_arguments_change_nothing(paths, url, options):
    with pytest.raises((UsageError, DownloadError)):
        fetch(url, paths, b"abc", **options)
    assert not paths[0].parent.exists() and not paths[1].parent.exists()


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=200 * KIB),
       chunk=st.sampled_from([4096, 5000, 64 * KIB]))
def test_resume_from_any_cut_point_verifies(image_server, tmp_path_factory, cut, chunk):
    body = bytes(range(256)) * (200 * KIB // 256) + b"tail"
    url = image_server.serve(f"/cut-{cut}-{chunk}.img", body, drop_after=cut)
    where = tmp_path_factory.mktemp("cut")
    paths = (where / "partial", where / "final")
    try:
        fetch(url, paths, body, chunk_size=chunk)
    except DownloadInterrupted:
        kept = paths[0].read_bytes()
        assert body.startswith(kept)
        result = fetch(url, paths, body, chunk_size=chunk)
        assert result.resumed_from == len(kept)
    assert paths[1].read_bytes() == body
    assert not paths[0].exists()
