"""`gitreg list new` fills the hv:endorser fields without X.509 names typed by hand.

SSH and OpenPGP endorsers get the documented defaults (docs/endorser.md,
"Endorser fields"); X.509 endorsers get their certificate's names, which
publish and the hook still bind strictly.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import ClassVar

import pytest

from gitreg.model.dates import utcnow
from gitreg.publish import policy_edit
from gitreg.publish.drafts import edit_policy
from gitreg.publish.endorser_fields import GitIdentity, find_endorser, resolve_fields
from gitreg.publish.policy_edit import add_signature
from gitreg.publish.publication import publish
from gitreg.publish.registry_init import create_registry
from gitreg.publish.workcopy import WorkingCopy
from gitreg.signing.keys import load_public_key
from gitreg.signing.ssh import SSHPublicKey, SSHSigner

# The session's GIT_AUTHOR_* would override user.name/user.email, as for git.
NO_AUTHOR = {"GIT_AUTHOR_NAME": "", "GIT_AUTHOR_EMAIL": ""}


def list_new(run_cli, reg: Path, *args: str):
    return run_cli(["list", "new", *args], cwd=reg, env=NO_AUTHOR)


def test_git_author_environment_overrides_the_config(run_cli, tmp_path, ssh_keys):
    alice = SSHPublicKey.from_file(ssh_keys["alice"].public)
    reg = registry(tmp_path, ssh_keys, {"alice": [alice]})
    git("-C", reg, "config", "user.name", "Config Name")
    git("-C", reg, "config", "user.email", "config@example.org")
    created = run_cli(["list", "new", "--title", "T"], cwd=reg,
                      env={"GIT_AUTHOR_NAME": "Env Name", "GIT_AUTHOR_EMAIL": "env@example.org"})
    assert created.returncode == 0, created.stderr
    fields = endorser_of(reg, created.stdout.strip())
    assert (fields["dc:creator"], fields["hv:email"]) == ("Env Name", "env@example.org")


def git(*args: str | Path) -> None:
    subprocess.run(["git", *map(str, args)], check=True, capture_output=True)


def registry(tmp_path: Path, ssh_keys, endorsers: dict[str, list], *,
             emails: dict[str, str] | None = None) -> Path:
    """A published registry (root bob) with ``endorsers`` -> public keys."""
    reg = tmp_path / "reg"
    bob = SSHSigner.from_file(ssh_keys["bob"].private)
    create_registry(reg, name="Example registry", root_signers=[bob], threshold=1,
                    now=utcnow())
    copy = WorkingCopy.open(reg)
    draft = copy.draft_policy()
    for name, keys in endorsers.items():
        email = (emails or {}).get(name)
        draft = edit_policy(copy.published_policy(), draft,
                            lambda p, n=name, k=keys, e=email: policy_edit.add_endorser(
                                p, n, k, email=e, allow=["imagelists/*"]))
    copy.write_policy(add_signature(draft, bob))
    publish(copy, list_signer=None, commit_signer=bob, now=utcnow())
    return reg


def endorser_of(reg: Path, list_id: str) -> dict[str, str]:
    data = json.loads((reg / "imagelists" / f"{list_id}.json").read_text(encoding="utf-8"))
    return data["hv:imagelist"]["hv:endorser"]["hv:x509"]


def registry_id(reg: Path) -> str:
    return WorkingCopy.open(reg).published_policy().signed.registry


def test_ssh_endorser_publishes_without_any_endorser_setting(run_cli, tmp_path, ssh_keys):
    alice = SSHPublicKey.from_file(ssh_keys["alice"].public)
    reg = registry(tmp_path, ssh_keys, {"alice": [alice]}, emails={"alice": "alice@example.org"})
    git("-C", reg, "config", "user.name", "Alice Endorser")
    created = list_new(run_cli, reg, "--title", "Base images")
    assert created.returncode == 0, created.stderr
    list_id = created.stdout.strip()
    assert endorser_of(reg, list_id) == {
        "hv:dn": "/O=gitreg/CN=alice",
        "hv:ca": f"/O=gitreg/CN=registry {registry_id(reg)}",
        "hv:email": "alice@example.org",  # the policy's entry wins over git's user.email
        "dc:creator": "Alice Endorser",
    }
    published = run_cli(["publish", "--key", ssh_keys["alice"].private], cwd=reg)
    assert published.returncode == 0, published.stderr
    assert run_cli(["verify", reg]).returncode == 0


def test_endorser_is_found_by_git_email_among_several(run_cli, tmp_path, ssh_keys):
    keys = {name: [SSHPublicKey.from_file(ssh_keys[name].public)] for name in ("alice", "carol")}
    reg = registry(tmp_path, ssh_keys, keys, emails={"alice": "alice@example.org",
                                                     "carol": "carol@example.org"})
    git("-C", reg, "config", "user.email", "carol@example.org")
    git("-C", reg, "config", "user.name", "Carol")
    created = list_new(run_cli, reg, "--title", "Carol's")
    assert created.returncode == 0, created.stderr
    fields = endorser_of(reg, created.stdout.strip())
    assert (fields["hv:dn"], fields["hv:email"], fields["dc:creator"]) == \
        ("/O=gitreg/CN=carol", "carol@example.org", "Carol")
    explicit = list_new(run_cli, reg, "--title", "Alice's", "--endorser", "alice")
    assert endorser_of(reg, explicit.stdout.strip())["hv:dn"] == "/O=gitreg/CN=alice"


def test_settings_and_options_win_over_the_defaults(run_cli, tmp_path, ssh_keys):
    alice = SSHPublicKey.from_file(ssh_keys["alice"].public)
    reg = registry(tmp_path, ssh_keys, {"alice": [alice]})
    git("-C", reg, "config", "gitreg.endorser.dn", "/DC=org/DC=example/CN=Alice")
    git("-C", reg, "config", "user.email", "git@example.org")
    created = list_new(run_cli, reg, "--title", "T", "--creator", "A. Endorser")
    assert created.returncode == 0, created.stderr
    fields = endorser_of(reg, created.stdout.strip())
    assert fields["hv:dn"] == "/DC=org/DC=example/CN=Alice"
    assert fields["dc:creator"] == "A. Endorser"
    assert fields["hv:email"] == "git@example.org"  # the policy entry has no email


def test_x509_endorser_gets_its_certificate_names(run_cli, tmp_path, ssh_keys, x509_pki):
    identity = x509_pki.alice
    chained = tmp_path / "alice-chain.pem"
    chained.write_bytes(identity.cert_pem + x509_pki.issuing.cert_pem + x509_pki.root.cert_pem)
    grid = [load_public_key(str(chained), at=utcnow()),
            SSHPublicKey.from_file(ssh_keys["mallory"].public)]
    reg = registry(tmp_path, ssh_keys, {"grid": grid}, emails={"grid": "grid@example.org"})
    git("-C", reg, "config", "user.name", "Grid Admin")
    created = list_new(run_cli, reg, "--title", "Grid images")
    assert created.returncode == 0, created.stderr
    list_id = created.stdout.strip()
    fields = endorser_of(reg, list_id)
    assert (fields["hv:dn"], fields["hv:ca"]) == (identity.dn, identity.ca_dn)
    published = run_cli(["publish", "--key", f"x509:{chained}:{identity.key_path}",
                         "--commit-key", ssh_keys["mallory"].private], cwd=reg)
    assert published.returncode == 0, published.stderr


def test_nobody_to_name_is_a_usage_error_naming_the_fields(run_cli, tmp_path, ssh_keys):
    keys = {name: [SSHPublicKey.from_file(ssh_keys[name].public)] for name in ("alice", "carol")}
    reg = registry(tmp_path, ssh_keys, keys)
    before = sorted(p.name for p in (reg / "imagelists").iterdir()) \
        if (reg / "imagelists").exists() else []
    result = list_new(run_cli, reg, "--title", "T")
    assert result.returncode == 2
    assert "hv:dn (gitreg.endorser.dn)" in result.stderr
    assert "--endorser NAME" in result.stderr
    assert "Traceback" not in result.stderr
    after = sorted(p.name for p in (reg / "imagelists").iterdir()) \
        if (reg / "imagelists").exists() else []
    assert after == before
    unknown = list_new(run_cli, reg, "--title", "T", "--endorser", "zoe")
    assert unknown.returncode == 2
    assert "--endorser zoe: no such endorser in the policy (endorsers: alice, carol)" \
        in unknown.stderr


REGISTRY = "6f1c3c52-4d0e-4f55-9f43-2d3a3c0b8e11"


class NoEndorsers:
    """The two things the defaults read of a policy with no endorsers."""

    endorsers: ClassVar[dict[str, object]] = {}
    registry = REGISTRY


@pytest.mark.parametrize(("name", "creator", "expected"), [
    ("Ann/Lee", None, "/O=gitreg/CN=Ann Lee"),
    ("  Ann   Lee ", None, "/O=gitreg/CN=Ann Lee"),
    ("Ann", "Dr. Ann", "/O=gitreg/CN=Dr. Ann"),
])
def test_defaults_without_an_endorser_keep_slash_form(name, creator, expected):
    policy = NoEndorsers()
    assert find_endorser(policy, name=None, emails=("x@example.org",)) is None
    fields = resolve_fields(given={"dc:creator": creator}, settings={}, policy=policy,
                            endorser=None, identity=GitIdentity(name, "ann@example.org"))
    assert fields == {"hv:dn": expected, "hv:ca": f"/O=gitreg/CN=registry {REGISTRY}",
                      "hv:email": "ann@example.org", "dc:creator": creator or name}
