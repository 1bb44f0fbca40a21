"""`gitreg site sync` end to end: real registry, hook-guarded HTTP git servers,
a real image server and a handler script that records every event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitreg.model.imagelist import Imagelist
from gitreg.site.config import Subscription
from gitreg.site.plan import Plan, desired_images, make_plan
from gitreg.site.records import ImageRecord
from tests.fixtures.git_server import git
from tests.site_registry import (
    SiteWorld,
    sha512,
    tree_listing,
)


def _two_images(world: SiteWorld) -> tuple[str, str, str]:
    list_uuid = world.new_list("Base images")
    first = world.add_image(list_uuid, "alpha", b"alpha image bytes\n" * 50)
    second = world.add_image(list_uuid, "beta", b"beta image bytes\n" * 70)
    world.publish("two images")
    return list_uuid, first, second


def test_first_sync_downloads_and_fires_available_events(world: SiteWorld) -> None:
    list_uuid, first, second = _two_images(world)
    url = world.server("a")
    config = world.site_config([url])

    code, report = world.sync(config)

    assert code == 0, report
    assert sorted(report["downloaded"]) == sorted([first, second])
    cache = world.state_dir / "cache"
    assert sha512((cache / first).read_bytes()) == sha512(b"alpha image bytes\n" * 50)
    types = [e["VMCATCHER_EVENT_TYPE"] for e in world.events()]
    assert types[0] == "ProcessPrefix" and types[-1] == "ProcessPostfix"
    assert types.count("AvailablePrefix") == 2 and types.count("AvailablePostfix") == 2
    post = next(e for e in world.events() if e["VMCATCHER_EVENT_TYPE"] == "AvailablePostfix"
                and e["VMCATCHER_EVENT_DC_IDENTIFIER"] == first)
    assert post["VMCATCHER_EVENT_IL_DC_IDENTIFIER"] == list_uuid
    assert post["VMCATCHER_EVENT_FILENAME"] == first
    assert post["VMCATCHER_EVENT_HV_SIZE"] == str(len(b"alpha image bytes\n" * 50))
    assert post["VMCATCHER_EVENT_SL_ARCH"] == "x86_64"
    assert post["VMCATCHER_CACHE_DIR_CACHE"] == f"{cache}/"
    assert report["registries"][0]["remotes"][0]["state"] == "current"

    images = world.run_cli(["site", "images", "--config", config, "--json"])
    assert images.returncode == 0
    assert first in images.stdout and str(cache / first) in images.stdout


def test_second_sync_is_idempotent(world: SiteWorld) -> None:
    _two_images(world)
    config = world.site_config([world.server("a")])
    assert world.sync(config)[0] == 0
    before = len(world.events())
    hits = len(world.images.hits("/alpha.img"))

    code, report = world.sync(config)

    assert code == 0
    assert report["downloaded"] == [] and report["retired"] == []
    new_types = [e["VMCATCHER_EVENT_TYPE"] for e in world.events()[before:]]
    assert new_types == ["ProcessPrefix", "ProcessPostfix"]
    assert len(world.images.hits("/alpha.img")) == hits


def test_unreachable_remote_is_skipped(world: SiteWorld, tmp_path: Path) -> None:
    _, first, _ = _two_images(world)
    good = world.server("a")
    dead = "http://127.0.0.1:9/nothing.git"  # discard port: connection refused
    config = world.site_config([dead, good])

    code, report = world.sync(config)

    assert code == 0, report
    states = {r["url"]: r["state"] for r in report["registries"][0]["remotes"]}
    assert states == {dead: "unreachable", good: "current"}
    assert (world.state_dir / "cache" / first).is_file()


def test_nothing_reachable_exits_3(world: SiteWorld) -> None:
    _two_images(world)
    config = world.site_config(["http://127.0.0.1:9/nothing.git"])
    code, report = world.sync(config)
    assert code == 3
    assert report["downloaded"] == []


@pytest.mark.slow
def test_stale_and_forged_remotes_are_reported_good_one_wins(world: SiteWorld) -> None:
    list_uuid, _first, _ = _two_images(world)
    stale = world.server("stale")
    forged = world.hookless_copy("forged", "stale")
    good = world.server("good")
    config = world.site_config([stale, forged, good])
    assert world.sync(config)[0] == 0

    # The good replica moves on; the stale one stays behind.
    third = world.add_image(list_uuid, "gamma", b"gamma bytes\n" * 10)
    head = world.publish("third image")
    world.push("good")
    # A forged commit (signed by nobody the policy knows) on the hookless copy.
    forged_image = world.images.serve("/evil.img", b"evil")
    work = world.root / "forger"
    git("clone", "--quiet", world.servers["forged"], work)
    target = work / "imagelists" / f"{list_uuid}.json"
    target.write_text(target.read_text().replace(world.images.url("/alpha.img"), forged_image))
    git("-C", work, "commit", "--quiet", "-am", "forged")
    git("-C", work, "push", "--quiet", world.servers["forged"], "main:main")

    code, report = world.sync(config)

    assert code == 0, report
    states = {r["url"]: r for r in report["registries"][0]["remotes"]}
    assert states[good]["state"] == "current"
    assert states[stale]["state"] == "stale"
    assert states[forged]["state"] == "invalid"
    assert states[forged]["rule"]
    assert report["registries"][0]["target"] == head
    assert third in report["downloaded"]
    assert len(world.images.hits("/evil.img")) == 0
    assert b"evil" not in b"".join(tree_listing(world.state_dir / "cache").values())
    status = world.run_cli(["site", "status", "--config", config])
    assert "invalid" in status.stdout and "stale" in status.stdout


def test_revocation_retires_image_with_expire_events(world: SiteWorld) -> None:
    list_uuid, first, second = _two_images(world)
    world.server("a")
    config = world.site_config([world.urls["a"]])
    assert world.sync(config)[0] == 0
    before = len(world.events())

    world.remove_image(list_uuid, first)
    world.publish("revoke alpha")
    world.push("a")
    code, report = world.sync(config)

    assert code == 0, report
    assert [r["uuid"] for r in report["retired"]] == [first]
    assert not (world.state_dir / "cache" / first).exists()
    expired = list((world.state_dir / "expired").iterdir())
    assert [p.name.split(".")[0] for p in expired] == [first]
    assert (world.state_dir / "cache" / second).is_file()
    events = world.events()[before:]
    types = [e["VMCATCHER_EVENT_TYPE"] for e in events]
    assert types == ["ProcessPrefix", "ExpirePrefix", "ExpirePostfix", "ProcessPostfix"]
    prefix, postfix = events[1], events[2]
    assert prefix["VMCATCHER_EVENT_DC_IDENTIFIER"] == first
    assert prefix["VMCATCHER_EVENT_FILENAME"] == first
    assert prefix["VMCATCHER_EVENT_IL_DC_IDENTIFIER"] == list_uuid
    assert prefix["VMCATCHER_EVENT_SL_CHECKSUM_SHA512"] == sha512(b"alpha image bytes\n" * 50)
    assert postfix["VMCATCHER_EVENT_FILENAME"] == expired[0].name
    assert postfix["VMCATCHER_CACHE_DIR_EXPIRE"] == f"{world.state_dir / 'expired'}/"
    status = world.run_cli(["site", "status", "--config", config, "--json"])
    assert '"revoked"' in status.stdout


def test_dry_run_changes_nothing(world: SiteWorld) -> None:
    _, first, second = _two_images(world)
    config = world.site_config([world.server("a")])

    code, report = world.sync(config, "--dry-run")

    assert code == 0
    assert sorted(i["uuid"] for i in report["plan"]["download"]) == sorted([first, second])
    assert not (world.state_dir / "state.sqlite").exists()
    assert not (world.state_dir / "cache").exists()
    assert world.events() == []

    # After a real sync, a dry run leaves the state database as it was.
    assert world.sync(config)[0] == 0
    before = tree_listing(world.state_dir / "cache")
    trusted = world.run_cli(["site", "status", "--config", config, "--json"]).stdout
    events = len(world.events())
    code, report = world.sync(config, "--dry-run")
    assert code == 0 and len(report["plan"]["keep"]) == 2
    assert world.run_cli(["site", "status", "--config", config, "--json"]).stdout == trusted
    assert tree_listing(world.state_dir / "cache") == before
    assert len(world.events()) == events


def test_wrong_bytes_fail_that_image_only(world: SiteWorld) -> None:
    _, first, second = _two_images(world)
    world.images.serve("/alpha.img", b"tampered!" * 100)
    config = world.site_config([world.server("a")])

    code, report = world.sync(config)

    assert code == 1
    assert list(report["downloaded"]) == [second]
    failed = {f["uuid"]: f["reason"] for f in report["failed"]}
    assert set(failed) == {first}
    assert "size" in failed[first].lower() or "sha" in failed[first].lower()
    assert not (world.state_dir / "cache" / first).exists()
    assert not (world.state_dir / "partial" / first).exists()
    status = world.run_cli(["site", "status", "--config", config, "--json"]).stdout
    assert '"failed"' in status


@pytest.mark.slow
def test_forked_replicas_are_merged(world: SiteWorld) -> None:
    (list_one, list_two), _, config = world.on_two_replicas("One", "Two")
    assert world.sync(config)[0] == 0

    # Each replica accepts a different endorser's push.
    one_b, two_b = world.diverge((list_one, "one-b", b"one b\n" * 9),
                                 (list_two, "two-b", b"two b\n" * 9))

    code, report = world.sync(config)

    assert code == 0, report
    registry = report["registries"][0]
    assert registry["merged"] is True
    assert {r["state"] for r in registry["remotes"]} == {"forked"}
    assert sorted(report["downloaded"]) == sorted([one_b, two_b])
    # The next sync with nothing new re-derives the same merge: no work.
    code, again = world.sync(config)
    assert code == 0 and again["downloaded"] == [] and again["retired"] == []
    assert again["registries"][0]["target"] == registry["target"]
    assert {r["state"] for r in again["registries"][0]["remotes"]} == {"forked"}

    # One replica moves on from its side of the local merge: merged again.
    one_c = world.add_image(list_one, "one-c", b"one c\n" * 9)
    world.publish("bob adds more")
    world.push("a")
    code, third = world.sync(config)
    assert code == 0, third
    assert third["downloaded"] == [one_c]
    assert {r["state"] for r in third["registries"][0]["remotes"]} == {"forked"}


def _image_events(world: SiteWorld) -> list[tuple[str, str, str]]:
    return [(e["VMCATCHER_EVENT_TYPE"], e["VMCATCHER_EVENT_DC_IDENTIFIER"],
             e["GITREG_EVENT_ATTEMPT"]) for e in world.events()
            if "VMCATCHER_EVENT_DC_IDENTIFIER" in e]


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["AvailablePrefix", "AvailablePostfix", "ExpirePrefix",
                                     "ExpirePostfix"])
def test_sigkill_during_sync_then_rerun_converges(world: SiteWorld, kill_at: str) -> None:
    list_uuid, first, second = _two_images(world)
    config = world.site_config([world.server("a")])
    site = config.parent
    if kill_at.startswith("Expire"):
        assert world.sync(config)[0] == 0
        world.remove_image(list_uuid, first)
        world.publish("revoke alpha")
        world.push("a")
    (site / "kill-at").write_text(kill_at)
    # The handler SIGKILLs the sync mid-apply; the rerun must converge.
    assert world.run_cli(["site", "sync", "--config", config]).returncode == -9
    assert world.sync(config)[0] == 0

    cache = world.state_dir / "cache"
    expected = {second} if kill_at.startswith("Expire") else {first, second}
    assert {p.name for p in cache.iterdir()} == expected
    assert list((world.state_dir / "partial").iterdir()) == []
    events = _image_events(world)
    # Every image event was delivered; only the interrupted one twice (attempt 2).
    firsts = [(t, u) for t, u, attempt in events if attempt == "1"]
    assert len(firsts) == len(set(firsts))
    again = [(t, u) for t, u, attempt in events if attempt != "1"]
    assert len(again) <= 1 and all(t == kill_at for t, _ in again)
    kinds = {t for t, _ in firsts}
    assert {"AvailablePrefix", "AvailablePostfix"} <= kinds
    if kill_at.startswith("Expire"):
        assert ("ExpirePrefix", first) in firsts and ("ExpirePostfix", first) in firsts
        assert len(list((world.state_dir / "expired").iterdir())) == 1
    # And the run after that has nothing left to do.
    code, report = world.sync(config)
    assert code == 0 and report["downloaded"] == [] and report["retired"] == []
    assert report["events"] == [e for e in report["events"] if e["type"].startswith("Process")]


def test_failed_handler_is_retried_next_sync(world: SiteWorld) -> None:
    _, first, second = _two_images(world)
    config = world.site_config([world.server("a")])
    (config.parent / "handler-fails").write_text("")
    code, report = world.sync(config)
    assert code == 0 and report["handler_failures"]
    delivered = len(world.events())

    (config.parent / "handler-fails").unlink()
    code, report = world.sync(config)

    assert code == 0 and report["handler_failures"] == []
    retried = world.events()[delivered:]
    again = [e for e in retried if e.get("GITREG_EVENT_ATTEMPT") == "2"]
    # The 4 image events and the first sync's 2 process events come again.
    assert len(again) == 6
    assert {e.get("VMCATCHER_EVENT_DC_IDENTIFIER") for e in again} >= {first, second}


# --- the planner (pure) ------------------------------------------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LIST_A = "11111111-1111-4111-8111-111111111111"
LIST_B = "22222222-2222-4222-8222-222222222222"


def _image(n: int, **extra: Any) -> dict[str, Any]:
    return {"dc:identifier": f"00000000-0000-4000-8000-{n:012d}", "dc:title": f"image {n}",
            "dc:description": "", "hv:uri": f"http://127.0.0.1:9/{n}", "hv:size": n,
            "sl:checksum:sha512": f"{n:0128x}", "sl:arch": extra.pop("arch", "x86_64"),
            "sl:os": "Linux", "sl:osversion": "9", "sl:comments": "",
            "hv:hypervisor": "QEMU-KVM", "hv:version": "1", **extra}


def _list(list_uuid: str, images: list[dict[str, Any]], *, version: str = "1",
          expires: datetime = datetime(2027, 1, 1, tzinfo=UTC)) -> Imagelist:
    endorser = {"hv:dn": "/CN=Bob", "hv:ca": "/CN=CA", "hv:email": "b@example.org",
                "dc:creator": "Bob"}
    base = Imagelist.new(list_uuid, "t", "d", endorser, created=datetime(2026, 1, 1, tzinfo=UTC),
                         expires=expires)
    document = base.to_dict()
    document["hv:imagelist"]["hv:version"] = version
    document["hv:imagelist"]["hv:images"] = [{"hv:image": i} for i in images]
    return Imagelist.from_dict(document)


def _record(n: int, list_uuid: str = LIST_A, *, registry: str = "r", state: Any = "cached",
            sha: str | None = None) -> ImageRecord:
    return ImageRecord(uuid=f"00000000-0000-4000-8000-{n:012d}", registry=registry,
                       list_uuid=list_uuid, list_version="1", sha512=sha or f"{n:0128x}",
                       size=n, state=state, reason="", path=None,
                       metadata={"hv:version": "1"})


def _plan(lists: list[Imagelist], records: list[ImageRecord],
          subscription: Subscription | None = None) -> Plan:
    known = {r.uuid: r for r in records}
    wanted = desired_images("r", 0, lists, subscriptions=[subscription or Subscription("r")],
                            known=known, now=NOW)
    return make_plan([wanted], records, cached=list(known))


def test_plan_downloads_new_keeps_held_and_names_why_others_leave() -> None:
    lists = [_list(LIST_A, [_image(1), _image(2)])]
    records = [_record(1), _record(3), _record(4, LIST_B)]
    plan = _plan(lists, records)
    assert [i.uuid[-1] for i in plan.download] == ["2"]
    assert [i.uuid[-1] for i in plan.keep] == ["1"]
    why = {r.record.uuid[-1]: (r.state, r.reason) for r in plan.retire}
    assert why["3"][0] == "revoked" and "no longer in list" in why["3"][1]
    assert why["4"][0] == "expired" and "no longer in registry" in why["4"][1]


def test_plan_retires_images_of_an_expired_list_and_expired_images() -> None:
    lists = [_list(LIST_A, [_image(1)], expires=datetime(2026, 5, 1, tzinfo=UTC)),
             _list(LIST_B, [_image(2, **{"dc:date:expires": "2026-05-01T00:00:00Z"}),
                            _image(3)])]
    plan = _plan(lists, [_record(1), _record(2, LIST_B), _record(3, LIST_B)])
    why = {r.record.uuid[-1]: r.reason for r in plan.retire}
    assert "expired" in why["1"] and "list" in why["1"]
    assert why["2"] == "image expired"
    assert [i.uuid[-1] for i in plan.keep] == ["3"]


def test_plan_honours_match_and_refuse() -> None:
    lists = [_list(LIST_A, [_image(1), _image(2, arch="aarch64"), _image(3)])]
    match = Subscription("r", match={"sl:arch": "x86_64"})
    plan = _plan(lists, [_record(2)], match)
    assert sorted(i.uuid[-1] for i in plan.download) == ["1", "3"]
    assert [(r.record.uuid[-1], r.reason) for r in plan.retire] == [("2", "unsubscribed")]

    refuse = Subscription("r", new_images="refuse")
    plan = _plan(lists, [_record(1)], refuse)  # the list is known: 2 and 3 are new
    assert plan.download == [] and [i.uuid[-1] for i in plan.keep] == ["1"]
    assert _plan(lists, [], refuse).download  # a list seen for the first time: all of it


def test_plan_replaces_changed_bytes_and_reports_conflicts() -> None:
    plan = _plan([_list(LIST_A, [_image(1)])], [_record(1, sha="f" * 128)])
    assert [i.uuid[-1] for i in plan.download] == ["1"] and plan.retire == []

    one = desired_images("one", 1, [_list(LIST_A, [_image(1)])],
                         subscriptions=[Subscription("one")], known={}, now=NOW)
    two = desired_images("two", 5, [_list(LIST_B, [_image(1)])],
                         subscriptions=[Subscription("two")], known={}, now=NOW)
    report = make_plan([one, two], [], cached=[])
    assert report.download == [] and "claimed by one, two" in report.conflicts[0]
    chosen = make_plan([one, two], [], cached=[], conflicts="priority")
    assert [i.registry for i in chosen.download] == ["two"]
    assert "higher priority" in chosen.conflicts[0]


def test_plan_takes_an_image_two_lists_carry_from_neither() -> None:
    lists = [_list(LIST_A, [_image(1), _image(2)]), _list(LIST_B, [_image(1)])]
    plan = _plan(lists, [_record(1)])
    assert [i.uuid[-1] for i in plan.download] == ["2"] and plan.keep == []
    [retired] = plan.retire
    assert retired.record.uuid[-1] == "1" and retired.state == "expired"
    assert "image conflict" in retired.reason and LIST_B in retired.reason
    [claim] = plan.claims
    assert (claim.registries, claim.taken_from) == (("r",), None)
    assert plan.conflicts == [claim.message]
    # Not a conflict when one list is not subscribed: the site takes the image.
    only_a = _plan(lists, [_record(1)], Subscription("r", imagelists=(LIST_A,)))
    assert [i.uuid[-1] for i in only_a.keep] == ["1"] and only_a.claims == []


@pytest.mark.slow
def test_equivocation_is_reported_and_one_version_taken_everywhere(world: SiteWorld) -> None:
    [list_one], [kept], config = world.on_two_replicas("One")
    assert world.sync(config)[0] == 0

    # The same list, the same next version, two different contents.
    bob_image, carol_image = world.diverge((list_one, "bob", b"bob\n" * 9),
                                           (list_one, "carol", b"carol\n" * 9))

    code, report = world.sync(config)

    assert code == 0, report
    registry = report["registries"][0]
    assert registry["merged"] is True
    heads = sorted(git("-C", world.servers[r], "rev-parse", "main").stdout.strip()
                   for r in ("a", "b"))
    [found] = registry["equivocations"]
    assert found["list"] == list_one and found["reason"] == "equivocation"
    assert found["commits"] == heads and len(found["blobs"]) == 2
    assert found["chosen"] == min(found["blobs"]) and "equivocation" in found["message"]
    # Never back to the older version: one of the two (the smaller blob id), on every site.
    [taken] = report["downloaded"]
    assert taken in (bob_image, carol_image) and report["retired"] == []
    cache = world.state_dir / "cache"
    assert {p.name for p in cache.iterdir()} == {kept, taken}
    other = world.site_config([world.urls["b"], world.urls["a"]], name="other")
    code, again = world.sync(other)
    assert code == 0 and again["registries"][0]["target"] == registry["target"]
    assert again["downloaded"] == sorted([kept, taken])

    # The site state keeps it: status shows it after a sync that saw nothing new.
    assert world.sync(config)[0] == 0
    done = world.run_cli(["site", "status", "--config", config, "--json"])
    [kept_record] = json.loads(done.stdout)["registries"][0]["equivocations"]
    assert {k: kept_record[k] for k in ("list", "version", "blobs", "commits", "chosen")} \
        == {k: found[k] for k in ("list", "version", "blobs", "commits", "chosen")}
    assert kept_record["first_seen"] <= kept_record["last_seen"]
    text = world.run_cli(["site", "status", "--config", config])
    assert f"imagelists/{list_one}.json" in text.stderr and "equivocation" in text.stderr
    assert heads[0][:12] in text.stderr and heads[1][:12] in text.stderr
    states = {r["url"]: r["state"] for r in json.loads(done.stdout)["registries"][0]["remotes"]}
    assert states == {world.urls["a"]: "forked", world.urls["b"]: "forked"}

    # A replica merging the same heads names the same list, version and commits.
    peers = world.run_cli(["server", "sync-peers", world.servers["a"], "--peer",
                           world.urls["b"], "--json"])
    peered = json.loads(peers.stdout)
    assert peered["after"] == registry["target"], peers.stderr
    [same] = peered["equivocations"]
    assert {k: same[k] for k in ("list", "version", "blobs", "commits", "chosen")} \
        == {k: found[k] for k in ("list", "version", "blobs", "commits", "chosen")}
    assert [p["state"] for p in peered["peers"]] == ["forked"]
    assert f"imagelists/{list_one}.json" in peers.stderr
    # A fresh site that only sees the replica's merge finds it while verifying it.
    code, third = world.sync(world.site_config([world.urls["a"]], name="third"))
    assert code == 0 and third["registries"][0]["merged"] is False
    [verified] = third["registries"][0]["equivocations"]
    assert {k: verified[k] for k in ("list", "version", "blobs", "commits", "chosen")} \
        == {k: found[k] for k in ("list", "version", "blobs", "commits", "chosen")}


@pytest.mark.slow
def test_endless_and_trickling_servers_fail_their_images_only(world: SiteWorld) -> None:
    list_uuid = world.new_list("Mixed")
    good = world.add_image(list_uuid, "good", b"good\n" * 20)
    endless = world.add_image(list_uuid, "endless", b"endless\n" * 20)
    slow = world.add_image(list_uuid, "slow", b"slow\n" * 400)
    world.publish("three images")
    world.images.serve("/endless.img", b"endless\n" * 20, endless=True)
    world.images.serve("/slow.img", b"slow\n" * 400, rate=100)
    config = world.site_config([world.server("a")], deadline="2s")

    code, report = world.sync(config)

    assert code == 1
    assert report["downloaded"] == [good]
    failed = {f["uuid"]: f["reason"] for f in report["failed"]}
    assert set(failed) == {endless, slow}
    assert {p.name for p in (world.state_dir / "cache").iterdir()} == {good}
