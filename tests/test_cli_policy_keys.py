"""`gitreg policy add-key` / `remove-key`: key rotation for an endorser already in the policy.

Through the real CLI: the rotated key publishes, the removed one is refused
by the same verifier the hook runs, and every refusal is exit 2 with one
message and policy.json unchanged.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitreg.publish.workcopy import WorkingCopy
from gitreg.signing.ssh import SSHPublicKey
from tests.test_cli_endorser import make_registry, ok


def key_id(ssh_keys, name: str) -> str:
    return SSHPublicKey.from_file(ssh_keys[name].public).key_id


def publish_policy(run_cli, reg: Path, ssh_keys) -> None:
    ok(run_cli(["policy", "sign", "--key", ssh_keys["bob"].private], cwd=reg))
    ok(run_cli(["publish", "--policy-only", "--key", ssh_keys["bob"].private], cwd=reg))


def new_list(run_cli, reg: Path, title: str) -> str:
    return ok(run_cli(["list", "new", "--title", title], cwd=reg)).stdout.strip()


def test_rotated_key_publishes_and_the_removed_one_is_refused(run_cli, tmp_path, ssh_keys):
    reg = make_registry(tmp_path, ssh_keys, roots=("bob",), alice=True)
    added = ok(run_cli(["policy", "add-key", "alice", "--key", ssh_keys["carol"].public],
                       cwd=reg))
    assert f"added key {key_id(ssh_keys, 'carol')} to endorser alice" in added.stderr
    assert "draft policy version 3 (published: 2)" in added.stderr
    publish_policy(run_cli, reg, ssh_keys)
    policy = WorkingCopy.open(reg).published_policy().signed
    assert policy.endorser_keys("alice") == (key_id(ssh_keys, "alice"),
                                             key_id(ssh_keys, "carol"))

    new_list(run_cli, reg, "Signed with the new key")
    ok(run_cli(["publish", "--key", ssh_keys["carol"].private], cwd=reg))

    # The key file works as well as its id.
    removed = ok(run_cli(["policy", "remove-key", "alice", ssh_keys["alice"].public], cwd=reg))
    assert f"removed key {key_id(ssh_keys, 'alice')} from endorser alice" in removed.stderr
    publish_policy(run_cli, reg, ssh_keys)
    policy = WorkingCopy.open(reg).published_policy().signed
    assert policy.endorser_keys("alice") == (key_id(ssh_keys, "carol"),)
    assert key_id(ssh_keys, "alice") not in policy.keys

    new_list(run_cli, reg, "Signed with the old key")
    head = subprocess.run(["git", "-C", reg, "rev-parse", "main"], capture_output=True,
                          text=True, check=True).stdout
    refused = run_cli(["publish", "--key", ssh_keys["alice"].private], cwd=reg)
    assert refused.returncode == 1, refused.stderr
    assert "list-signature" in refused.stderr or "commit-signature" in refused.stderr
    assert subprocess.run(["git", "-C", reg, "rev-parse", "main"], capture_output=True,
                          text=True, check=True).stdout == head
    ok(run_cli(["verify", reg]))


def test_key_edits_that_make_no_sense_are_refused_and_change_nothing(run_cli, tmp_path,
                                                                   ssh_keys):
    reg = make_registry(tmp_path, ssh_keys, roots=("bob",), alice=True)
    ok(run_cli(["policy", "add-endorser", "carol", "--key", ssh_keys["carol"].public],
               cwd=reg))
    before = (reg / "policy.json").read_bytes()
    alice, carol = key_id(ssh_keys, "alice"), key_id(ssh_keys, "carol")
    cases = {
        ("add-key", "zoe", "--key", str(ssh_keys["mallory"].public)):
            'no endorser named "zoe" (endorsers: alice, carol)',
        ("add-key", "alice", "--key", str(ssh_keys["alice"].public)):
            f'endorser "alice" already has key {alice}',
        ("add-key", "alice", "--key", str(ssh_keys["carol"].public)):
            f'key {carol} already belongs to endorser "carol"',
        ("remove-key", "alice", alice):
            f'key {alice} is the last key of endorser "alice"',
        ("remove-key", "alice", carol):
            f'endorser "alice" has no key {carol} (its keys: {alice})',
        ("remove-key", "zoe", alice): 'no endorser named "zoe"',
    }
    for args, message in cases.items():
        result = run_cli(["policy", *args], cwd=reg)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.count(message) == 1
        assert "Traceback" not in result.stderr
        assert (reg / "policy.json").read_bytes() == before
    last = run_cli(["policy", "remove-key", "alice", alice], cwd=reg)
    assert "add its new key first (`gitreg policy add-key`)" in last.stderr
