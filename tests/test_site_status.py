"""`gitreg site status`: every image state with its reason, every remote state.

A real registry, hook-guarded replica, image server and handler script
(tests/site_registry.py). One image of each fate: cached, revoked (dropped
from its list), expired because its list was decommissioned, expired
because its list expired, failed (wrong bytes), and a cached image whose
new version failed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitreg.model.imagelist import Imagelist
from gitreg.site.config import Subscription, load_config
from gitreg.site.plan import desired_images, make_plan
from gitreg.site.records import ImageRecord
from gitreg.site.sync import sync
from tests.site_registry import (
    SiteWorld,
    sha512,
)


def _status(world: SiteWorld, config: Path) -> tuple[dict[str, Any], str]:
    as_json = world.run_cli(["site", "status", "--config", config, "--json"])
    as_text = world.run_cli(["site", "status", "--config", config])
    assert as_json.returncode == 0 and as_text.returncode == 0, as_json.stderr
    return json.loads(as_json.stdout), as_text.stdout + as_text.stderr


def test_status_of_a_fresh_site_creates_nothing(world: SiteWorld) -> None:
    config = world.site_config(["http://127.0.0.1:9/nothing.git"])
    data, text = _status(world, config)
    assert data["registries"] == [{"name": "test", "trusted_commit": None, "advanced_at": None,
                                   "merge_parents": [], "remotes": [], "equivocations": [],
                                   "freshness": None}]
    assert data["images"] == [] and data["conflicts"] == []
    assert "registry test: trusted none (never synced)" in text
    assert not world.state_dir.exists()


@pytest.mark.slow
def test_status_names_each_image_state_and_why(world: SiteWorld) -> None:
    kept_list = world.new_list("Kept and revoked")
    revoked = world.add_image(kept_list, "revoked", b"revoked\n" * 20)
    updated = world.add_image(kept_list, "updated", b"updated v1\n" * 20)
    retired_list = world.new_list("Decommissioned")
    decommissioned = world.add_image(retired_list, "decommissioned", b"decommissioned\n" * 20)
    broken_list = world.new_list("Broken")
    broken = world.add_image(broken_list, "broken", b"broken\n" * 20)
    world.publish("three lists")
    short_list = world.new_list("Short-lived")
    expiring = world.add_image(short_list, "expiring", b"expiring\n" * 20)
    world.cli("publish", "--key", world.endorser_key.private, "--lifetime", "1",
              "-m", "a list that expires tomorrow")
    world.images.serve("/broken.img", b"tampered!" * 30)
    dead = "http://127.0.0.1:9/nothing.git"
    good = world.server("a")
    config = world.site_config([dead, good])

    code, report = world.sync(config)

    # The failed download is in the state with its reason, not only in the report.
    assert code == 1, report
    data, text = _status(world, config)
    images = {i["uuid"]: i for i in data["images"]}
    assert images[broken]["state"] == "failed"
    assert images[broken]["reason"] == report["failed"][0]["reason"]
    assert "sha-512" in images[broken]["reason"].lower() or "size" in images[broken]["reason"]
    assert f"image {broken} broken [test]: failed: {images[broken]['reason']}" in text
    [registry] = data["registries"]
    assert registry["trusted_commit"] == report["registries"][0]["target"]
    assert registry["advanced_at"] is not None
    remotes = {r["url"]: r for r in registry["remotes"]}
    assert remotes[good]["state"] == "current" and remotes[good]["commit"] == \
        registry["trusted_commit"]
    assert remotes[dead]["state"] == "unreachable" and remotes[dead]["detail"]
    assert f"remote {dead}: unreachable (" in text

    # Upstream: one image revoked, one list decommissioned (a version with no
    # image), a new version of one image that its server does not serve.
    world.remove_image(kept_list, revoked)
    world.remove_image(retired_list, decommissioned)
    new_bytes = b"updated v2\n" * 20
    for key, value in (("sl:checksum:sha512", sha512(new_bytes)), ("hv:size", len(new_bytes)),
                       ("hv:version", "2")):
        world.cli("image", "set", kept_list, updated, key, json.dumps(value), "--json")
    world.publish("revoke, decommission, update")
    world.push("a")
    # Two days later the short-lived list has expired without a new version.
    later = datetime.now(UTC) + timedelta(days=2)
    before = len(world.events())
    result = sync(load_config(config), now=later)

    assert set(result.failed) == {broken, updated}
    data, text = _status(world, config)
    why = {i["uuid"]: (i["state"], i["reason"]) for i in data["images"]}
    assert why[revoked] == ("revoked", f"no longer in list {kept_list}")
    assert why[decommissioned][0] == "expired"
    assert why[decommissioned][1].startswith(f"list {retired_list} decommissioned (version ")
    assert why[expiring][0] == "expired"
    assert why[expiring][1].startswith(f"list {short_list} expired ")
    assert why[broken][0] == "failed"
    assert why[updated][0] == "cached"
    assert why[updated][1].startswith(f"update to list {kept_list} version ")
    assert why[updated][1].endswith("; the cached version stays")
    for image_uuid, (state, reason) in why.items():
        assert f"image {image_uuid}" in text and f"{state}: {reason}" in text
    cache = world.state_dir / "cache"
    assert {p.name for p in cache.iterdir()} == {updated}
    assert sha512((cache / updated).read_bytes()) == sha512(b"updated v1\n" * 20)
    expired = {p.name.split(".")[0]: p.name for p in (world.state_dir / "expired").iterdir()}
    assert set(expired) == {revoked, decommissioned, expiring}
    assert {i["uuid"]: i["path"] for i in data["images"]}[expiring] == \
        str(world.state_dir / "expired" / expired[expiring])

    # Each of the three retirements fired ExpirePrefix and ExpirePostfix with
    # the image's and its list's variables.
    lists = {revoked: kept_list, decommissioned: retired_list, expiring: short_list}
    events = [e for e in world.events()[before:] if e["VMCATCHER_EVENT_TYPE"].startswith("Exp")]
    assert sorted((e["VMCATCHER_EVENT_TYPE"], e["VMCATCHER_EVENT_DC_IDENTIFIER"])
                  for e in events) == sorted((kind, image) for image in lists
                                             for kind in ("ExpirePrefix", "ExpirePostfix"))
    for event in events:
        image = event["VMCATCHER_EVENT_DC_IDENTIFIER"]
        assert event["VMCATCHER_EVENT_IL_DC_IDENTIFIER"] == lists[image]
        assert event["VMCATCHER_EVENT_FILENAME"] == (
            image if event["VMCATCHER_EVENT_TYPE"] == "ExpirePrefix" else expired[image])
        assert event["VMCATCHER_EVENT_SL_ARCH"] == "x86_64"


# --- why an image leaves (the planner, pure) ------------------------------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LIST = "11111111-1111-4111-8111-111111111111"
GONE = "22222222-2222-4222-8222-222222222222"


def _image(n: int) -> dict[str, Any]:
    return {"dc:identifier": f"00000000-0000-4000-8000-{n:012d}", "dc:title": f"image {n}",
            "dc:description": "", "hv:uri": f"http://127.0.0.1:9/{n}", "hv:size": n,
            "sl:checksum:sha512": f"{n:0128x}", "sl:arch": "x86_64", "sl:os": "Linux",
            "sl:osversion": "9", "sl:comments": "", "hv:hypervisor": "QEMU-KVM",
            "hv:version": "1"}


def _list(images: list[dict[str, Any]], version: str) -> Imagelist:
    endorser = {"hv:dn": "/CN=Bob", "hv:ca": "/CN=CA", "hv:email": "b@example.org",
                "dc:creator": "Bob"}
    document = Imagelist.new(LIST, "t", "d", endorser, created=datetime(2026, 1, 1, tzinfo=UTC),
                             expires=datetime(2027, 1, 1, tzinfo=UTC)).to_dict()
    document["hv:imagelist"]["hv:version"] = version
    document["hv:imagelist"]["hv:images"] = [{"hv:image": i} for i in images]
    return Imagelist.from_dict(document)


def _record(n: int, list_uuid: str = LIST) -> ImageRecord:
    return ImageRecord(uuid=f"00000000-0000-4000-8000-{n:012d}", registry="r",
                       list_uuid=list_uuid, list_version="1", sha512=f"{n:0128x}", size=n,
                       state="cached", reason="", path=None)


def _why(lists: list[Imagelist], records: list[ImageRecord]) -> dict[str, tuple[str, str]]:
    wanted = desired_images("r", 0, lists, subscriptions=[Subscription("r")],
                            known={r.uuid: r for r in records}, now=NOW)
    plan = make_plan([wanted], records, cached=[r.uuid for r in records])
    return {r.record.uuid[-1]: (r.state, r.reason) for r in plan.retire}


def test_decommissioned_list_expires_its_images_and_a_dropped_image_is_revoked() -> None:
    assert _why([_list([_image(2)], "2")], [_record(1), _record(2)]) == {
        "1": ("revoked", f"no longer in list {LIST}")}
    assert _why([_list([], "3")], [_record(1), _record(2)]) == {
        "1": ("expired", f"list {LIST} decommissioned (version 3 has no images)"),
        "2": ("expired", f"list {LIST} decommissioned (version 3 has no images)")}
    assert _why([_list([_image(1)], "2")], [_record(1), _record(3, GONE)]) == {
        "3": ("expired", f"list {GONE} is no longer in registry r")}
