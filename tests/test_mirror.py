"""`gitreg mirror`: a verifying mirror served as dumb HTTP by `python3 -m http.server`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.git_server import git
from tests.site_registry import SiteWorld, tree_listing


@pytest.fixture
def static_http(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``python3 -m http.server`` on 127.0.0.1 serving a fresh directory: (dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
         "--directory", str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"port (\d+)", line)
        assert match, line
        yield root, f"http://127.0.0.1:{match.group(1)}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _mirror_sync(world: SiteWorld, mirror: Path) -> tuple[int, dict[str, object], str]:
    done = world.run_cli(["mirror", "sync", mirror, "--json"])
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.mark.slow
def test_site_syncs_from_a_dumb_http_mirror_and_a_forgery_changes_nothing(
        world: SiteWorld, static_http: tuple[Path, str]) -> None:
    [list_one], [image], _ = world.on_two_replicas("One")
    www, base = static_http
    mirror = www / "test.git"
    world.cli("mirror", "init", mirror, "--from", world.urls["a"], "--trust-root",
              world.fingerprint)
    code, report, _ = _mirror_sync(world, mirror)
    head = git("-C", world.servers["a"], "rev-parse", "main").stdout.strip()
    assert code == 0 and report["after"] == head, report
    assert [u["state"] for u in report["upstreams"]] == ["current"]  # type: ignore[index]
    assert (mirror / "info" / "refs").read_text().split()[0] == head

    site = world.site_config([f"{base}/test.git"])
    code, synced = world.sync(site)
    assert code == 0, synced
    assert synced["registries"][0]["target"] == head and synced["downloaded"] == [image]

    # An upstream serving a forged head: the mirror stays exactly as it was.
    forged_url = world.hookless_copy("forged", "a")
    work = world.root / "forger"
    git("clone", "--quiet", world.servers["forged"], work)
    (work / "imagelists" / f"{list_one}.json").write_text("{}\n")
    git("-C", work, "commit", "--quiet", "-am", "forged")
    git("-C", work, "push", "--quiet", world.servers["forged"], "main:main")
    forged = git("-C", world.servers["forged"], "rev-parse", "main").stdout.strip()
    world.cli("mirror", "init", mirror, "--from", world.urls["a"], "--from", forged_url,
              "--trust-root", world.fingerprint)
    refs_before = git("-C", mirror, "for-each-ref").stdout
    code, report, stderr = _mirror_sync(world, mirror)
    assert code == 1
    states = {u["url"]: u for u in report["upstreams"]}  # type: ignore[attr-defined]
    assert states[forged_url]["state"] == "invalid" and states[forged_url]["rule"]
    assert forged[:12] in stderr and report["after"] == head
    assert git("-C", mirror, "for-each-ref").stdout == refs_before
    assert forged not in (mirror / "info" / "refs").read_text()

    # New work reaches the site through the mirror; a second sync changes nothing.
    world.add_image(list_one, "one-b", b"one b\n" * 9)
    new_head = world.publish("bob adds one-b")
    world.push("a")
    world.cli("mirror", "init", mirror, "--from", world.urls["a"], "--trust-root",
              world.fingerprint)
    assert _mirror_sync(world, mirror)[1]["after"] == new_head
    listing = tree_listing(mirror)
    code, again, _ = _mirror_sync(world, mirror)
    assert code == 0 and again["advanced"] is False
    assert {k: v for k, v in tree_listing(mirror).items() if not k.startswith("gitreg/")} \
        == {k: v for k, v in listing.items() if not k.startswith("gitreg/")}
    code, synced = world.sync(site)
    assert code == 0 and synced["registries"][0]["target"] == new_head


def test_relative_upstreams_and_peers_are_kept_as_the_user_meant_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git resolves a relative remote against the repository it runs in: a path typed
    relative to the current directory is stored absolute (a URL or user@host:path as is)."""
    from gitreg.server.mirror import init_mirror, upstreams_of
    from gitreg.server.peers import configured_peers, store_peers

    monkeypatch.chdir(tmp_path)
    git("init", "--quiet", "--bare", "replica.git")
    given = ["a.git", "../b.git", "https://replica.example/r.git", "git@host:r.git"]
    init_mirror(Path("m.git"), given, "sha256:" + "ab" * 32)
    store_peers(tmp_path / "replica.git", given)
    expected = [str(tmp_path / "a.git"), str((tmp_path / "../b.git").absolute()), *given[2:]]
    assert upstreams_of(tmp_path / "m.git") == expected
    assert configured_peers(tmp_path / "replica.git") == expected
