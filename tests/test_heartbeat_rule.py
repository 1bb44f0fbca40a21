"""Signed freshness, the pure part: the policy's ``heartbeat`` field, statements, verdicts.

No git and no clock: statements are signed in-process with ssh-keygen-made
keys, and time is the ``VerifyContext`` reference time.
"""

from __future__ import annotations

import json
import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitreg.errors import InvalidDocumentError, PolicyViolationError, UsageError
from gitreg.model.policy import PolicyEnvelope, parse_duration, parse_policy
from gitreg.publish.policy_edit import (
    add_endorser,
    new_policy,
    remove_endorser,
    remove_heartbeat,
    set_heartbeat,
)
from gitreg.signing.interface import NAMESPACE_HEARTBEAT, NAMESPACE_POLICY
from gitreg.signing.ssh import SSHPublicKey, SSHSigner
from gitreg.verify.context import VerifyContext
from gitreg.verify.heartbeat import (
    CLOCK_SKEW_TOLERANCE,
    Heartbeat,
    describe_age,
    judge_freshness,
    parse_statement,
    statement_bytes,
    verify_heartbeat,
)

REGISTRY = "6f1c3c52-4d0e-4f55-9f43-2d3a3c0b8e11"
OTHER_REGISTRY = "0e6b8a54-8a9e-4c54-9d7e-7e2b1f1d2c3a"
COMMIT = "a" * 40
T0 = datetime(2026, 12, 2, 6, 0, 0, tzinfo=UTC)
EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[SSHSigner, SSHPublicKey]]:
    directory = tmp_path_factory.mktemp("heartbeat-keys")
    found = {}
    for name in ("root", "beat", "beat2", "stranger"):
        path = directory / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(path)], check=True, capture_output=True)
        found[name] = (SSHSigner.from_file(path), SSHPublicKey.from_file(Path(f"{path}.pub")))
    return found


@pytest.fixture
def policy(pairs: dict[str, tuple[SSHSigner, SSHPublicKey]]) -> PolicyEnvelope:
    base = new_policy(REGISTRY, [pairs["root"][1]], 1, EXPIRES)
    return set_heartbeat(base, [pairs["beat"][1]], "6h")


def _beat(signer: SSHSigner, *, at: datetime = T0, registry: str = REGISTRY,
          namespace: str = NAMESPACE_HEARTBEAT) -> tuple[bytes, bytes]:
    statement = statement_bytes(registry=registry, replica="replica-a", commit=COMMIT, time=at)
    return statement, signer.sign(statement, namespace=namespace)


def _site(at: datetime) -> VerifyContext:
    return VerifyContext.for_site(at)


# --- the policy field ---------------------------------------------------------


def test_heartbeat_field_round_trips_and_has_typed_accessors(policy: PolicyEnvelope,
                                                               pairs: dict) -> None:
    again = parse_policy(policy.canonical_bytes())
    required = again.signed.heartbeat
    assert required is not None
    assert required.keys == (pairs["beat"][1].key_id,)
    assert required.max_age == timedelta(hours=6) and required.max_age_text == "6h"
    assert again.canonical_bytes() == policy.canonical_bytes()
    assert new_policy(REGISTRY, [pairs["root"][1]], 1, EXPIRES).signed.heartbeat is None


@pytest.mark.parametrize(("heartbeat", "path", "fragment"), [
    ([], "signed.heartbeat", "must be an object"),
    ({"keys": ["K"]}, "signed.heartbeat.max_age", "missing"),
    ({"max_age": "6h"}, "signed.heartbeat.keys", "missing"),
    ({"keys": [], "max_age": "6h"}, "signed.heartbeat.keys", "at least one"),
    ({"keys": ["SHA256:nope"], "max_age": "6h"}, "signed.heartbeat.keys[0]", "unknown key"),
    ({"keys": ["K", "K"], "max_age": "6h"}, "signed.heartbeat.keys[1]", "listed twice"),
    ({"keys": ["K"], "max_age": 3600}, "signed.heartbeat.max_age", "must be a duration"),
    ({"keys": ["K"], "max_age": "6 hours"}, "signed.heartbeat.max_age", "not a duration"),
    ({"keys": ["K"], "max_age": "0h"}, "signed.heartbeat.max_age", "not a duration"),
    ({"keys": ["K"], "max_age": "400d"}, "signed.heartbeat.max_age", "longer than"),
    ({"keys": ["K"], "max_age": "6h", "tolerance": "5m"}, "signed.heartbeat.tolerance",
     "unknown key"),
])
def test_heartbeat_field_is_parsed_strictly(policy: PolicyEnvelope, pairs: dict,
                                            heartbeat: object, path: str, fragment: str) -> None:
    doc = json.loads(policy.canonical_bytes())
    key_id = pairs["beat"][1].key_id
    doc["signed"]["heartbeat"] = json.loads(json.dumps(heartbeat).replace('"K"',
                                                                          json.dumps(key_id)))
    with pytest.raises(InvalidDocumentError) as caught:
        parse_policy(json.dumps(doc).encode())
    problems = {p.path: p.message for p in caught.value.problems}
    assert path in problems and fragment in problems[path], problems


