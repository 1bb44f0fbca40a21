"""An image conflict end to end: real hooked replicas over HTTP, real sites.

Bob pushes a new image U in list One to replica a; a site takes it. Carol,
from a clone of replica b that has not seen bob's push, puts a different
image under the same UUID U in list Two and pushes to b; b's hook accepts it.
The deterministic merge keeps both lists at their highest versions (no list
goes back at the site that held bob's version) and reports the conflict; no
site takes U from either list until an endorser drops it from one.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.git_server import git
from tests.site_registry import SiteWorld, sha512, tree_listing


def _blob(world: SiteWorld, replica: str, rev: str, list_uuid: str) -> str:
    return git("-C", world.servers[replica], "rev-parse",
               f"{rev}:imagelists/{list_uuid}.json").stdout.strip()


@pytest.mark.slow
def test_an_image_conflict_keeps_both_lists_and_no_site_takes_the_image(
        world: SiteWorld) -> None:
    (one, two), kept, config = world.on_two_replicas("One", "Two")
    assert world.sync(config)[0] == 0
    bob_bytes, carol_bytes = b"bob's image\n" * 9, b"carol's image\n" * 9
    shared = world.add_image(one, "shared-bob", bob_bytes)
    world.publish("bob adds the shared image")
    world.push("a")
    code, first = world.sync(config)
    assert code == 0 and first["downloaded"] == [shared], first
    bob_one = _blob(world, "a", "main", one)

    clone = world.clone("carol", "b")
    world.add_image(two, "shared-carol", carol_bytes, cwd=clone, uuid=shared)
    world.publish("carol adds an image under the same UUID", cwd=clone, key=world.second_key)
    world.push("b", cwd=clone)
    carol_two = _blob(world, "b", "main", two)

    code, report = world.sync(config)

    assert code == 0, report
    registry = report["registries"][0]
    assert registry["merged"] is True
    [found] = registry["equivocations"]
    assert found["reason"] == "image-conflict" and found["image"] == shared
    assert found["lists"] == sorted([one, two])
    heads = sorted(git("-C", world.servers[r], "rev-parse", "main").stdout.strip()
                   for r in ("a", "b"))
    assert found["commits"] == heads
    target = registry["target"]
    [conflict] = report["plan"]["conflicts"]
    assert shared in conflict and one in conflict and two in conflict
    assert [r["uuid"] for r in report["retired"]] == [shared] and report["downloaded"] == []
    assert "image conflict" in report["retired"][0]["reason"]
    cache = world.state_dir / "cache"
    assert sorted(p.name for p in cache.iterdir()) == sorted(kept)
    status = world.run_cli(["site", "status", "--config", config, "--json"])
    [recorded] = json.loads(status.stdout)["conflicts"]
    assert recorded["uuid"] == shared and recorded["registries"] == ["test"]
    text = world.run_cli(["site", "sync", "--config", config])
    assert "image conflict" in text.stderr and shared in text.stderr
    # The catalogue says so too: both rows are `conflict`, and hidden from a valid search.
    assert _statuses(world, config, shared) == {one: "conflict", two: "conflict"}
    valid = world.run_cli(["search", "--registry", config, "--json"])
    assert valid.returncode == 0 and shared not in valid.stdout

    # A fresh site with the remotes the other way round: the same commit, the same cache.
    other = world.site_config([world.urls["b"], world.urls["a"]], name="other")
    code, second = world.sync(other)
    assert code == 0 and second["registries"][0]["target"] == target
    assert sorted(second["downloaded"]) == sorted(kept)
    assert tree_listing(world.root / "other" / "state" / "cache") == tree_listing(cache)

    # The replicas converge on that commit; its tree holds both lists at their highest
    # version: list One did not go back at the site that held bob's version.
    for replica, peer in (("a", "b"), ("b", "a")):
        done = world.run_cli(["server", "sync-peers", world.servers[replica], "--peer",
                              world.urls[peer], "--json"])
        assert done.returncode == 0 and json.loads(done.stdout)["after"] == target, done.stderr
    assert _blob(world, "a", "main", one) == bob_one
    assert _blob(world, "a", "main", two) == carol_two

    # Bob's next version of One keeps its claim: the hook accepts it.
    git("-C", world.work, "pull", "--quiet", "--ff-only", world.urls["a"], "main")
    world.add_image(one, "one-c", b"one c\n" * 9)
    world.publish("bob adds another image")
    world.push("a")
    # Carol drops the image from Two: the claim left is taken, from bob's list.
    git("-C", clone, "pull", "--quiet", "--ff-only", world.urls["b"], "main")
    world.cli("image", "remove", two, shared, cwd=clone)
    world.publish("carol drops her claim", cwd=clone, key=world.second_key)
    world.push("b", cwd=clone)
    code, resolved = world.sync(config)
    assert code == 0, resolved
    assert shared in resolved["downloaded"] and resolved["plan"]["conflicts"] == []
    assert sha512((cache / shared).read_bytes()) == sha512(bob_bytes)
    status = world.run_cli(["site", "status", "--config", config, "--json"])
    assert json.loads(status.stdout)["conflicts"] == []
    assert _statuses(world, config, shared) == {one: "valid"}


def _statuses(world: SiteWorld, config: object, image: str) -> dict[str, str]:
    """List UUID -> the catalogue status of ``image`` in it (``gitreg search --all``)."""
    done = world.run_cli(["search", "--registry", config, "--all", "--json"])
    assert done.returncode == 0, done.stderr
    return {row["list"]: row["status"] for row in json.loads(done.stdout)["results"]
            if row["image"] == image}

