"""Replication that converges (issue 8): forks merged, sync-peers, the same commit everywhere.

Real hook-guarded replicas served over smart HTTP on 127.0.0.1, pushes with
the git CLI, sites run through the real ``gitreg`` command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.git_server import git
from tests.site_registry import SiteWorld


def _main(path: Path) -> str:
    return git("-C", path, "rev-parse", "main").stdout.strip()


def _sync_peers(world: SiteWorld, replica: str, *extra: str) -> tuple[int, dict[str, object]]:
    done = world.run_cli(["server", "sync-peers", world.servers[replica], "--json", *extra])
    return done.returncode, json.loads(done.stdout)


def _fork(world: SiteWorld, list_two: str) -> tuple[str, str]:
    """Carol pushes to replica b from a clone of b (older than a): a fork. Her image, head."""
    clone = world.clone("carol", "b")
    image = world.add_image(list_two, "two-b", b"two b\n" * 9, cwd=clone)
    head = world.publish("carol adds two-b", cwd=clone, key=world.second_key)
    world.push("b", cwd=clone)
    return image, head


@pytest.mark.slow
def test_fork_after_sync_is_merged_and_everyone_reaches_one_commit(world: SiteWorld) -> None:
    (list_one, list_two), images, site1 = world.on_two_replicas("One", "Two")
    a_url, b_url = world.urls["a"], world.urls["b"]
    assert world.sync(site1)[0] == 0
    one_b = world.add_image(list_one, "one-b", b"one b\n" * 9)
    a_head = world.publish("bob adds one-b")
    world.push("a")
    code, report = world.sync(site1)
    assert code == 0 and report["registries"][0]["target"] == a_head

    two_b, b_head = _fork(world, list_two)

    # Site 1 trusts a's head; b's head forked before it: merged, not a rollback.
    done = world.run_cli(["site", "sync", "--config", site1, "--json"])
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert "rollback" not in done.stderr and "does not descend" not in done.stderr
    registry = report["registries"][0]
    assert registry["merged"] is True and report["downloaded"] == [two_b]
    merge = registry["target"]
    forked = {r["url"]: r for r in registry["remotes"]}[b_url]
    assert forked["state"] == "forked" and forked["commit"] == b_head
    assert forked["fork_base"] is not None and "forked from the trusted history" \
        in forked["detail"]
    status = world.run_cli(["site", "status", "--config", site1]).stdout
    assert "forked from the trusted history" in status
    cache1 = {p.name for p in (world.state_dir / "cache").iterdir()}
    assert cache1 == {*images, one_b, two_b}

    # A fresh site with the remotes the other way round reaches the same commit.
    site2 = world.site_config([b_url, a_url], name="site2")
    code, report2 = world.sync(site2)
    assert code == 0, report2
    assert report2["registries"][0]["target"] == merge
    assert {p.name for p in (world.root / "site2" / "state" / "cache").iterdir()} == cache1

    # The replicas converge on that very commit.
    world.cli("server", "init", world.servers["a"], "--from", world.work, "--peer", b_url)
    world.cli("server", "init", world.servers["b"], "--from", world.work, "--peer", a_url)
    code, peers_a = _sync_peers(world, "a")
    assert code == 0, peers_a
    assert peers_a["merged"] is True and peers_a["after"] == merge
    assert [p["state"] for p in peers_a["peers"]] == ["forked"]  # type: ignore[index]
    code, peers_b = _sync_peers(world, "b")
    assert code == 0 and peers_b["after"] == merge and peers_b["merged"] is False
    [peer_a] = peers_b["peers"]  # type: ignore[misc]
    assert peer_a["state"] == "current" and "fast-forwarded" in peer_a["detail"]
    assert _main(world.servers["a"]) == _main(world.servers["b"]) == merge
    parents = git("-C", world.servers["a"], "log", "-1", "--format=%P", merge).stdout.split()
    assert sorted(parents) == parents == sorted([a_head, b_head])
    # Idempotent: nothing new, nothing moves.
    code, again = _sync_peers(world, "a")
    assert code == 0 and again["advanced"] is False and again["after"] == merge

    # New work on top of the converged main reaches both sites as a fast-forward.
    git("-C", world.work, "pull", "--quiet", "--ff-only", a_url, "main")
    one_c = world.add_image(list_one, "one-c", b"one c\n" * 9)
    new_head = world.publish("bob adds one-c")
    world.push("a")
    code, behind = _sync_peers(world, "a")
    assert code == 0 and behind["advanced"] is False
    assert [p["state"] for p in behind["peers"]] == ["stale"]  # type: ignore[index]
    done = world.run_cli(["server", "sync-peers", world.servers["b"]])
    assert done.returncode == 0 and done.stdout.strip() == new_head
    assert f"peer {a_url}: current" in done.stderr
    assert _main(world.servers["b"]) == new_head
    for site in (site1, site2):
        code, report = world.sync(site)
        assert code == 0, report
        registry = report["registries"][0]
        assert registry["target"] == new_head and registry["merged"] is False
        assert report["downloaded"] == [one_c]
        assert {r["state"] for r in registry["remotes"]} == {"current"}


@pytest.mark.slow
def test_site_killed_while_holding_its_own_merge_is_not_stuck(world: SiteWorld) -> None:
    (list_one, list_two), _, config = world.on_two_replicas("One", "Two")
    assert world.sync(config)[0] == 0
    world.diverge((list_one, "one-b", b"one b\n" * 9), (list_two, "two-b", b"two b\n" * 9))
    code, report = world.sync(config)
    assert code == 0 and report["registries"][0]["merged"] is True
    own_merge = report["registries"][0]["target"]

    # Replica a moves on; the next sync builds a new merge and is SIGKILLed mid-apply.
    one_c = world.add_image(list_one, "one-c", b"one c\n" * 9)
    world.publish("bob adds one-c")
    world.push("a")
    (config.parent / "kill-at").write_text("AvailablePrefix")
    assert world.run_cli(["site", "sync", "--config", config]).returncode == -9

    done = world.run_cli(["site", "sync", "--config", config, "--json"])
    assert done.returncode == 0, done.stderr
    assert "does not descend" not in done.stderr
    report = json.loads(done.stdout)
    registry = report["registries"][0]
    assert registry["trusted_before"] == own_merge and registry["target"] != own_merge
    assert one_c in {p.name for p in (world.state_dir / "cache").iterdir()}
    assert {r["state"] for r in registry["remotes"]} == {"forked"}


@pytest.mark.slow
def test_publish_push_merges_a_replica_that_moved(world: SiteWorld) -> None:
    [list_one], _, _ = world.on_two_replicas("One")
    assert world.cli("replica", "add", world.urls["a"], "--name", "a").strip() == "a"
    assert world.cli("replica", "add", world.urls["b"]).strip() == "replica-1"
    listed = world.cli("replica", "list")
    assert f"a\t{world.urls['a']}" in listed and f"replica-1\t{world.urls['b']}" in listed
    # Carol pushes to b only; bob's working copy does not know.
    clone = world.clone("carol", "b")
    world.add_image(list_one, "carol", b"carol\n" * 9, cwd=clone)
    list_two = world.new_list("Two", cwd=clone)
    world.add_image(list_two, "two-a", b"two a\n" * 9, cwd=clone)
    carol = world.publish("carol", cwd=clone, key=world.second_key)
    world.push("b", cwd=clone)
    list_three = world.new_list("Three")
    world.add_image(list_three, "three-a", b"three a\n" * 9)

    done = world.run_cli(["publish", "--key", world.endorser_key.private, "-m", "bob",
                          "--push"], cwd=world.work)

    assert done.returncode == 0, done.stderr
    assert "merged it deterministically" in done.stderr
    head = _main(world.work)
    assert _main(world.servers["a"]) == _main(world.servers["b"]) == head
    parents = git("-C", world.work, "log", "-1", "--format=%P", head).stdout.split()
    assert carol in parents and len(parents) == 2
    # The working tree now shows the merged state and no stray drafts.
    assert git("-C", world.work, "status", "--porcelain").stdout == ""
    assert (world.work / "imagelists" / f"{list_two}.json").exists()
    # What a site computes from the two heads is that very commit.
    code, report = world.sync(world.site_config([world.urls["b"], world.urls["a"]],
                                                name="fresh"))
    assert code == 0 and report["registries"][0]["target"] == head
    # That merge is the canonical state the replicas hold, so main does not give way
    # (docs/replication.md): publishing again moves nothing, new work builds on it.
    again = world.run_cli(["publish", "--key", world.endorser_key.private, "--push"],
                          cwd=world.work)
    assert again.returncode == 0 and "nothing to publish" in again.stderr, again.stderr
    assert "main was" not in again.stderr and _main(world.work) == head
    world.add_image(list_three, "three-b", b"three b\n" * 9)
    on_top = world.publish("bob again")
    assert git("-C", world.work, "log", "-1", "--format=%P", on_top).stdout.split() == [head]


@pytest.mark.slow
def test_publish_push_explains_a_moved_replica_that_is_invalid(world: SiteWorld) -> None:
    [list_one], _, _ = world.on_two_replicas("One")
    rogue = world.hookless_copy("rogue", "b")
    world.cli("replica", "add", rogue, "--name", "rogue")
    work = world.root / "forger"
    git("clone", "--quiet", world.servers["rogue"], work)
    (work / "imagelists" / f"{list_one}.json").write_text("{}\n")
    git("-C", work, "commit", "--quiet", "-am", "forged")
    git("-C", work, "push", "--quiet", world.servers["rogue"], "main:main")
    forged = _main(world.servers["rogue"])
    world.add_image(list_one, "one-b", b"one b\n" * 9)
    before = _main(world.work)

    done = world.run_cli(["publish", "--key", world.endorser_key.private, "-m", "bob",
                          "--push"], cwd=world.work)

    assert done.returncode == 1
    assert "not a valid successor" in done.stderr and forged[:12] in done.stderr
    # Published locally, never merged with the forgery; the rogue replica unchanged.
    assert _main(world.work) != before
    assert git("-C", world.work, "merge-base", "--is-ancestor", forged, "main",
               check=False).returncode != 0
    assert _main(world.servers["rogue"]) == forged


@pytest.mark.slow
def test_replicas_that_merged_different_views_converge_without_merging_merges(
        world: SiteWorld) -> None:
    world.on_two_replicas("One")
    c_url = world.server("c")
    a_url, b_url = world.urls["a"], world.urls["b"]
    # Three pushes from one base, one to each replica.
    for name, replica in (("carol", "b"), ("dave", "c")):
        world.push_new_list(name, replica, f"{name}'s", name, name.encode() * 9)
    bobs = world.new_list("Bob's")
    world.add_image(bobs, "bob", b"bob\n" * 9)
    world.publish("bob")
    world.push("a")

    # Replica c merges all three; replica a misses c (down, say) and merges two.
    code, on_c = _sync_peers(world, "c", "--peer", a_url, "--peer", b_url)
    assert code == 0 and on_c["merged"] is True and len(on_c["merge_parents"]) == 3
    code, on_a = _sync_peers(world, "a", "--peer", b_url)
    assert code == 0 and on_a["merged"] is True and len(on_a["merge_parents"]) == 2

    # b sees both merges: it takes c's, which holds everything, and merges nothing.
    code, on_b = _sync_peers(world, "b", "--peer", a_url, "--peer", c_url)
    assert code == 0, on_b
    assert on_b["after"] == on_c["after"] and on_b["merged"] is False
    states = {p["url"]: p["state"] for p in on_b["peers"]}  # type: ignore[attr-defined]
    assert states == {a_url: "stale", c_url: "current"}
    # a's own merge gives way to c's (all its parents are in it): no merge of merges.
    code, again = _sync_peers(world, "a", "--peer", b_url, "--peer", c_url)
    assert code == 0 and again["after"] == on_c["after"] and again["merged"] is False
    merges = [line for line in git("-C", world.servers["a"], "log", "--merges", "--format=%H",
                                   "main").stdout.split()]
    assert merges == [on_c["after"]]
    assert _main(world.servers["a"]) == _main(world.servers["b"]) == _main(world.servers["c"])
