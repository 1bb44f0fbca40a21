"""Smart HTTP through `gitreg.server.http`: the real git client, real http-backend, hooks."""

from __future__ import annotations

import gzip
import http.client
import io
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gitreg.errors import UnreachableError, UsageError
from gitreg.gitstore import RegistryStore, fetch, push
from gitreg.server.http import GitHTTPServer, _dechunk
from gitreg.server.init import init_server
from tests.fixtures.git_server import (
    ACCEPT_ALL_HOOK,
    ServeRepository,
    git,
    make_bare_repository,
    make_registry,
    write_hook,
)

REJECTING_HOOK = """#!/bin/sh
while read old new ref; do
  echo "policy says no to $ref"
done
echo "second line of the verdict" >&2
exit 1
"""


def _workcopy(path: Path, files: dict[str, bytes]) -> Path:
    git("init", "--quiet", "--initial-branch=main", path)
    _commit(path, files, "first")
    return path


def _commit(path: Path, files: dict[str, bytes], message: str) -> str:
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        git("add", name, cwd=path)
    git("commit", "--quiet", "-m", message, cwd=path)
    return git("rev-parse", "HEAD", cwd=path).stdout.strip()


def _served_with_one_push(tmp_path: Path, serve: ServeRepository) -> tuple[Path, str, Path]:
    """A bare repository served over HTTP, and a working copy that pushed one commit to it."""
    bare = make_bare_repository(tmp_path / "registry.git")
    url = serve(bare)
    work = _workcopy(tmp_path / "work", {"gitreg.json": b"{}\n"})
    assert push(work, url, timeout=60).accepted
    return bare, url, work


def _head(bare: Path) -> str | None:
    return RegistryStore.open(bare).ref("refs/heads/main")


def test_clone_push_and_fetch_over_http(tmp_path, git_http_server):
    bare = make_bare_repository(tmp_path / "registry.git")
    url = git_http_server(bare)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/registry.git")

    work = _workcopy(tmp_path / "work", {"gitreg.json": b"{}\n"})
    result = push(work, url, timeout=60)
    assert result.accepted, result
    first = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert _head(bare) == first

    clone = tmp_path / "clone"
    git("clone", "--quiet", url, clone)
    assert (clone / "gitreg.json").read_bytes() == b"{}\n"

    second = _commit(work, {"imagelists/a.json": b"a"}, "second")
    assert push(work, url, timeout=60).summary == f"{first[:7]}..{second[:7]}"
    mirror = make_bare_repository(tmp_path / "mirror.git")
    fetched = fetch(mirror, url, name="replica-1", timeout=60)
    assert fetched.new == second and fetched.old is None
    git("pull", "--quiet", "--ff-only", cwd=clone)
    assert (clone / "imagelists" / "a.json").read_bytes() == b"a"


def test_a_push_over_one_mebibyte_arrives_chunked_and_intact(tmp_path):
    bare = make_bare_repository(tmp_path / "registry.git")
    server = GitHTTPServer(bare, log=None)
    server.start()
    try:
        payload = os.urandom(3 * 1024 * 1024)  # incompressible: the pack stays > 1 MiB
        work = _workcopy(tmp_path / "work", {"big.bin": payload})
        result = push(work, server.url, timeout=120)
        assert result.accepted, result
        assert server.chunked_requests >= 1
    finally:
        server.stop()
    raw = subprocess.run(["git", "-C", str(bare), "cat-file", "blob", "main:big.bin"],
                         capture_output=True, check=True).stdout
    assert raw == payload


def test_a_rejecting_pre_receive_hook_is_honoured_over_http(tmp_path, git_http_server):
    bare, url, work = _served_with_one_push(tmp_path, git_http_server)
    before = _head(bare)

    write_hook(bare, REJECTING_HOOK)
    attempted = _commit(work, {"gitreg.json": b"changed\n"}, "rejected change")
    result = push(work, url, timeout=60)
    assert not result.accepted
    assert "pre-receive hook declined" in result.summary
    assert "policy says no to refs/heads/main" in result.message
    assert "second line of the verdict" in result.message
    assert _head(bare) == before
    assert git("-C", bare, "cat-file", "-e", attempted, check=False).returncode != 0


