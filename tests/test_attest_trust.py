"""Attestations judged like lists, in three places (as tests/test_trust_attacks.py does).

A registry simulator's repository is the hookless mirror a site fetches from;
each statement is forged there and judged by the pre-receive hook (git CLI
push to a `gitreg server init` repository), by a site (the real sync
pipeline) and by `gitreg verify`. A refusal names the rule and changes
nothing: the server's main and object store, the site's trusted commit and
its image cache stay as they were.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitreg.model.attestation import Attestation
from gitreg.signing.interface import NAMESPACE_ATTESTATION, Signer
from gitreg.verify import layout
from tests.fixtures.env import RunCli
from tests.fixtures.image_server import ImageServer
from tests.registry_simulator import new_id, ssh_signer
from tests.test_trust_attacks import NOW, T0, Judges, _judges, edited, seed_server


class World:
    """Alice's list with one real image; attesters site-a and site-b in the policy."""

    def __init__(self, judges: Judges) -> None:
        self.j = judges
        self.site_a, self.site_b = ssh_signer("site-a"), ssh_signer("site-b")
        self.image = judges.image("alma-9")
        self.image_id = str(self.image["dc:identifier"])
        self.sha512 = str(self.image["sl:checksum:sha512"])
        judges.publish(judges.alice, judges.list_a, [self.image])
        for name, signer in (("site-a", self.site_a), ("site-b", self.site_b)):
            judges.sim.change_policy(lambda p, n=name, s=signer: edited(p, lambda raw: (
                raw["keys"].update({s.key_id: s.public_key().to_policy()}),
                raw.setdefault("attesters", {}).update({n: {"keys": [s.key_id]}}),
                raw["rules"].append({"paths": [f"attestations/{n}/*"], "attesters": [n]}))))
        self.base = judges.sim.head
        seed_server(judges)
        assert judges.sync(NOW).exit_code == 0
        assert judges.trusted() == self.base and judges.cached() == {self.image_id}

    def statement(self, *, attester: str = "site-a", image: str | None = None,
                  sha512: str | None = None, result: str = "passed",
                  when: datetime | None = None) -> bytes:
        return Attestation(image=image or self.image_id, sha512=sha512 or self.sha512,
                           attester=attester, time=when or T0 + timedelta(days=1),
                           kind="boot-test", result=result, note="booted in 21 s").canonical_bytes()

    def attest(self, data: bytes, *, path_attester: str = "site-a", image: str | None = None,
               commit_signer: Signer | None = None, sig_signer: Signer | None = None,
               move: bool = False) -> str:
        """A commit on main adding ``data`` at the path of ``path_attester``/``image``."""
        path = layout.attestation_path(path_attester, image or self.image_id)
        by = commit_signer or self.site_a
        signature = (sig_signer or by).sign(data, namespace=NAMESPACE_ATTESTATION)
        return self.j.sim.commit({path: data, path + ".sig": signature}, by,
                                 message="Attest", move=move)

    def counts(self) -> tuple[int, int]:
        """(passed, failed) of the image, as `gitreg search --json` on the mirror says."""
        found = self.j.run_cli(["search", "-r", self.j.sim.path, "--json"])
        assert found.returncode == 0, found.stderr
        (row,) = json.loads(found.stdout)["results"]
        return row["attestations"]["passed"], row["attestations"]["failed"]

    def refused_everywhere(self, forged: str, rule: str) -> str:
        """Hook, site and `gitreg verify` refuse ``forged`` naming ``rule``; nothing changed."""
        j = self.j
        trusted, cached = j.trusted(), j.cached()
        stderr = j.hook_refuses(forged, rule)
        j.sim.set_main(forged)  # the hookless mirror serves it to the site and to verify
        report = j.sync(NOW)
        (outcome,) = report.registries
        assert report.exit_code == 1
        assert [r.rule for r in outcome.remotes] == [rule], outcome.remotes
        assert j.trusted() == trusted and j.cached() == cached
        j.verify_refuses(rule)
        j.sim.set_main(trusted or self.base)
        return stderr


@pytest.fixture
def world(tmp_path: Path, run_cli: RunCli, image_server: ImageServer) -> World:
    return World(_judges(tmp_path, run_cli, image_server, policy_expires=None,
                         max_images=1000))


