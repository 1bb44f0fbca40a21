"""Freeze protection end to end: hooked replicas, a dumb-HTTP mirror, sites.

Heartbeats are signed by `gitreg server heartbeat` at the real time; the
site's reference time (its ``VerifyContext``) is moved instead of sleeping,
by running the sync in-process with ``now``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gitreg.signing.interface import NAMESPACE_HEARTBEAT
from gitreg.signing.ssh import SSHSigner
from gitreg.site.config import load_config
from gitreg.site.state import SiteState
from gitreg.site.sync import SyncReport, sync
from gitreg.verify.heartbeat import statement_bytes
from tests.fixtures.git_server import git
from tests.fixtures.ssh_keys import SSHKeyFiles
from tests.site_registry import SiteWorld, tree_listing
from tests.test_heartbeat import beacon, heartbeat, plant, require_heartbeats  # noqa: F401
from tests.test_mirror import static_http  # noqa: F401


def _main(path: Path) -> str:
    return git("-C", path, "rev-parse", "main").stdout.strip()


def _site_sync(config: Path, at: datetime) -> SyncReport:
    return sync(load_config(config), now=at)


def _trusted(world: SiteWorld, site: str = "site") -> str | None:
    with SiteState.open(world.root / site / "state" / "state.sqlite") as state:
        record = state.registry("test")
        return record.trusted_commit if record else None


def _snapshot(world: SiteWorld, site: str = "site") -> dict[str, Any]:
    """What a refused sync must leave alone: trusted commit, cache files, image records."""
    state_dir = world.root / site / "state"
    with SiteState.open(state_dir / "state.sqlite") as state:
        images = sorted((i.uuid, i.state, i.list_version) for i in state.images())
    return {"trusted": _trusted(world, site), "images": images,
            "cache": tree_listing(state_dir / "cache")}


def _mirror_sync(world: SiteWorld, mirror: Path) -> dict[str, Any]:
    done = world.run_cli(["mirror", "sync", mirror, "--json"])
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_frozen_mirror_makes_a_site_suspect_a_freeze_and_a_fresh_heartbeat_heals(
        world: SiteWorld, beacon: SSHKeyFiles,  # noqa: F811
        static_http: tuple[Path, str]) -> None:  # noqa: F811
    require_heartbeats(world, beacon, "6h")
    list_one = world.new_list("One")
    first_image = world.add_image(list_one, "one-a", b"one a\n" * 9)
    world.publish("one list")
    world.server("a")
    assert heartbeat(world, "a", beacon).returncode == 0
    www, base = static_http
    mirror = www / "test.git"
    world.cli("mirror", "init", mirror, "--from", world.urls["a"], "--trust-root",
              world.fingerprint)
    carried = _mirror_sync(world, mirror)
    assert [b["state"] for b in carried["heartbeats"]] == ["carried"], carried
    assert "refs/gitreg/heartbeat/a" in (mirror / "info" / "refs").read_text()
    assert not [r for r in git("-C", mirror, "for-each-ref", "--format=%(refname)").stdout
                .split() if "/heartbeat/" in r and r.startswith("refs/gitreg/remotes/")]

    # Over dumb HTTP, a fresh heartbeat: the site proceeds.
    site = world.site_config([f"{base}/test.git"])
    now = datetime.now(UTC).replace(microsecond=0)
    report = _site_sync(site, now + timedelta(hours=1))
    assert report.exit_code == 0, report.to_json()
    assert report.downloaded == [first_image]
    fresh = report.registries[0].freshness
    assert fresh is not None and fresh["fresh"] and fresh["remotes"][0]["heartbeat"][
        "replica"] == "a"

    # New work reaches replica a, which keeps signing heartbeats; the mirror
    # syncs once, then freezes there while its copied heartbeat ages.
    second_image = world.add_image(list_one, "one-b", b"one b\n" * 9)
    new_head = world.publish("bob adds one-b")
    world.push("a")
    assert heartbeat(world, "a", beacon).returncode == 0
    _mirror_sync(world, mirror)
    assert _main(mirror) == new_head
    before = _snapshot(world)
    mirror_refs = git("-C", mirror, "for-each-ref").stdout
    frozen = _site_sync(site, now + timedelta(hours=7))
    outcome = frozen.registries[0]
    assert frozen.exit_code == 3, frozen.to_json()
    assert outcome.freeze is not None and outcome.freeze.startswith("freeze suspected")
    assert "old, more than the maximum age 6h" in outcome.freeze, outcome.freeze
    assert outcome.freshness is not None and outcome.freshness["age_seconds"] > 6 * 3600
    assert frozen.downloaded == [] and frozen.retired == []
    assert _snapshot(world) == before and before["trusted"] != new_head
    assert git("-C", mirror, "for-each-ref").stdout == mirror_refs
    assert second_image not in str(before)

    # `site status` shows the mirror's freshness, as text and JSON.
    shown = world.run_cli(["site", "status", "--config", site, "--json"])
    status = json.loads(shown.stdout)["registries"][0]
    assert status["freshness"]["required"] is True
    assert status["remotes"][0]["heartbeat"]["replica"] == "a"
    text = world.run_cli(["site", "status", "--config", site]).stdout
    assert "heartbeat" in text and "old (a" in text, text

    # The CLI says it too, with the documented exit code (3) and summary.
    cli = world.run_cli(["site", "sync", "--config", site])
    assert cli.returncode == 0, cli.stderr  # now (real time) the heartbeat is young
    assert _trusted(world) == new_head


def test_stranger_heartbeats_are_ignored_and_future_ones_are_clock_skew(
        world: SiteWorld, beacon: SSHKeyFiles, ssh_mallory: SSHKeyFiles) -> None:  # noqa: F811
    require_heartbeats(world, beacon, "6h")
    list_one = world.new_list("One")
    world.add_image(list_one, "one-a", b"one a\n" * 9)
    head = world.publish("one list")
    world.server("a")
    server = world.servers["a"]
    registry_id = json.loads((world.work / "gitreg.json").read_text())["registry_id"]
    now = datetime.now(UTC).replace(microsecond=0)
    # Mallory (no heartbeat key of the policy) signs a perfectly formed heartbeat.
    statement = statement_bytes(registry=registry_id, replica="a", commit=head, time=now)
    signature = SSHSigner.from_file(ssh_mallory.private).sign(statement,
                                                              namespace=NAMESPACE_HEARTBEAT)
    plant(server, "refs/gitreg/heartbeat/a", statement, signature, now)
    site = world.site_config([world.urls["a"]])

    ignored = _site_sync(site, now)
    outcome = ignored.registries[0]
    assert ignored.exit_code == 3 and outcome.freeze is not None
    assert "no remote offers a valid heartbeat" in outcome.freeze
    assert any("ignored" in f and "not in the policy" in f and "heartbeat-key" in f
               for f in outcome.heartbeat_findings), outcome.heartbeat_findings
    assert _trusted(world) is None and ignored.downloaded == []
    cli = world.run_cli(["site", "sync", "--config", site])
    assert cli.returncode == 3, cli.stderr
    assert "freeze suspected" in cli.stderr and "heartbeat-key" in cli.stderr
    assert cli.stderr.strip().splitlines()[-1].startswith("FAILED:"), cli.stderr
    assert "test: freeze suspected" in cli.stderr and "Traceback" not in cli.stderr
    assert "nothing applied" in cli.stderr
    dry = world.run_cli(["site", "sync", "--config", site, "--dry-run", "--json"])
    assert dry.returncode == 3 and json.loads(dry.stdout)["registries"][0]["freeze"], dry.stderr

    # A genuine heartbeat, but the site's clock is an hour behind the replica's.
    assert heartbeat(world, "a", beacon).returncode == 0
    skewed = _site_sync(site, now - timedelta(hours=1))
    outcome = skewed.registries[0]
    assert skewed.exit_code == 3 and outcome.freeze is not None
    assert any("clock skew" in f and "heartbeat-future" in f
               for f in outcome.heartbeat_findings), outcome.heartbeat_findings
    assert _trusted(world) is None

    # The same heartbeat at the right time: applied.
    ok = _site_sync(site, now + timedelta(minutes=1))
    assert ok.exit_code == 0, ok.to_json()
    assert _trusted(world) == head
