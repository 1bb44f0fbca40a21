"""`gitreg policy heartbeat` and `gitreg server heartbeat` on real hooked repositories."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from gitreg.gitstore.store import RegistryStore
from gitreg.model.dates import format_date, parse_date
from gitreg.server.heartbeat import policy_at_main, read_heartbeat
from gitreg.signing.interface import NAMESPACE_HEARTBEAT
from gitreg.verify.context import VerifyContext
from gitreg.verify.heartbeat import statement_bytes, verify_heartbeat
from tests.fixtures.git_server import git
from tests.fixtures.ssh_keys import SSHKeyFiles
from tests.site_registry import SiteWorld

HEARTBEAT_REF = "refs/gitreg/heartbeat/a"


@pytest.fixture(scope="module")
def beacon(tmp_path_factory: pytest.TempPathFactory) -> SSHKeyFiles:
    """The replicas' heartbeat key (no endorser, no root: it signs heartbeats only)."""
    private = tmp_path_factory.mktemp("beacon") / "id_beacon"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "beacon", "-f",
                    str(private)], check=True, capture_output=True)
    return SSHKeyFiles("beacon", private, private.with_name("id_beacon.pub"))


def require_heartbeats(world: SiteWorld, key: SSHKeyFiles, max_age: str = "6h") -> None:
    """Publish a policy naming ``key`` as heartbeat key (the root signs it)."""
    world.cli("policy", "heartbeat", "--key", key.public, "--max-age", max_age)
    world.cli("policy", "sign", "--key", world.root_key.private)
    world.cli("publish", "--policy-only", "--key", world.root_key.private, "-m", "heartbeats")


def heartbeat(world: SiteWorld, server: str, key: SSHKeyFiles, *extra: str
              ) -> subprocess.CompletedProcess[str]:
    return world.run_cli(["server", "heartbeat", world.servers[server], "--key", key.private,
                          "--replica", server, *extra])


def plant(repository: Path, ref: str, statement: bytes, signature: bytes,
           when: datetime) -> None:
    """Write a heartbeat commit with plain git, as a forger with shell access would."""
    def blob(data: bytes) -> str:
        return subprocess.run(["git", "-C", str(repository), "hash-object", "-w", "--stdin"],
                              input=data, capture_output=True, check=True).stdout.decode().strip()

    listing = (f"100644 blob {blob(statement)}\theartbeat.json\n"
               f"100644 blob {blob(signature)}\theartbeat.json.sig\n")
    tree = subprocess.run(["git", "-C", str(repository), "mktree"], input=listing,
                          capture_output=True, text=True, check=True).stdout.strip()
    stamp = f"{int(when.timestamp())} +0000"
    env = {"GIT_AUTHOR_NAME": "m", "GIT_AUTHOR_EMAIL": "m@example.org",
           "GIT_COMMITTER_NAME": "m", "GIT_COMMITTER_EMAIL": "m@example.org",
           "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    commit = subprocess.run(["git", "-C", str(repository), "commit-tree", tree, "-m",
                             f"forged {format_date(when)}"], env={**os.environ, **env},
                            capture_output=True, text=True, check=True).stdout.strip()
    git("-C", repository, "update-ref", ref, commit)


def refs(path: Path) -> str:
    return git("-C", path, "for-each-ref").stdout


def test_policy_heartbeat_edits_the_draft_and_shows_in_the_policy(
        world: SiteWorld, beacon: SSHKeyFiles) -> None:
    world.cli("policy", "heartbeat", "--key", beacon.public, "--max-age", "6h")
    doc = json.loads(world.cli("policy", "show", "--json"))
    key_id = next(k for k, v in doc["signed"]["keys"].items()
                  if v.get("public_key", "").split()[:2] == beacon.public_line.split()[:2])
    assert doc["signed"]["heartbeat"] == {"keys": [key_id], "max_age": "6h"}
    done = world.run_cli(["policy", "heartbeat", "--max-age", "6 hours"], cwd=world.work)
    assert done.returncode == 2 and "not a duration" in done.stderr
    assert "Traceback" not in done.stderr
    world.cli("policy", "heartbeat", "--max-age", "2h")
    assert json.loads(world.cli("policy", "show", "--json"))["signed"]["heartbeat"][
        "max_age"] == "2h"
    world.cli("policy", "heartbeat", "--remove")
    assert "heartbeat" not in json.loads(world.cli("policy", "show", "--json"))["signed"]


def test_server_heartbeat_signs_main_into_its_ref(world: SiteWorld,
                                                  beacon: SSHKeyFiles) -> None:
    require_heartbeats(world, beacon)
    world.bare("a")
    done = heartbeat(world, "a", beacon, "--json")
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    main = git("-C", world.servers["a"], "rev-parse", "main").stdout.strip()
    assert written["main"] == main and written["ref"] == HEARTBEAT_REF
    assert git("-C", world.servers["a"], "rev-parse", HEARTBEAT_REF).stdout.strip() \
        == written["commit"]
    # Outside main: main's history does not contain it; git itself finds it sound.
    assert written["commit"] not in git("-C", world.servers["a"], "rev-list", "main").stdout
    git("-C", world.servers["a"], "fsck", "--strict", "--no-dangling")
    store = RegistryStore.open(world.servers["a"])
    statement, signature = read_heartbeat(store, written["commit"])
    _, policy = policy_at_main(store)
    beat = verify_heartbeat(statement, signature, policy,
                            VerifyContext.for_site(parse_date(written["time"])), source="t")
    assert (beat.commit, beat.replica, beat.registry) == (main, "a", policy.registry)

    # Again: the ref is replaced in place (one ref, one parentless commit).
    again = heartbeat(world, "a", beacon, "--json")
    assert again.returncode == 0, again.stderr
    assert refs(world.servers["a"]).count("refs/gitreg/heartbeat/") == 1
    assert git("-C", world.servers["a"], "rev-list", "--count",
               HEARTBEAT_REF).stdout.strip() == "1"