def test_a_statement_by_an_allowed_attester_is_accepted_everywhere(world: World) -> None:
    j = world.j
    accepted = world.attest(world.statement(), move=True)
    j.hook_accepts(accepted)
    assert j.verify().returncode == 0
    report = j.sync(NOW)
    assert report.exit_code == 0
    assert j.trusted() == accepted
    # An attestation is no list: nothing new is downloaded or installed.
    assert j.cached() == {world.image_id}
    assert len(j.images.hits(f"/{world.image_id}.img")) == 1

    # Counted by `site available`, and by `gitreg search` over the site and the mirror.
    done = j.run_cli(["site", "available", "-c", j.site, "--json"])
    assert done.returncode == 0, done.stderr
    (offer,) = json.loads(done.stdout)
    (image,) = offer["lists"][0]["images"]
    assert image["attestations"]["passed"] == 1 and image["attestations"]["failed"] == 0
    assert image["attestations"]["by"][0].startswith("site-a: passed (boot-test, ")
    text = j.run_cli(["site", "available", "-c", j.site]).stdout
    assert "attested: 1 passed, 0 failed (site-a: passed" in text
    for source in (j.site, j.sim.path):
        found = j.run_cli(["search", "-r", source, "--json"])
        assert found.returncode == 0, found.stderr
        (row,) = json.loads(found.stdout)["results"]
        assert row["attestations"] == image["attestations"]


def test_a_key_of_no_attester_is_refused(world: World) -> None:
    """Alice is an endorser, not an attester; her commit of a statement is refused."""
    forged = world.attest(world.statement(), commit_signer=world.j.alice)
    stderr = world.refused_everywhere(forged, "attestation-signer")
    assert "endorser alice" in stderr and "may not attest" in stderr


def test_a_statement_signed_by_an_unlisted_key_is_refused(world: World) -> None:
    """site-a commits, but the statement's signature is by a key in no policy."""
    stranger = ssh_signer("stranger")
    forged = world.attest(world.statement(), sig_signer=stranger)
    stderr = world.refused_everywhere(forged, "attestation-signer")
    assert "not in the policy" in stderr


def test_a_statement_on_another_attesters_path_is_refused(world: World) -> None:
    """site-a writes below attestations/site-b/: a foreign path."""
    forged = world.attest(world.statement(attester="site-b"), path_attester="site-b")
    stderr = world.refused_everywhere(forged, "attestation-path")
    assert "site-a may write only below attestations/site-a/" in stderr
    # Naming another attester inside one's own path is refused as well.
    inside = world.attest(world.statement(attester="site-b"))
    world.refused_everywhere(inside, "attestation-path")


def test_a_statement_about_an_unknown_image_is_refused(world: World) -> None:
    ghost = new_id()
    forged = world.attest(world.statement(image=ghost), image=ghost)
    stderr = world.refused_everywhere(forged, "attestation-subject")
    assert f"image {ghost} is in no list" in stderr
    # A known UUID with another image's digest does not pass either.
    wrong = world.attest(world.statement(sha512="0" * 128))
    world.refused_everywhere(wrong, "attestation-subject")


def test_a_newer_statement_replaces_an_older_one(world: World) -> None:
    j = world.j
    first = world.attest(world.statement(), move=True)
    j.hook_accepts(first)
    newer = world.attest(world.statement(result="failed", when=T0 + timedelta(days=2)),
                         move=True)
    j.hook_accepts(newer)
    assert j.verify().returncode == 0
    assert j.sync(NOW).exit_code == 0 and j.trusted() == newer
    assert world.counts() == (0, 1)
    # Replacing it with an older (or equally old) statement is refused.
    older = world.attest(world.statement(when=T0 + timedelta(days=1, hours=1)))
    world.refused_everywhere(older, "attestation-time")
    # And a statement is never deleted.
    path = layout.attestation_path("site-a", world.image_id)
    deleted = j.sim.commit({path: None, path + ".sig": None}, world.site_a, move=False)
    world.refused_everywhere(deleted, "attestation-deleted")


