"""An expired policy freezes a registry's lists until the root keys renew it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gitreg.errors import PolicyViolationError
from gitreg.gitstore.store import RegistryStore
from gitreg.model.dates import utcnow
from gitreg.model.policy import parse_policy
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from tests.test_cli_endorser import (  # the endorser identity fixture applies here too
    _endorser_identity,  # noqa: F401
    git,
    new_list_with_image,
    ok,
    registry_with_alice,
)


def test_list_commits_under_an_expired_policy_are_refused(run_cli, tmp_path, ssh_keys):
    reg = registry_with_alice(run_cli, tmp_path, ssh_keys)
    policy_head = git("-C", reg, "rev-parse", "main")
    image = tmp_path / "disk.img"
    image.write_bytes(b"image bytes\n")
    new_list_with_image(run_cli, reg, image)
    ok(run_cli(["publish", "--key", ssh_keys["alice"].private], cwd=reg))
    head = git("-C", reg, "rev-parse", "main")
    store = RegistryStore.open(reg)
    expires = parse_policy((reg / "policy.json").read_bytes()).signed.expires

    Verifier(store, MemoryCache(),
             context=VerifyContext.for_push(utcnow())).verify_range(policy_head, head)
    late = Verifier(store, MemoryCache(),
                    context=VerifyContext.for_push(expires + timedelta(days=1)))
    with pytest.raises(PolicyViolationError) as caught:
        late.verify_range(policy_head, head)
    assert caught.value.rule == "policy-expired"
    assert "expired" in caught.value.message


def test_policy_expires_renews_the_policy(run_cli, tmp_path, ssh_keys):
    reg = registry_with_alice(run_cli, tmp_path, ssh_keys)
    before = parse_policy((reg / "policy.json").read_bytes()).signed
    ok(run_cli(["policy", "expires", "730"], cwd=reg))
    ok(run_cli(["policy", "sign", "--key", ssh_keys["bob"].private], cwd=reg))
    ok(run_cli(["publish", "--key", ssh_keys["bob"].private], cwd=reg))
    after = parse_policy((reg / "policy.json").read_bytes()).signed
    assert after.version == before.version + 1
    assert after.expires > before.expires
    assert abs(after.expires - (utcnow() + timedelta(days=730))) < timedelta(minutes=5)
    ok(run_cli(["verify", reg]))


def test_policy_expires_refuses_a_non_positive_lifetime(run_cli, tmp_path, ssh_keys):
    reg = registry_with_alice(run_cli, tmp_path, ssh_keys)
    before = (reg / "policy.json").read_bytes()
    done = run_cli(["policy", "expires", "0"], cwd=reg)
    assert done.returncode == 2
    assert "at least 1" in done.stderr
    assert (reg / "policy.json").read_bytes() == before