def test_server_refuses_deletion_and_rewrite_over_http(tmp_path, git_http_server):
    source = make_registry(tmp_path / "source")
    bare = tmp_path / "registry.git"
    init_server(bare, source=source)
    # The verifier is not under test here: git's own receive checks are.
    write_hook(bare, ACCEPT_ALL_HOOK)
    url = git_http_server(bare)
    before = _head(bare)

    deleted = git("push", url, ":refs/heads/main", cwd=source, check=False)
    assert deleted.returncode != 0
    assert "deletion prohibited" in deleted.stderr
    assert _head(bare) == before

    git("commit", "--quiet", "--amend", "-m", "rewritten history", cwd=source)
    result = push(source, url, timeout=60, force=True)
    assert not result.accepted
    assert "non-fast-forward" in result.summary
    assert _head(bare) == before


def test_other_paths_and_repositories_are_not_served(tmp_path, git_http_server):
    bare = make_bare_repository(tmp_path / "registry.git")
    make_bare_repository(tmp_path / "secret.git")
    url = git_http_server(bare)
    base = url.rsplit("/", 1)[0]
    for path in ["/secret.git/info/refs?service=git-upload-pack",
                 "/registry.git/../secret.git/info/refs", "/"]:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + path, timeout=10)
        assert err.value.code == 404
    with urllib.request.urlopen(url + "/info/refs?service=git-upload-pack", timeout=10) as ok:
        assert ok.status == 200
        assert ok.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"


def test_gzip_request_bodies_reach_http_backend(tmp_path, git_http_server):
    bare, url, _ = _served_with_one_push(tmp_path, git_http_server)
    head = _head(bare)
    assert head is not None

    def pkt(line: str) -> bytes:
        return b"%04x%s" % (len(line) + 4, line.encode())

    request = pkt(f"want {head}\n") + b"0000" + pkt("done\n")
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("POST", parts.path + "/git-upload-pack", body=gzip.compress(request),
                       headers={"Content-Type": "application/x-git-upload-pack-request",
                                "Content-Encoding": "gzip"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 200
    assert b"PACK" in body


def test_dechunk_reads_extensions_and_trailers_and_refuses_broken_bodies():
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\nNEXT"
    stream = io.BytesIO(body)
    assert b"".join(_dechunk(stream)) == b"hello world"
    assert stream.read() == b"NEXT"  # the next request on the connection is untouched
    for broken in [b"5\r\nhel", b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n"]:
        with pytest.raises(ValueError):
            b"".join(_dechunk(io.BytesIO(broken)))


def test_serving_something_that_is_not_a_repository_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not a bare Git repository"):
        GitHTTPServer(tmp_path, log=None)


def test_fetch_from_a_stopped_server_is_unreachable(tmp_path):
    bare = make_bare_repository(tmp_path / "registry.git")
    server = GitHTTPServer(bare, log=None)
    url = server.url
    server.server_close()  # never served
    mirror = make_bare_repository(tmp_path / "mirror.git")
    with pytest.raises(UnreachableError, match=url.split("//", 1)[1]):
        fetch(mirror, url, name="down", timeout=30)


def test_gitreg_server_serve_prints_the_url_and_stops_on_sigterm(tmp_path):
    source = make_registry(tmp_path / "source")
    bare = tmp_path / "registry.git"
    init_server(bare, source=source)
    proc = subprocess.Popen([sys.executable, "-m", "gitreg", "server", "serve", str(bare),
                             "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/registry.git")
        listed = git("ls-remote", url, "refs/heads/main")
        assert listed.stdout.split()[0] == _head(bare)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    refused = git("ls-remote", url, check=False)
    assert refused.returncode != 0


def test_the_hook_installed_by_init_judges_pushes_over_http(tmp_path, git_http_server):
    source = make_registry(tmp_path / "source")
    bare = tmp_path / "registry.git"
    init_server(bare, source=source)
    url = git_http_server(bare)
    before = _head(bare)
    # An unsigned commit in a tree without a policy: gitreg's hook must refuse it.
    _commit(source, {"notes.txt": b"not a registry file\n"}, "unsigned")
    result = push(source, url, timeout=60)
    assert not result.accepted
    assert "pre-receive hook declined" in result.summary
    assert "gitreg: rejected" in result.message
    assert _head(bare) == before