def test_a_removed_attester_counts_no_more(world: World) -> None:
    """Its statement stays in the tree (never deleted), but no policy key stands for it."""
    j = world.j
    j.hook_accepts(world.attest(world.statement(), move=True))
    assert world.counts() == (1, 0)

    def drop(raw: dict[str, Any]) -> None:
        del raw["attesters"]["site-a"]
        del raw["keys"][world.site_a.key_id]
        raw["rules"] = [r for r in raw["rules"] if r.get("attesters") != ["site-a"]]

    removal, _ = j.sim.change_policy(lambda p: edited(p, drop))
    j.hook_accepts(removal)
    assert world.counts() == (0, 0)
    assert j.verify().returncode == 0


def test_concurrent_statements_merge_to_the_latest_per_attester(world: World,
                                                                tmp_path: Path) -> None:
    """Two mirrors diverge: site-a and site-b attest on one, site-a again (later) on the
    other. The site's deterministic merge keeps both attesters, and site-a's latest."""
    j = world.j
    other = j.sim.copy_to(tmp_path / "mirror2.git")
    first = world.attest(world.statement(), move=True)
    later = world.statement(result="failed", when=T0 + timedelta(days=2))
    by_b = world.statement(attester="site-b", result="failed")
    changes: dict[str, bytes | None] = {}
    for attester, data, signer in (("site-a", later, world.site_a),
                                   ("site-b", by_b, world.site_b)):
        path = layout.attestation_path(attester, world.image_id)
        changes = {path: data, path + ".sig": signer.sign(data, namespace=NAMESPACE_ATTESTATION)}
        other.commit(changes, signer, message=f"Attest by {attester}")
    config = j.site.read_text(encoding="utf-8")
    j.site.write_text(config.replace(f'"{j.sim.path}"', f'"{j.sim.path}", "{other.path}"'),
                      encoding="utf-8")
    assert str(other.path) in j.site.read_text(encoding="utf-8")
    report = j.sync(NOW)
    assert report.exit_code == 0, report.to_json()
    merged = j.trusted()
    assert merged not in (first, other.head, None)
    repo = j.site.parent / "state" / "repos" / "test.git"
    show = subprocess.run(["git", "-C", repo, "show",
                           f"{merged}:{layout.attestation_path('site-a', world.image_id)}"],
                          capture_output=True, check=True).stdout
    assert show == later
    found = j.run_cli(["search", "-r", j.site, "--json"])
    (row,) = json.loads(found.stdout)["results"]
    assert (row["attestations"]["passed"], row["attestations"]["failed"]) == (0, 2)
    assert j.cached() == {world.image_id}


def test_site_available_counts_an_attester_only_until_its_entry_expires(world: World) -> None:
    """As `gitreg search` and the web catalogue do (tests/test_catalogue_attesters.py)."""
    from gitreg.model.dates import format_date
    from gitreg.site.available import available
    from gitreg.site.config import load_config

    j = world.j
    world.attest(world.statement(), move=True)
    until = NOW + timedelta(hours=1)
    j.sim.change_policy(lambda p: edited(p, lambda raw: raw["attesters"]["site-a"].update(
        {"expires": format_date(until)})))
    assert j.sync(NOW).exit_code == 0
    assert j.trusted() == j.sim.head

    def counts(at: datetime) -> tuple[int, int]:
        (offer,) = available(load_config(Path(j.site)), now=at)
        (image,) = offer.lists[0]["images"]
        return image["attestations"]["passed"], image["attestations"]["failed"]

    assert counts(NOW) == (1, 0)
    assert counts(until + timedelta(seconds=1)) == (0, 0)


def test_an_image_listed_with_an_upper_case_uuid_is_attested_by_its_lower_case_one(
        world: World) -> None:
    """A list may write a UUID in either case; a statement names it in lower case."""
    j = world.j
    other = j.image("alma-10")
    other["dc:identifier"] = str(other["dc:identifier"]).upper()
    published = j.publish(j.alice, j.list_a, [world.image, other])
    j.hook_accepts(published)
    lower = str(other["dc:identifier"]).lower()
    statement = world.statement(image=lower, sha512=str(other["sl:checksum:sha512"]))
    accepted = world.attest(statement, image=lower, move=True)
    j.hook_accepts(accepted)
    assert j.verify().returncode == 0
    report = j.sync(NOW)
    assert report.exit_code == 0
    assert j.trusted() == accepted
    assert j.cached() == {world.image_id, lower}
