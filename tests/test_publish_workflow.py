"""The endorser workflow as a library: init, policy drafts, publish, log.

Real git repositories in tmp_path, real SSH keys (ssh-keygen, per session),
the real verifier as the pre-check. Refusals assert the typed error, the
rule, and that main and every working-tree file stayed as they were.
"""

from __future__ import annotations

import hashlib
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from gitreg.errors import PolicyViolationError, UsageError
from gitreg.model.dates import utcnow
from gitreg.model.policy import fingerprint, parse_policy
from gitreg.publish import policy_edit
from gitreg.publish.drafts import EndorserFields, ImageFields, add_image, edit_policy, new_list
from gitreg.publish.history import registry_log
from gitreg.publish.policy_edit import add_signature
from gitreg.publish.publication import publish
from gitreg.publish.registry_init import create_registry
from gitreg.publish.signing_keys import commit_signer, load_signing_key
from gitreg.publish.workcopy import WorkingCopy
from gitreg.signing.ssh import SSHPublicKey, SSHSigner
from gitreg.verify import layout
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier

NOW = utcnow()

ENDORSER = EndorserFields(dn="/DC=org/DC=example/CN=Alice", ca="/DC=org/DC=example/CN=CA",
                          email="alice@example.org", creator="Alice")


def git(*args: str | Path) -> str:
    return subprocess.run(["git", *map(str, args)], check=True, capture_output=True,
                          text=True).stdout


def signer(keys, name: str) -> SSHSigner:
    return SSHSigner.from_file(keys[name].private)


