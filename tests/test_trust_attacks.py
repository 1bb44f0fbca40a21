"""Attacks on the time-dependent and limit rules, each judged in three places.

Every attack is forged in a registry simulator's repository, which is at the
same time the hookless mirror a site fetches from, and judged by:

- the pre-receive hook (git CLI push to a `gitreg server init` repository):
  refused naming the rule; the server's main and object store unchanged;
- a site (the real sync pipeline, fetching the mirror over git, downloading
  from a real HTTP image server) at a chosen reference time: the image never
  reaches the cache, the report names the rule, the trusted commit stays
  where the state is refused;
- `gitreg verify` on the mirror.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from gitreg.gitstore.verify_cache import SqliteCache
from gitreg.model.dates import format_date
from gitreg.model.policy import Limits, Policy, PolicyEnvelope, fingerprint
from gitreg.publish import policy_edit
from gitreg.server.hook import CACHE_FILE, TRUST_ROOT_KEY
from gitreg.server.init import init_server
from gitreg.signing.ssh import SSHSigner
from gitreg.signing.x509 import X509PublicKey, X509Signer
from gitreg.site.config import load_config
from gitreg.site.state import SiteState
from gitreg.site.sync import SyncReport, sync
from gitreg.verify import layout
from gitreg.verify.context import RULES_VERSION
from tests.fixtures.env import RunCli
from tests.fixtures.git_server import git
from tests.fixtures.image_server import ImageServer
from tests.fixtures.x509_pki import TestPKI, build_crl
from tests.registry_simulator import (
    TEST_LIMITS,
    ListEndorser,
    RegistrySimulator,
    new_id,
    ssh_signer,
)
from tests.site_registry import write_site

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(days=10)


def edited(envelope: PolicyEnvelope, change: Any) -> PolicyEnvelope:
    """``envelope`` with ``change(raw signed dict)`` applied, version +1, unsigned."""
    raw = envelope.signed.to_dict()
    change(raw)
    raw["version"] = envelope.version + 1
    return PolicyEnvelope(Policy(raw))


@dataclass
class Judges:
    """One registry, its hooked server, a site following its hookless mirror."""

    sim: RegistrySimulator
    server: Path
    site: Path
    images: ImageServer
    run_cli: RunCli
    alice: SSHSigner
    dave: SSHSigner
    list_a: str
    list_d: str

    # --- forging ---------------------------------------------------------

    def image(self, name: str) -> dict[str, object]:
        """A real image, served over HTTP, as an ``hv:image`` body."""
        body = name.encode() * 97
        image_id = new_id()
        return {"dc:identifier": image_id, "dc:title": name, "dc:description": name,
                "hv:uri": self.images.serve(f"/{image_id}.img", body), "hv:size": len(body),
                "sl:checksum:sha512": hashlib.sha512(body).hexdigest(), "sl:arch": "x86_64",
                "sl:os": "Linux", "sl:osversion": "AlmaLinux 9", "sl:comments": "",
                "hv:hypervisor": "QEMU-KVM", "hv:version": "1", "hv:format": "raw"}

    def publish(self, signer: SSHSigner, list_id: str, images: list[dict[str, object]], *,
                when: datetime | None = None) -> str:
        data = self.sim.list_version(list_id, version=self.sim.next_version(list_id),
                                     images=images, created=when)
        oid = self.sim.commit(self.sim.signed_list(list_id, data, signer), signer, when=when)
        self.sim.lists[list_id] = (self.sim.next_version(list_id),
                                   tuple(str(i["dc:identifier"]) for i in images))
        return oid

    # --- the hook ----------------------------------------------------------

    def server_main(self) -> str:
        return git("-C", self.server, "rev-parse", "refs/heads/main").stdout.strip()

    def push(self, oid: str) -> subprocess.CompletedProcess[str]:
        return git("-C", self.sim.path, "push", str(self.server), f"{oid}:refs/heads/main",
                   check=False)

    def hook_refuses(self, oid: str, rule: str) -> str:
        before = self.server_main()
        result = self.push(oid)
        assert result.returncode != 0, result.stderr
        assert f"[rule: {rule}]" in result.stderr, result.stderr
        assert self.server_main() == before
        assert git("-C", self.server, "cat-file", "-e", oid, check=False).returncode != 0
        return result.stderr

    def hook_accepts(self, oid: str) -> None:
        result = self.push(oid)
        assert result.returncode == 0, result.stderr
        assert self.server_main() == oid

    # --- gitreg verify -------------------------------------------------------

    def verify(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run_cli(["verify", self.sim.path, *args])

    def verify_refuses(self, rule: str) -> str:
        result = self.verify()
        assert result.returncode == 1, result.stderr
        assert f"[rule: {rule}]" in result.stderr, result.stderr
        return result.stderr

    # --- the site ------------------------------------------------------------

    def sync(self, at: datetime) -> SyncReport:
        return sync(load_config(self.site), now=at)

    def cached(self) -> set[str]:
        cache = self.site.parent / "state" / "cache"
        return {p.name for p in cache.iterdir()} if cache.exists() else set()

    def trusted(self) -> str | None:
        with SiteState.open(self.site.parent / "state" / "state.sqlite") as state:
            known = state.registry("test")
            return known.trusted_commit if known else None


MakeJudges = Callable[..., Judges]


@pytest.fixture
def make_judges(tmp_path: Path, run_cli: RunCli, image_server: ImageServer) -> MakeJudges:
    def make(*, policy_expires: int | None = None, max_images: int = 1000) -> Judges:
        return _judges(tmp_path, run_cli, image_server, policy_expires=policy_expires,
                       max_images=max_images)
    return make


@pytest.fixture
def judges(make_judges: MakeJudges) -> Judges:
    return make_judges()


def _judges(tmp_path: Path, run_cli: RunCli, image_server: ImageServer, *,
            policy_expires: int | None, max_images: int) -> Judges:
    """Alice owns list_a, dave list_d; dave expires at T0 + 3 days; the policy at
    T0 + ``policy_expires`` days (default a year), lists at most ``max_images``."""
    limits = Limits(TEST_LIMITS.max_file_size, TEST_LIMITS.max_list_lifetime_days, max_images)
    sim = RegistrySimulator.create(tmp_path / "mirror.git", start=T0, limits=limits)
    alice, dave = ssh_signer("alice"), ssh_signer("dave")
    list_a, list_d = new_id(), new_id()
    sim.add_endorser("alice", [alice.public_key()], [layout.list_path(list_a)])
    sim.add_endorser("dave", [dave.public_key()], [layout.list_path(list_d)])
    expiry = format_date(T0 + timedelta(days=3))
    sim.change_policy(lambda p: edited(
        p, lambda raw: raw["endorsers"]["dave"].update(expires=expiry)))
    if policy_expires is not None:
        sim.change_policy(
            lambda p: policy_edit.with_expires(p, T0 + timedelta(days=policy_expires)))
    root = sim.store.commits_between(None, sim.head)[0]
    entry = sim.store.entry(sim.store.commit(root).tree, layout.POLICY_FILE)
    assert entry is not None
    trust_root = fingerprint(sim.store.blob(entry.oid, layout.BOOTSTRAP_MAX_SIZE))
    site = write_site(tmp_path / "site", [{"name": "test", "remotes": [str(sim.path)],
                                           "trust_root": trust_root}],
                      settings='download_workers = 1\nmin_rate = 1\ndeadline = "30s"\n')
    return Judges(sim=sim, server=tmp_path / "server.git", site=site, images=image_server,
                  run_cli=run_cli, alice=alice, dave=dave, list_a=list_a, list_d=list_d)


def seed_server(judges: Judges) -> None:
    init_server(judges.server, source=judges.sim.path)


# --- endorser expiry -------------------------------------------------------------------


def test_backdated_commit_by_an_expired_endorser(judges: Judges) -> None:
    j = judges
    image_a, image_d = j.image("alice-1"), j.image("dave-1")
    j.publish(j.alice, j.list_a, [image_a])
    j.publish(j.dave, j.list_d, [image_d], when=T0 + timedelta(hours=1))
    seed_server(j)
    # While dave is valid his image is installed; once he expired, it is retired.
    assert j.sync(T0 + timedelta(days=1)).exit_code == 0
    assert j.cached() == {image_a["dc:identifier"], image_d["dc:identifier"]}
    report = j.sync(NOW)
    assert j.cached() == {image_a["dc:identifier"]}
    retired = {r["uuid"]: r["reason"] for r in report.to_json()["plan"]["retire"]}
    assert "endorser dave" in retired[str(image_d["dc:identifier"])]

    # dave's key, after his expiry, dates a commit and its list before it.
    forged_image = j.image("dave-2")
    forged = j.publish(j.dave, j.list_d, [forged_image], when=T0 + timedelta(days=2))
    stderr = j.hook_refuses(forged, "endorser-expired")
    assert "endorser dave expired" in stderr

    report = j.sync(NOW)
    assert report.exit_code == 0
    (outcome,) = report.registries
    assert outcome.target == forged  # the history is valid, its content inert
    assert any("endorser dave" in f and "[rule: endorser-expired]" in f
               for f in outcome.state_findings), outcome.state_findings
    assert forged_image["dc:identifier"] not in j.cached()
    assert j.images.hits(f"/{forged_image['dc:identifier']}.img") == []

    result = j.verify()
    assert result.returncode == 0, result.stderr
    assert "endorser dave" in result.stderr and "[rule: endorser-expired]" in result.stderr


# --- policy expiry ---------------------------------------------------------------------


def test_list_commit_under_an_expired_policy(make_judges: MakeJudges) -> None:
    j = make_judges(policy_expires=5)
    image_a = j.image("alice-1")
    base = j.publish(j.alice, j.list_a, [image_a])
    seed_server(j)
    assert j.sync(T0 + timedelta(days=1)).exit_code == 0
    assert j.trusted() == base and j.cached() == {image_a["dc:identifier"]}

    j.sim.clock = NOW - timedelta(hours=1)
    late_image = j.image("alice-2")
    late = j.publish(j.alice, j.list_a, [late_image])
    j.hook_refuses(late, "policy-expired")
    j.verify_refuses("policy-expired")
    report = j.sync(NOW)
    assert report.exit_code == 1
    (outcome,) = report.registries
    assert outcome.refused is not None and "[rule: policy-expired]" in outcome.refused
    assert j.trusted() == base
    assert j.cached() == {image_a["dc:identifier"]}
    assert j.images.hits(f"/{late_image['dc:identifier']}.img") == []

    # The root key holders renew the policy on top of main: accepted everywhere.
    j.sim.set_main(base)
    renewal, _ = j.sim.change_policy(
        lambda p: policy_edit.with_expires(p, NOW + timedelta(days=200)))
    j.hook_accepts(renewal)
    assert j.verify().returncode == 0
    assert j.sync(NOW).exit_code == 0
    assert j.trusted() == renewal
    assert j.cached() == {image_a["dc:identifier"]}


# --- max_images_per_list ---------------------------------------------------------------


def test_list_with_one_image_more_than_max_images_per_list(make_judges: MakeJudges) -> None:
    j = make_judges(max_images=3)
    seed_server(j)
    base = j.sim.head
    too_many = [j.image(f"many-{n}") for n in range(4)]
    forged = j.publish(j.alice, j.list_a, too_many)
    stderr = j.hook_refuses(forged, "list-images")
    assert "4 images" in stderr and "3" in stderr
    j.verify_refuses("list-images")
    report = j.sync(NOW)
    (outcome,) = report.registries
    assert [r.rule for r in outcome.remotes] == ["list-images"]
    assert j.cached() == set() and j.trusted() is None
    assert all(j.images.hits(f"/{i['dc:identifier']}.img") == [] for i in too_many)

    # Exactly the limit is accepted by all three.
    j.sim.set_main(base)
    j.sim.lists.pop(j.list_a, None)
    enough = too_many[:3]
    accepted = j.publish(j.alice, j.list_a, enough)
    j.hook_accepts(accepted)
    assert j.verify().returncode == 0
    assert j.sync(NOW).exit_code == 0
    assert j.cached() == {str(i["dc:identifier"]) for i in enough}


# --- X.509: a certificate revoked by a CRL ----------------------------------------------


def test_x509_endorser_whose_certificate_was_revoked_by_a_crl(
        judges: Judges, x509_pki: TestPKI, tmp_path: Path) -> None:
    """The policy carries the issuing CA's CRL, which revokes grid's certificate
    three days ago: refused at the reference time, valid at one before it."""
    j, pki = judges, x509_pki
    grid = pki.issue("grid", tmp_path / "grid", not_before=NOW - timedelta(days=20))
    crl = build_crl(pki.issuing, [grid.cert], revoked_at=NOW - timedelta(days=3),
                    last_update=NOW - timedelta(days=2))
    identity = X509PublicKey(grid.dn, grid.ca_dn, [pki.issuing.cert_pem, pki.root.cert_pem],
                             [crl.public_bytes(serialization.Encoding.PEM)])
    commits = ssh_signer("grid-commits")
    list_g = new_id()
    j.sim.add_endorser("grid", [commits.public_key(), identity], [layout.list_path(list_g)])
    seed_server(j)
    image = j.image("grid-1")
    data = j.sim.list_version(list_g, version="1", images=[image],
                              endorser=ListEndorser(dn=grid.dn, ca=grid.ca_dn))
    signed = {layout.list_path(list_g): data,
              layout.sig_path(list_g): X509Signer(grid.cert_pem, grid.key_pem).sign(data)}
    forged = j.sim.commit(signed, commits)

    stderr = j.hook_refuses(forged, "list-signature")
    assert "revoked" in stderr
    assert "revoked" in j.verify_refuses("list-signature")
    report = j.sync(NOW)
    (outcome,) = report.registries
    assert [r.rule for r in outcome.remotes] == ["list-signature"]
    assert "revoked" in outcome.remotes[0].detail
    assert j.cached() == set() and j.trusted() is None
    assert j.images.hits(f"/{image['dc:identifier']}.img") == []

    # Judged at a reference time before the revocation, the same history is valid.
    before = format_date(NOW - timedelta(days=4))
    assert j.verify("--at", before).returncode == 0
    assert j.sync(NOW - timedelta(days=4)).exit_code == 0
    assert j.cached() == {image["dc:identifier"]}


# --- the verdict cache: keyed on the rules version --------------------------------------


@pytest.mark.parametrize("where", ["hook", "site"])
def test_a_verdict_cached_under_an_older_rules_version_is_verified_again(
        make_judges: MakeJudges, where: str) -> None:
    """A cache filled under older rules (here: rules that did not count images)
    says a list of 4 images under a limit of 3 was verified; the current rules
    judge it again and refuse it."""
    j = make_judges(max_images=3)
    seed_server(j)
    forged = j.publish(j.alice, j.list_a, [j.image(f"old-{n}") for n in range(4)])
    if where == "hook":
        path = j.server / CACHE_FILE
    else:
        path = j.site.parent / "state" / "repositories" / "test.verify.sqlite"
    trust_root = git("-C", j.server, "config", TRUST_ROOT_KEY).stdout.strip()
    old = SqliteCache(path, trust_root=trust_root, rules_version=RULES_VERSION - 1)
    old.mark_commit_verified(forged)
    old.close()
    # Under the same rules version the cached verdict is what the verifier uses...
    same = SqliteCache(path, trust_root=trust_root, rules_version=RULES_VERSION - 1)
    assert same.is_commit_verified(forged)
    same.close()
    # ...under the current one it is gone, and the commit is judged again.
    if where == "hook":
        j.hook_refuses(forged, "list-images")
    else:
        report = j.sync(NOW)
        (outcome,) = report.registries
        assert [r.rule for r in outcome.remotes] == ["list-images"]
        assert j.cached() == set() and j.trusted() is None
    current = SqliteCache(path, trust_root=trust_root)
    assert not current.is_commit_verified(forged)
    current.close()


# --- a list dated in the future (to outlive the policy's maximum lifetime) --------------


def test_list_dated_in_the_future(judges: Judges) -> None:
    j = judges
    seed_server(j)
    image = j.image("future")
    created = NOW + timedelta(days=100)
    data = j.sim.list_version(j.list_a, version="1", images=[image], created=created,
                              expires=created + timedelta(days=20))
    forged = j.sim.commit(j.sim.signed_list(j.list_a, data, j.alice), j.alice)
    j.hook_refuses(forged, "list-dates")
    result = j.verify()
    assert result.returncode == 0, result.stderr
    assert "[rule: list-dates]" in result.stderr
    report = j.sync(NOW)
    assert report.exit_code == 0
    assert j.cached() == set()
    assert j.images.hits(f"/{image['dc:identifier']}.img") == []
    dropped = report.to_json()["plan"]
    assert dropped["download"] == []
    # Once its date has come the list is live (and its lifetime bounds it from there).
    assert j.sync(created + timedelta(hours=1)).exit_code == 0
    assert j.cached() == {image["dc:identifier"]}
