"""What each verification mode checks, at one reference time (gitreg.verify.context).

The same commits are judged by a push context (the hook, the publish
pre-check) and by a history or site context (``gitreg verify``, a site, a
mirror): push refuses a commit that acts through an expired endorser or
policy; history and site verify the history and judge expiry on the state.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitreg.errors import PolicyViolationError
from gitreg.model.dates import format_date
from gitreg.model.policy import Policy, PolicyEnvelope
from gitreg.publish import policy_edit
from gitreg.signing.ssh import SSHSigner
from gitreg.verify import layout
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import RULES_VERSION, Mode, VerifyContext
from gitreg.verify.history import Verifier
from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(days=10)


def edited(envelope: PolicyEnvelope, change: Any) -> PolicyEnvelope:
    """``envelope`` with ``change(raw signed dict)`` applied, version +1, unsigned."""
    raw = envelope.signed.to_dict()
    change(raw)
    raw["version"] = envelope.version + 1
    return PolicyEnvelope(Policy(raw))


def endorser_expires(name: str, when: datetime) -> Any:
    def change(raw: dict[str, Any]) -> None:
        raw["endorsers"][name]["expires"] = format_date(when)
    return change


def verifier(sim: RegistrySimulator, context: VerifyContext) -> Verifier:
    return Verifier(sim.store, MemoryCache(), context=context)


def test_one_constructor_per_mode_and_the_rules_version() -> None:
    assert VerifyContext.for_push(NOW).mode is Mode.PUSH
    assert VerifyContext.for_history(NOW).mode is Mode.HISTORY
    assert VerifyContext.for_site(NOW).mode is Mode.SITE
    assert VerifyContext.for_site(NOW).rules_version == RULES_VERSION
    assert VerifyContext.for_push(NOW).refuses_expired_at_commit
    assert not VerifyContext.for_site(NOW).refuses_expired_at_commit
    with pytest.raises(ValueError, match="time zone"):
        VerifyContext.for_site(NOW.replace(tzinfo=None))


@pytest.fixture
def registry(tmp_path: Path) -> tuple[RegistrySimulator, dict[str, SSHSigner], str, str]:
    """Alice and dave each own a list; dave expires at T0 + 3 days."""
    sim = RegistrySimulator.create(tmp_path / "registry.git", start=T0)
    alice, dave = ssh_signer("alice"), ssh_signer("dave")
    list_a, list_d = new_id(), new_id()
    sim.add_endorser("alice", [alice.public_key()], [layout.list_path(list_a)])
    sim.add_endorser("dave", [dave.public_key()], [layout.list_path(list_d)])
    sim.change_policy(lambda p: edited(p, endorser_expires("dave", T0 + timedelta(days=3))))
    sim.publish(alice, {list_a: [new_id()]})
    sim.publish(dave, {list_d: [new_id()]})
    return sim, {"alice": alice, "dave": dave}, list_a, list_d


def test_a_backdated_commit_by_an_expired_endorser(
        registry: tuple[RegistrySimulator, dict[str, SSHSigner], str, str]) -> None:
    sim, signers, _, list_d = registry
    dave = signers["dave"]
    trusted = sim.head
    backdated = T0 + timedelta(days=2)  # before dave's expiry, as the commit claims
    forged = sim.publish(dave, {list_d: [new_id()]}, when=backdated)

    with pytest.raises(PolicyViolationError) as caught:
        verifier(sim, VerifyContext.for_push(NOW)).verify_range(trusted, forged)
    assert caught.value.rule == "endorser-expired"
    assert "dave" in caught.value.message

    for context in (VerifyContext.for_history(NOW), VerifyContext.for_site(NOW)):
        checked = verifier(sim, context)
        checked.verify_range(None, forged)  # history holds since-expired endorsers
        verdict = checked.judge_state(forged)
        assert verdict.applicable
        assert set(verdict.inert) == {list_d}
        assert verdict.inert[list_d].endorser == "dave"
        assert verdict.inert[list_d].rule == "endorser-expired"
    # Before dave's expiry the same state is live: expiry is judged at the context's time.
    earlier = verifier(sim, VerifyContext.for_site(T0 + timedelta(days=2, hours=1)))
    earlier.verify_range(None, forged)
    verdict = earlier.judge_state(forged)
    assert verdict.inert == {}
    assert verdict.valid_until == T0 + timedelta(days=3)


def test_a_list_commit_under_an_expired_policy_and_its_renewal(
        registry: tuple[RegistrySimulator, dict[str, SSHSigner], str, str]) -> None:
    sim, signers, list_a, _ = registry
    alice = signers["alice"]
    sim.change_policy(lambda p: policy_edit.with_expires(p, T0 + timedelta(days=5)))
    policy_head = sim.head
    sim.clock = NOW - timedelta(hours=1)
    listed = sim.publish(alice, {list_a: [new_id()]})

    with pytest.raises(PolicyViolationError) as caught:
        verifier(sim, VerifyContext.for_push(NOW)).verify_range(policy_head, listed)
    assert caught.value.rule == "policy-expired"
    site = verifier(sim, VerifyContext.for_site(NOW))
    site.verify_range(None, listed)
    refusal = site.judge_state(listed).refusal()
    assert refusal is not None and refusal.rule == "policy-expired"

    # A renewal on top of the expired policy is accepted at push time, and applies.
    sim.set_main(policy_head)
    renewal, _ = sim.change_policy(lambda p: policy_edit.with_expires(p, NOW + timedelta(days=300)))
    verifier(sim, VerifyContext.for_push(NOW)).verify_range(policy_head, renewal)
    site = verifier(sim, VerifyContext.for_site(NOW))
    site.verify_range(None, renewal)
    assert site.judge_state(renewal).applicable
