"""Several registries at one site, the local repositories and dry runs, end to end.

Real registries built with the endorser CLI, hook-guarded smart-HTTP
replicas, a real image server and a handler script (tests/site_registry.py).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.env import RunCli
from tests.fixtures.git_server import ServeRepository, git
from tests.fixtures.image_server import ImageServer
from tests.fixtures.ssh_keys import SSHKeyFiles
from tests.site_registry import SiteWorld, sha512, tree_listing, write_site

SHARED = "5eed5eed-0000-4000-8000-00000000c0de"


def _site(root: Path, registries: list[dict[str, Any]], *, conflicts: str = "report") -> Path:
    return write_site(root / "site", registries,
                      settings=f'min_rate = 1\ndeadline = "30s"\nconflicts = "{conflicts}"')


def _status(world: SiteWorld, config: Path) -> dict[str, Any]:
    done = world.run_cli(["site", "status", "--config", config, "--json"])
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _image_events(config: Path) -> list[tuple[str, str]]:
    log = config.parent / "events.jsonl"
    return [(e["VMCATCHER_EVENT_TYPE"], e["VMCATCHER_EVENT_DC_IDENTIFIER"])
            for e in map(json.loads, log.read_text().splitlines())
            if "VMCATCHER_EVENT_DC_IDENTIFIER" in e]


@pytest.mark.slow
def test_public_and_private_catalogue_conflict_then_priority(
        world: SiteWorld, run_cli: RunCli, git_http_server: ServeRepository,
        image_server: ImageServer, ssh_carol: SSHKeyFiles, ssh_bob: SSHKeyFiles) -> None:
    public = world
    public_list = public.new_list("Public images")
    only_public = public.add_image(public_list, "public-only", b"public only\n" * 40)
    public.add_image(public_list, "shared-public", b"the public build\n" * 30, uuid=SHARED)
    public.publish("public catalogue")
    # The private catalogue is a registry of its own: another root key and policy.
    (public.root / "private").mkdir()
    private = SiteWorld(public.root / "private", run_cli, git_http_server, image_server,
                        ssh_carol, ssh_bob).create()
    assert private.fingerprint != public.fingerprint
    private_list = private.new_list("Private images")
    only_private = private.add_image(private_list, "private-only", b"private only\n" * 40)
    private_build = b"the private build\n" * 30
    private.add_image(private_list, "shared-private", private_build, uuid=SHARED)
    private.publish("private catalogue")
    registries = [
        {"name": "public", "remotes": [public.server("a")], "trust_root": public.fingerprint,
         "priority": 5},
        {"name": "private", "remotes": [private.server("a")],
         "trust_root": private.fingerprint, "priority": 10}]
    config = _site(public.root, registries)

    code, report = public.sync(config)

    # Claimed by both, taken from neither (the default), and said so.
    assert code == 0, report
    assert sorted(report["downloaded"]) == sorted([only_public, only_private])
    [conflict] = report["plan"]["conflicts"]
    assert SHARED in conflict and "private, public" in conflict and "not taken" in conflict
    cache = config.parent / "state" / "cache"
    assert not (cache / SHARED).exists()
    status = _status(public, config)
    assert [(c["uuid"], c["registries"], c["taken_from"]) for c in status["conflicts"]] \
        == [(SHARED, ["private", "public"], None)]
    assert {i["uuid"]: (i["registry"], i["state"]) for i in status["images"]} == {
        only_public: ("public", "cached"), only_private: ("private", "cached")}
    shown = public.run_cli(["site", "status", "--config", config])
    text = shown.stdout + shown.stderr
    assert f"conflict: image {SHARED} is claimed by private, public; not taken" in text

    # With conflicts = "priority", the higher priority (private) wins.
    config = _site(public.root, registries, conflicts="priority")
    code, report = public.sync(config)
    assert code == 0, report
    assert report["downloaded"] == [SHARED]
    assert "taken from private (higher priority)" in report["plan"]["conflicts"][0]
    assert sha512((cache / SHARED).read_bytes()) == sha512(private_build)
    status = _status(public, config)
    assert [(c["uuid"], c["taken_from"]) for c in status["conflicts"]] == [(SHARED, "private")]
    shared = next(i for i in status["images"] if i["uuid"] == SHARED)
    assert (shared["registry"], shared["state"]) == ("private", "cached")

    # Priorities swapped: the private copy leaves (Expire events), the public one comes.
    registries[0]["priority"], registries[1]["priority"] = 20, 10
    config = _site(public.root, registries, conflicts="priority")
    before = len(_image_events(config))
    code, report = public.sync(config)
    assert code == 0, report
    assert report["downloaded"] == [SHARED]
    assert report["retired"] == [{"uuid": SHARED, "state": "expired",
                                  "reason": "now taken from registry public"}]
    assert sha512((cache / SHARED).read_bytes()) == sha512(b"the public build\n" * 30)
    assert _image_events(config)[before:] == [
        ("ExpirePrefix", SHARED), ("ExpirePostfix", SHARED),
        ("AvailablePrefix", SHARED), ("AvailablePostfix", SHARED)]
    expired = list((config.parent / "state" / "expired").iterdir())
    assert [sha512(p.read_bytes()) for p in expired] == [sha512(private_build)]


@pytest.mark.slow
def test_dry_run_changes_nothing_and_a_lost_repository_is_rebuilt(world: SiteWorld) -> None:
    (list_one, list_two), _, config = world.on_two_replicas("One", "Two")
    state_dir = world.state_dir

    # A dry run on a fresh site creates nothing at all, not even state_dir.
    code, report = world.sync(config, "--dry-run")
    assert code == 0 and len(report["plan"]["download"]) == 2
    assert not state_dir.exists()
    assert world.sync(config)[0] == 0

    # The replicas diverge: each accepted a different endorser's push.
    one_b, two_b = world.diverge((list_one, "one-b", b"one b\n" * 9),
                                 (list_two, "two-b", b"two b\n" * 9))

    # A dry run fetches, verifies and merges, and leaves every byte of
    # state_dir as it was: the state, cache/, and repos/ (objects and refs).
    before = tree_listing(state_dir)
    events = len(world.events())
    code, report = world.sync(config, "--dry-run")
    assert code == 0, report
    assert report["registries"][0]["merged"] is True
    assert sorted(i["uuid"] for i in report["plan"]["download"]) == sorted([one_b, two_b])
    assert tree_listing(state_dir) == before
    assert len(world.events()) == events

    code, report = world.sync(config)
    assert code == 0 and sorted(report["downloaded"]) == sorted([one_b, two_b])
    merge = report["registries"][0]["target"]
    status = _status(world, config)
    [registry] = status["registries"]
    assert registry["trusted_commit"] == merge and len(registry["merge_parents"]) == 2
    assert len(world.events()) > events

    # repos/ is lost while the trusted commit is this site's own merge: the
    # next sync rebuilds the merge from its recorded parents and carries on.
    shutil.rmtree(state_dir / "repos")
    code, report = world.sync(config)
    assert code == 0, report
    [outcome] = report["registries"]
    assert [r["state"] for r in outcome["remotes"]] == ["forked", "forked"]
    assert outcome["target"] == merge
    assert len(outcome["recovery"]) == 1 and "rebuilt the local merge" in outcome["recovery"][0]
    assert report["downloaded"] == [] and report["retired"] == []
    assert {e["type"] for e in report["events"]} == {"ProcessPrefix", "ProcessPostfix"}
    assert git("-C", state_dir / "repos" / "test.git", "rev-parse",
               "refs/gitreg/merged/main").stdout.strip() == merge

    # A state that never recorded the parents (written before they were):
    # the sync re-verifies everything from the pinned trust root and says so.
    shutil.rmtree(state_dir / "repos")
    with sqlite3.connect(state_dir / "state.sqlite") as db:
        db.execute("UPDATE registry SET merge_parents = ''")
    db.close()
    code, report = world.sync(config)
    assert code == 0, report
    [outcome] = report["registries"]
    assert "verified again from the pinned trust root" in outcome["recovery"][0]
    assert [r["state"] for r in outcome["remotes"]] == ["forked", "forked"]
    assert outcome["target"] == merge
    assert report["downloaded"] == [] and report["retired"] == []
    assert _status(world, config)["registries"][0]["merge_parents"] \
        == registry["merge_parents"]