def test_server_heartbeat_refuses_keys_the_policy_does_not_name(
        world: SiteWorld, beacon: SSHKeyFiles) -> None:
    world.bare("a")
    before = refs(world.servers["a"])
    done = heartbeat(world, "a", beacon)
    assert done.returncode == 2 and "names no heartbeat keys" in done.stderr
    assert "gitreg policy heartbeat" in done.stderr
    require_heartbeats(world, beacon)
    world.push("a")
    before = refs(world.servers["a"])
    done = heartbeat(world, "a", world.endorser_key)
    assert done.returncode == 2 and "is not a heartbeat key" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    bad_name = world.run_cli(["server", "heartbeat", world.servers["a"], "--key",
                              beacon.private, "--replica", "../main"])
    assert bad_name.returncode == 2 and "replica name" in bad_name.stderr
    assert refs(world.servers["a"]) == before


def test_the_hook_refuses_pushed_heartbeats_and_keeps_accepting_main(
        world: SiteWorld, beacon: SSHKeyFiles) -> None:
    require_heartbeats(world, beacon)
    [list_one] = [world.new_list("One")]
    world.publish("a list")
    world.server("a")
    assert heartbeat(world, "a", beacon).returncode == 0
    held = refs(world.servers["a"])
    # A forged heartbeat pushed by anyone: refused, nothing changes.
    git("-C", world.work, "update-ref", "refs/gitreg/heartbeat/a", "HEAD")
    for spec in ("+refs/gitreg/heartbeat/a:refs/gitreg/heartbeat/a",
                 "refs/gitreg/heartbeat/a:refs/gitreg/heartbeat/evil"):
        pushed = subprocess.run(["git", "-C", str(world.work), "push", world.urls["a"], spec],
                                capture_output=True, text=True, check=False)
        assert pushed.returncode != 0
        assert "ref-not-allowed" in pushed.stderr, pushed.stderr
        assert "gitreg server heartbeat" in pushed.stderr
    assert refs(world.servers["a"]) == held
    # With the server's own heartbeat ref in place, pushes to main still pass the hook.
    world.add_image(list_one, "one-a", b"one a\n" * 9)
    head = world.publish("bob adds one-a")
    world.push("a")
    assert git("-C", world.servers["a"], "rev-parse", "main").stdout.strip() == head


def test_sync_peers_carries_the_newest_valid_heartbeat_of_each_replica(
        world: SiteWorld, beacon: SSHKeyFiles, ssh_mallory: SSHKeyFiles) -> None:
    from datetime import timedelta

    from gitreg.model.dates import utcnow
    from gitreg.server.heartbeat import write_heartbeat
    from gitreg.signing.ssh import SSHSigner

    require_heartbeats(world, beacon)
    world.server("a")
    world.bare("b")
    signer = SSHSigner.from_file(beacon.private)
    now = utcnow()

    def sync_b() -> dict[str, object]:
        done = world.run_cli(["server", "sync-peers", world.servers["b"], "--peer",
                              world.urls["a"], "--json"])
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def held(server: str, ref: str = HEARTBEAT_REF) -> str:
        return git("-C", world.servers[server], "rev-parse", ref).stdout.strip()

    write_heartbeat(world.servers["a"], signer, replica="a", now=now)
    assert [b["state"] for b in sync_b()["heartbeats"]] == ["carried"]  # type: ignore[union-attr]
    assert held("b") == held("a")
    # A newer one replaces it; an older (valid) one does not.
    write_heartbeat(world.servers["a"], signer, replica="a", now=now + timedelta(minutes=1))
    assert [b["state"] for b in sync_b()["heartbeats"]] == ["carried"]  # type: ignore[union-attr]
    newest = held("a")
    assert held("b") == newest
    write_heartbeat(world.servers["a"], signer, replica="a", now=now - timedelta(hours=1))
    assert [b["state"] for b in sync_b()["heartbeats"]] == ["older"]  # type: ignore[union-attr]
    assert held("b") == newest
    # A heartbeat by a key the policy does not name is reported and not kept.
    registry_id = json.loads((world.work / "gitreg.json").read_text())["registry_id"]
    main = git("-C", world.servers["a"], "rev-parse", "main").stdout.strip()
    statement = statement_bytes(registry=registry_id, replica="x", commit=main, time=now)
    plant(world.servers["a"], "refs/gitreg/heartbeat/x", statement,
           SSHSigner.from_file(ssh_mallory.private).sign(statement,
                                                         namespace=NAMESPACE_HEARTBEAT), now)
    report = sync_b()
    states = {b["ref"].rsplit("/", 1)[-1]: b for b in report["heartbeats"]}  # type: ignore[union-attr]
    assert states["x"]["state"] == "invalid" and states["x"]["rule"] == "heartbeat-key"
    names = git("-C", world.servers["b"], "for-each-ref", "--format=%(refname)").stdout.split()
    assert "refs/gitreg/heartbeat/x" not in names
    assert not [n for n in names if n.startswith("refs/gitreg/remotes/") and "/heartbeat/" in n]