def test_durations() -> None:
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    for bad in ("", "6", "h", "-1h", "1.5h", "6H", " 6h", "06h", "6s"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_editing_the_requirement(policy: PolicyEnvelope, pairs: dict) -> None:
    beat, beat2, root = (pairs[n][1] for n in ("beat", "beat2", "root"))
    longer = set_heartbeat(policy, [], "12h")
    assert longer.version == policy.version + 1
    assert longer.signed.heartbeat is not None
    assert longer.signed.heartbeat.keys == (beat.key_id,)
    assert longer.signed.heartbeat.max_age_text == "12h"
    rotated = set_heartbeat(policy, [beat2], None)
    assert rotated.signed.heartbeat is not None
    assert rotated.signed.heartbeat.keys == (beat2.key_id,)
    # The old heartbeat-only key's material leaves with it; a root key stays.
    assert beat.key_id not in rotated.signed.keys
    with pytest.raises(UsageError, match="already requires"):
        set_heartbeat(policy, [beat], "6h")
    with pytest.raises(UsageError, match="--max-age"):
        set_heartbeat(policy, [beat], "soon")
    gone = remove_heartbeat(policy)
    assert gone.signed.heartbeat is None and beat.key_id not in gone.signed.keys
    with pytest.raises(UsageError, match="nothing to remove"):
        remove_heartbeat(gone)
    root_beats = set_heartbeat(gone, [root], "1d")
    assert remove_heartbeat(root_beats).signed.keys.keys() == {root.key_id}
    with pytest.raises(UsageError, match="give --key and --max-age"):
        set_heartbeat(gone, [root], None)


def test_removing_an_endorser_keeps_its_key_while_it_signs_heartbeats(
        policy: PolicyEnvelope, pairs: dict) -> None:
    beat = pairs["beat"][1]
    with_endorser = add_endorser(policy, "ops", [beat], allow=["imagelists/*"])
    without = remove_endorser(with_endorser, "ops")
    assert without.signed.heartbeat is not None and beat.key_id in without.signed.keys
    assert parse_policy(without.canonical_bytes()).signed.heartbeat is not None


# --- one statement ---------------------------------------------------------------


def test_a_valid_heartbeat_names_its_signer_and_commit(policy: PolicyEnvelope,
                                                       pairs: dict) -> None:
    statement, signature = _beat(pairs["beat"][0])
    beat = verify_heartbeat(statement, signature, policy.signed, _site(T0 + timedelta(hours=1)),
                            source="hb")
    assert (beat.registry, beat.replica, beat.commit, beat.time) == (
        REGISTRY, "replica-a", COMMIT, T0)
    assert beat.key_id == pairs["beat"][1].key_id
    assert parse_statement(statement, source="hb") == Heartbeat(REGISTRY, "replica-a", COMMIT,
                                                                 T0)


@pytest.mark.parametrize(("make", "rule", "fragment"), [
    (lambda p: _beat(p["stranger"][0]), "heartbeat-key", "not in the policy"),
    (lambda p: _beat(p["root"][0]), "heartbeat-key", "not a heartbeat key"),
    (lambda p: _beat(p["beat"][0], registry=OTHER_REGISTRY), "heartbeat-registry",
     OTHER_REGISTRY),
    (lambda p: _beat(p["beat"][0], namespace=NAMESPACE_POLICY), "heartbeat-signature",
     "namespace"),
    (lambda p: (_beat(p["beat"][0])[0].replace(b"replica-a", b"replica-b"),
                _beat(p["beat"][0])[1]), "heartbeat-signature", "no valid signature"),
    (lambda p: (_beat(p["beat"][0])[0], b"not a signature"), "heartbeat-signature",
     "unusable"),
    (lambda p: (b'{"type": "gitreg-heartbeat"}', b""), "heartbeat-format", "missing"),
    (lambda p: (b"[]", b""), "heartbeat-format", "must be an object"),
    (lambda p: (statement_bytes(registry=REGISTRY, replica="a", commit=COMMIT, time=T0)
                .replace(b'"format": 1', b'"format": 2'), b""), "heartbeat-format",
     "must be 1"),
    (lambda p: (statement_bytes(registry=REGISTRY, replica="a", commit="HEAD", time=T0), b""),
     "heartbeat-format", "not a commit id"),
    (lambda p: (statement_bytes(registry=REGISTRY, replica="../x", commit=COMMIT, time=T0),
                b""), "heartbeat-format", "not a replica name"),
])
def test_invalid_heartbeats_are_refused_with_their_rule(policy: PolicyEnvelope, pairs: dict,
                                                        make: object, rule: str,
                                                        fragment: str) -> None:
    statement, signature = make(pairs)  # type: ignore[operator]
    with pytest.raises(PolicyViolationError) as caught:
        verify_heartbeat(statement, signature, policy.signed, _site(T0), source="hb")
    assert caught.value.rule == rule, caught.value
    assert fragment in caught.value.message, caught.value.message


def test_a_policy_without_heartbeat_keys_verifies_none(pairs: dict) -> None:
    plain = new_policy(REGISTRY, [pairs["root"][1]], 1, EXPIRES)
    statement, signature = _beat(pairs["root"][0])
    with pytest.raises(PolicyViolationError) as caught:
        verify_heartbeat(statement, signature, plain.signed, _site(T0), source="hb")
    assert caught.value.rule == "heartbeat-key"


def test_a_heartbeat_from_the_future_is_clock_skew(policy: PolicyEnvelope,
                                                   pairs: dict) -> None:
    statement, signature = _beat(pairs["beat"][0], at=T0)
    # Within the tolerance: valid.
    verify_heartbeat(statement, signature, policy.signed, _site(T0 - CLOCK_SKEW_TOLERANCE),
                     source="hb")
    with pytest.raises(PolicyViolationError) as caught:
        verify_heartbeat(statement, signature, policy.signed,
                         _site(T0 - CLOCK_SKEW_TOLERANCE - timedelta(seconds=1)), source="hb")
    assert caught.value.rule == "heartbeat-future"
    assert "clock skew" in caught.value.message and "in the future" in caught.value.message


# --- freshness of a state ------------------------------------------------------------


def _at(offset: timedelta, replica: str = "a") -> Heartbeat:
    return Heartbeat(REGISTRY, replica, COMMIT, T0 + offset, key_id="k")


def test_freshness_counts_only_heartbeats_for_the_state_or_newer(
        policy: PolicyEnvelope) -> None:
    at = _site(T0 + timedelta(hours=7))
    old = _at(timedelta(0))
    young_but_older_state = _at(timedelta(hours=6, minutes=30), "b")
    verdict = judge_freshness(policy.signed, [(old, True), (young_but_older_state, False)], at)
    assert not verdict.fresh and verdict.age == timedelta(hours=7)
    assert "7h old (max age 6h)" in verdict.describe()
    fresh = judge_freshness(policy.signed, [(old, True), (young_but_older_state, True)], at)
    assert fresh.fresh and fresh.newest == young_but_older_state
    assert fresh.age == timedelta(minutes=30)
    none = judge_freshness(policy.signed, [], at)
    assert not none.fresh and none.newest is None
    assert "no valid heartbeat" in none.describe()


def test_freshness_boundary_and_no_requirement(policy: PolicyEnvelope, pairs: dict) -> None:
    beat = _at(timedelta(0))
    assert judge_freshness(policy.signed, [(beat, True)], _site(T0 + timedelta(hours=6))).fresh
    assert not judge_freshness(policy.signed, [(beat, True)],
                               _site(T0 + timedelta(hours=6, seconds=1))).fresh
    # Slightly ahead (within the skew the verifier let through): age zero.
    ahead = judge_freshness(policy.signed, [(_at(timedelta(minutes=2)), True)], _site(T0))
    assert ahead.fresh and ahead.age == timedelta(0)
    plain = new_policy(REGISTRY, [pairs["root"][1]], 1, EXPIRES).signed
    assert judge_freshness(plain, [], _site(T0)).fresh


def test_freshness_property_fresh_iff_a_counting_beat_is_young_enough(
        policy: PolicyEnvelope) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    limit = timedelta(hours=6)
    for _ in range(300):
        at = T0 + timedelta(hours=rng.randint(0, 48))
        beats = [(_at(timedelta(minutes=rng.randint(-60, 48 * 60)), f"r{i}"),
                  rng.random() < 0.6) for i in range(rng.randint(0, 5))]
        verdict = judge_freshness(policy.signed, beats, _site(at))
        expected = any(covers and at - b.time <= limit for b, covers in beats)
        assert verdict.fresh == expected, f"seed {seed}: {beats} at {at}"


def test_describe_age() -> None:
    assert describe_age(timedelta(hours=7, minutes=12)) == "7h 12m"
    assert describe_age(timedelta(days=2, hours=3)) == "2d 3h"
    assert describe_age(timedelta(seconds=42)) == "42s"
    assert describe_age(None) == "none"