def snapshot(copy: WorkingCopy) -> dict[str, bytes]:
    """Every working-tree file (not .git): what a refusal must leave alone."""
    return {str(p.relative_to(copy.workdir)): p.read_bytes()
            for p in sorted(copy.workdir.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(copy.workdir).parts}


def image_fields(title: str = "Alma 9", **extra) -> ImageFields:
    data = title.encode()
    return ImageFields(uri=f"https://images.example.org/{title}.qcow2", size=len(data),
                       sha512=hashlib.sha512(data).hexdigest(), title=title, os="Linux",
                       osversion="9", arch="x86_64", **extra)


@pytest.fixture
def registry(tmp_path: Path, ssh_keys) -> WorkingCopy:
    """Roots bob and carol (threshold 1); endorser alice may change imagelists/*."""
    roots = [signer(ssh_keys, "bob"), signer(ssh_keys, "carol")]
    create_registry(tmp_path / "reg", name="Test registry", root_signers=roots,
                    threshold=1, now=utcnow())
    copy = WorkingCopy.open(tmp_path / "reg")
    alice = SSHPublicKey.from_file(ssh_keys["alice"].public)
    draft = edit_policy(copy.published_policy(), copy.draft_policy(),
                        lambda p: policy_edit.add_endorser(p, "alice", [alice],
                                                           email="alice@example.org",
                                                           allow=["imagelists/*"]))
    copy.write_policy(add_signature(draft, roots[0]))
    result = publish(copy, list_signer=None, commit_signer=roots[0], now=utcnow())
    assert result.policy_version == 2
    return WorkingCopy.open(tmp_path / "reg")


def add_list(copy: WorkingCopy, title: str = "Alice images") -> str:
    imagelist = new_list(title, endorser=ENDORSER)
    add_image(imagelist, image_fields(), copy.draft_lists().values())
    copy.write_list(imagelist)
    return imagelist.identifier


def test_init_creates_a_verifiable_registry_on_main(tmp_path, ssh_keys):
    roots = [signer(ssh_keys, "bob"), signer(ssh_keys, "carol")]
    created = create_registry(tmp_path / "new", name="Fresh", root_signers=roots, threshold=2,
                              now=utcnow())
    copy = WorkingCopy.open(tmp_path / "new")
    policy_bytes = (tmp_path / "new" / "policy.json").read_bytes()
    assert created.policy_fingerprint == fingerprint(policy_bytes)
    assert copy.head() == created.commit
    assert git("-C", tmp_path / "new", "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git("-C", tmp_path / "new", "status", "--porcelain") == ""
    envelope = parse_policy(policy_bytes)
    assert envelope.signed.threshold == 2
    assert {s.keyid for s in envelope.signatures} == {r.key_id for r in roots}
    report = Verifier(copy.store, MemoryCache(), context=VerifyContext.for_history(utcnow()),
                      pinned_policy=created.policy_fingerprint
                      ).verify_range(None, created.commit)
    assert report.verified == [created.commit]


def test_init_refuses_a_non_empty_directory(tmp_path, ssh_keys):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        create_registry(target, name="X", root_signers=[signer(ssh_keys, "bob")],
                        threshold=1, now=utcnow())
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_init_refuses_a_threshold_above_the_root_keys(tmp_path, ssh_keys):
    with pytest.raises(UsageError, match="threshold"):
        create_registry(tmp_path / "r", name="X", root_signers=[signer(ssh_keys, "bob")],
                        threshold=2, now=utcnow())
    assert not (tmp_path / "r").exists()


def test_publish_signs_stamps_and_verifies(registry, ssh_keys):
    list_id = add_list(registry)
    before = utcnow()
    result = publish(registry, list_signer=signer(ssh_keys, "alice"),
                     commit_signer=signer(ssh_keys, "alice"), now=before)
    assert result.commit == registry.head()
    (published,) = result.lists
    assert (published.old_version, published.new_version) == (None, "1")
    imagelist = registry.published_list(list_id)
    assert imagelist is not None
    assert imagelist.created == before
    assert imagelist.expires - imagelist.created == timedelta(days=28)
    # The working tree now holds exactly what main holds, and git agrees.
    assert registry.draft_bytes(layout.list_path(list_id)) == \
        registry.published(layout.list_path(list_id))
    assert git("-C", registry.workdir, "status", "--porcelain") == ""
    # The .sig verifies with ssh-keygen itself, and the whole history with the verifier.
    allowed = registry.workdir.parent / "allowed_signers"
    allowed.write_text(f"alice@example.org {ssh_keys['alice'].public_line}\n")
    subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I",
                    "alice@example.org", "-n", "gitreg-imagelist", "-s",
                    str(registry.path(layout.sig_path(list_id)))],
                   input=registry.path(layout.list_path(list_id)).read_bytes(),
                   check=True, capture_output=True)
    subprocess.run(["git", "-C", str(registry.workdir), "-c",
                    f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", "HEAD"],
                   check=True, capture_output=True)
    verifier = Verifier(registry.store, MemoryCache(),
                        context=VerifyContext.for_history(utcnow()))
    report = verifier.verify_range(None, result.commit)
    assert result.commit in report.verified


def test_publishing_twice_makes_no_second_commit(registry, ssh_keys):
    add_list(registry)
    alice = signer(ssh_keys, "alice")
    first = publish(registry, list_signer=alice, commit_signer=alice, now=utcnow())
    files = snapshot(registry)
    again = publish(registry, list_signer=alice, commit_signer=alice, now=utcnow())
    assert first.commit is not None
    assert again.commit is None and again.parent == first.commit
    assert registry.head() == first.commit
    assert snapshot(registry) == files


def test_refused_policy_leaves_ref_and_files_unchanged(registry, ssh_keys):
    bob = signer(ssh_keys, "bob")
    draft = edit_policy(registry.published_policy(), registry.draft_policy(),
                        lambda p: policy_edit.set_threshold(p, 2))
    registry.write_policy(add_signature(draft, bob))
    head, files = registry.head(), snapshot(registry)
    with pytest.raises(PolicyViolationError) as caught:
        publish(registry, list_signer=None, commit_signer=bob, now=utcnow())
    assert caught.value.rule == "policy-threshold-new"
    carol_id = signer(ssh_keys, "carol").key_id
    assert "signed by 1 of 2 root keys" in caught.value.message
    assert f"needs 1 more signature, by {carol_id}" in caught.value.message
    assert registry.head() == head
    assert snapshot(registry) == files
    # The second root signature is what was missing.
    registry.write_policy(add_signature(registry.draft_policy(), signer(ssh_keys, "carol")))
    assert publish(registry, list_signer=None, commit_signer=bob,
                   now=utcnow()).policy_version == 3


def test_policy_signed_twice_by_one_key_counts_once(registry, ssh_keys):
    bob = signer(ssh_keys, "bob")
    draft = edit_policy(registry.published_policy(), registry.draft_policy(),
                        lambda p: policy_edit.set_threshold(p, 2))
    registry.write_policy(add_signature(add_signature(draft, bob), bob))
    head = registry.head()
    with pytest.raises(PolicyViolationError, match="signed by 1 of 2"):
        publish(registry, list_signer=None, commit_signer=bob, now=utcnow())
    assert registry.head() == head


def test_list_signed_by_an_unknown_key_is_refused_and_nothing_changes(registry, ssh_keys):
    list_id = add_list(registry)
    head, files = registry.head(), snapshot(registry)
    mallory = signer(ssh_keys, "mallory")
    with pytest.raises(PolicyViolationError) as caught:
        publish(registry, list_signer=mallory, commit_signer=mallory, now=utcnow())
    assert caught.value.rule == "commit-signature"
    assert registry.head() == head
    assert snapshot(registry) == files
    assert not registry.path(layout.sig_path(list_id)).exists()


def test_root_key_may_not_publish_lists_it_is_not_allowed(registry, ssh_keys):
    add_list(registry)
    bob = signer(ssh_keys, "bob")
    head, files = registry.head(), snapshot(registry)
    with pytest.raises(PolicyViolationError) as caught:
        publish(registry, list_signer=bob, commit_signer=bob, now=utcnow())
    assert caught.value.rule == "path-authorisation"
    assert (registry.head(), snapshot(registry)) == (head, files)


def test_new_endorser_and_lists_together_get_the_policy_only_hint(registry, ssh_keys):
    bob = signer(ssh_keys, "bob")
    david = SSHPublicKey.from_file(ssh_keys["mallory"].public)
    draft = edit_policy(registry.published_policy(), registry.draft_policy(),
                        lambda p: policy_edit.add_endorser(p, "david", [david],
                                                           allow=["imagelists/*"]))
    registry.write_policy(add_signature(draft, bob))
    list_id = add_list(registry)
    mallory = signer(ssh_keys, "mallory")
    with pytest.raises(PolicyViolationError) as caught:
        publish(registry, list_signer=mallory, commit_signer=mallory, now=utcnow())
    assert "--policy-only" in (caught.value.hint or "")
    result = publish(registry, list_signer=None, commit_signer=bob, now=utcnow(),
                     policy_only=True)
    assert result.policy_version == 3 and result.lists == ()
    assert registry.published(layout.list_path(list_id)) is None
    # Under the new policy the new endorser publishes the list that waited.
    assert publish(registry, list_signer=mallory, commit_signer=mallory,
                   now=utcnow()).lists[0].list_id == list_id


def test_version_bumps_past_the_published_one_and_keeps_a_higher_draft(registry, ssh_keys):
    list_id = add_list(registry)
    alice = signer(ssh_keys, "alice")
    publish(registry, list_signer=alice, commit_signer=alice, now=utcnow())
    draft = registry.draft_list(list_id)
    draft.set_key("dc:description", "second edition")
    registry.write_list(draft)
    assert publish(registry, list_signer=alice, commit_signer=alice,
                   now=utcnow()).lists[0].new_version == "2"
    draft = registry.draft_list(list_id)
    draft.set_key("hv:version", "2024.10")
    registry.write_list(draft)
    assert publish(registry, list_signer=alice, commit_signer=alice,
                   now=utcnow()).lists[0].new_version == "2024.10"
    draft = registry.draft_list(list_id)
    draft.set_key("hv:version", "1.5")  # lower than published: bumped past it instead
    registry.write_list(draft)
    assert publish(registry, list_signer=alice, commit_signer=alice,
                   now=utcnow()).lists[0].new_version == "2024.11"


def test_lifetime_is_capped_by_the_policy(registry, ssh_keys):
    list_id = add_list(registry)
    alice = signer(ssh_keys, "alice")
    notes: list[str] = []
    result = publish(registry, list_signer=alice, commit_signer=alice, now=utcnow(),
                     lifetime_days=4000, notice=notes.append)
    imagelist = registry.published_list(list_id)
    assert imagelist is not None
    assert result.lifetime_days == 365
    assert imagelist.expires - imagelist.created == timedelta(days=365)
    assert notes == ["lifetime 4000 days capped to the policy's maximum of 365 days"]


def test_a_deleted_list_is_refused(registry, ssh_keys):
    list_id = add_list(registry)
    alice = signer(ssh_keys, "alice")
    publish(registry, list_signer=alice, commit_signer=alice, now=utcnow())
    registry.path(layout.list_path(list_id)).unlink()
    head = registry.head()
    with pytest.raises(UsageError, match="never deleted"):
        publish(registry, list_signer=alice, commit_signer=alice, now=utcnow())
    assert registry.head() == head
    assert not registry.path(layout.list_path(list_id)).exists()


def test_decommission_and_log(registry, ssh_keys):
    list_id = add_list(registry)
    alice = signer(ssh_keys, "alice")
    publish(registry, list_signer=alice, commit_signer=alice, now=utcnow())
    draft = registry.draft_list(list_id)
    (image_id,) = draft.image_ids
    draft.remove_image(image_id)
    registry.write_list(draft)
    last = publish(registry, list_signer=alice, commit_signer=alice, now=utcnow())
    entries = registry_log(registry.store, registry.head() or "", list_id=list_id)
    assert [(e.old_version, e.new_version) for e in entries] == [("1", "2"), (None, "1")]
    assert entries[0].commit == last.commit
    assert entries[0].images is not None and entries[0].images.removed == (image_id,)
    assert entries[1].images is not None and entries[1].images.added == (image_id,)
    alice_id = alice.key_id
    assert entries[0].list_signer is not None
    assert (entries[0].list_signer.endorser, entries[0].list_signer.key_id) == \
        ("alice", alice_id)
    everything = registry_log(registry.store, registry.head() or "")
    assert [e.policy_version for e in everything if e.policy_version] == [2, 1]


def test_x509_endorser_signs_lists_with_cms_and_commits_with_ssh(registry, ssh_keys,
                                                                  x509_pki, tmp_path):
    identity = x509_pki.alice
    chained = tmp_path / "alice-chain.pem"
    chained.write_bytes(identity.cert_pem + x509_pki.issuing.cert_pem + x509_pki.root.cert_pem)
    spec = f"x509:{chained}:{identity.key_path}"
    list_signer = load_signing_key(spec)
    with pytest.raises(UsageError, match="--commit-key"):
        commit_signer(list_signer, None)
    from gitreg.signing.keys import load_public_key

    bob = signer(ssh_keys, "bob")
    keys = [load_public_key(str(chained), at=NOW),
            SSHPublicKey.from_file(ssh_keys["mallory"].public)]
    draft = edit_policy(registry.published_policy(), registry.draft_policy(),
                        lambda p: policy_edit.add_endorser(p, "grid", keys, allow=["imagelists/*"]))
    registry.write_policy(add_signature(draft, bob))
    publish(registry, list_signer=None, commit_signer=bob, now=utcnow())
    list_id = add_list(registry, "Grid images")
    result = publish(registry, list_signer=list_signer,
                     commit_signer=commit_signer(list_signer, str(ssh_keys["mallory"].private)),
                     now=utcnow())
    imagelist = registry.published_list(list_id)
    assert imagelist is not None and result.commit == registry.head()
    # vmcatcher binds a list to its signer: hv:dn and hv:ca were set from the certificate.
    assert (imagelist.endorser_dn, imagelist.endorser_ca) == (identity.dn, identity.ca_dn)
    assert registry.path(layout.sig_path(list_id)).read_bytes().startswith(b"-----BEGIN")


def test_openpgp_endorser_signs_lists_and_commits_with_gpg(registry, ssh_keys,
                                                           openpgp_keyring, monkeypatch):
    monkeypatch.setenv("GNUPGHOME", str(openpgp_keyring.gnupghome))
    from gitreg.signing.keys import load_public_key

    fpr = openpgp_keyring.fingerprints["bob"]  # signs with a subkey
    key = load_public_key(f"openpgp:{fpr}", at=NOW)
    bob = signer(ssh_keys, "bob")
    draft = edit_policy(registry.published_policy(), registry.draft_policy(),
                        lambda p: policy_edit.add_endorser(p, "pgp", [key], allow=["imagelists/*"]))
    registry.write_policy(add_signature(draft, bob))
    publish(registry, list_signer=None, commit_signer=bob, now=utcnow())
    list_id = add_list(registry, "PGP images")
    gpg_signer = load_signing_key(f"openpgp:{fpr}")
    result = publish(registry, list_signer=gpg_signer, commit_signer=gpg_signer, now=utcnow())
    assert result.commit == registry.head()
    assert registry.path(layout.sig_path(list_id)).read_bytes().startswith(
        b"-----BEGIN PGP SIGNATURE-----")
    # Plain git accepts the commit signature gitreg made.
    subprocess.run(["git", "-C", str(registry.workdir), "verify-commit", "HEAD"],
                   check=True, capture_output=True)
    (entry,) = registry_log(registry.store, result.commit or "", list_id=list_id)
    assert entry.list_signer is not None
    assert (entry.list_signer.endorser, entry.list_signer.key_id) == ("pgp", fpr)
    assert entry.commit_signer.endorser == "pgp"
