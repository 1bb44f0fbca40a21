"""The attestation statement and the policy's attesters, parsed strictly (pure, no git)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitreg.errors import InvalidDocumentError, UsageError
from gitreg.model.attestation import Attestation, parse_attestation
from gitreg.model.policy import Policy
from gitreg.publish import policy_edit
from gitreg.publish.policy_edit import add_attester, new_policy, remove_attester
from gitreg.verify import layout
from tests.registry_simulator import ssh_signer

IMAGE = "816d07ae-8e14-45b2-8e32-5369f115c69a"
SHA = "ab" * 64
START = datetime(2026, 1, 1, tzinfo=UTC)


def statement(**changes: Any) -> dict[str, Any]:
    doc = Attestation(image=IMAGE, sha512=SHA, attester="site-a", time=START,
                      kind="boot-test", result="passed").to_dict()
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = doc
        for name in parents:
            target = target[name]
        if value is None:
            del target[last]

        else:
            target[last] = value
    return doc


@given(kind=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
       result=st.sampled_from(["passed", "failed"]),
       note=st.none() | st.text(max_size=200),
       seconds=st.integers(min_value=0, max_value=10**9))
def test_a_statement_round_trips_byte_stable(kind: str, result: str, note: str | None,
                                             seconds: int) -> None:
    made = Attestation(image=IMAGE, sha512=SHA, attester="site-a",
                       time=START + timedelta(seconds=seconds), kind=kind, result=result,
                       note=note)
    data = made.canonical_bytes()
    parsed = parse_attestation(data, source="a.json")
    assert parsed == made and parsed.canonical_bytes() == data


@pytest.mark.parametrize(("changes", "where"), [
    ({"_type": "https://in-toto.io/Statement/v0.1"}, "_type"),
    ({"predicateType": "https://slsa.dev/provenance/v1"}, "predicateType"),
    ({"extra": 1}, "extra"),
    ({"subject": []}, "subject"),
    ({"predicate.result": "maybe"}, "predicate.result"),
    ({"predicate.time": "2026-01-01 00:00:00"}, "predicate.time"),
    ({"predicate.kind": "Boot Test"}, "predicate.kind"),
    ({"predicate.attester": None}, "predicate.attester"),
    ({"predicate.score": 10}, "predicate.score"),
    ({"predicate": "passed"}, "predicate"),
    ({"subject": ["x"]}, "subject[0]"),
])
def test_a_statement_that_says_anything_else_is_refused(changes: dict[str, Any],
                                                        where: str) -> None:
    data = json.dumps(statement(**changes)).encode()
    with pytest.raises(InvalidDocumentError) as caught:
        parse_attestation(data, source="a.json")
    assert any(p.path == where for p in caught.value.problems), caught.value.diagnostics()


def test_a_null_predicate_is_no_predicate() -> None:
    doc = statement()
    doc["predicate"] = None
    with pytest.raises(InvalidDocumentError) as caught:
        parse_attestation(json.dumps(doc).encode(), source="a.json")
    assert [p.path for p in caught.value.problems] == ["predicate"]


def test_a_digest_must_be_lower_case_sha512_and_the_name_a_uuid() -> None:
    doc = statement()
    doc["subject"] = [{"name": IMAGE.upper(), "digest": {"sha512": SHA.upper(), "sha256": "0"}}]
    with pytest.raises(InvalidDocumentError) as caught:
        parse_attestation(json.dumps(doc).encode(), source="a.json")
    paths = {p.path for p in caught.value.problems}
    assert paths == {"subject[0].name", "subject[0].digest.sha512", "subject[0].digest.sha256"}


def test_attestation_paths() -> None:
    path = layout.attestation_path("site-a", IMAGE)
    assert path == f"attestations/site-a/{IMAGE}.json"
    assert layout.attestation_of(path) == ("site-a", IMAGE)
    assert layout.attestation_of(path + ".sig") == ("site-a", IMAGE)
    assert layout.is_attestation(path) and not layout.is_attestation(path + ".sig")
    for bad in (f"attestations/{IMAGE}.json", f"attestations/../{IMAGE}.json",
                f"attestations/site-a/x/{IMAGE}.json", f"attestations/.a/{IMAGE}.json",
                f"attestations/site-a/{IMAGE.upper()}.json"):
        assert layout.attestation_of(bad) is None, bad


def _policy() -> tuple[Any, Any, Any]:
    root, alice, site = ssh_signer("root"), ssh_signer("alice"), ssh_signer("site")
    envelope = new_policy("5a3a5f9e-3f3c-4d2f-9c55-3b1c1d5e0f10", [root.public_key()], 1,
                          START + timedelta(days=365))
    raw = envelope.signed.to_dict()
    raw["keys"][alice.key_id] = alice.public_key().to_policy()
    raw["endorsers"]["alice"] = {"keys": [alice.key_id]}
    raw["rules"].append({"paths": ["imagelists/*"], "endorsers": ["alice"]})
    envelope = type(envelope)(Policy(raw))
    return add_attester(envelope, "site-a", [site.public_key()], email="ops@site-a.org"), \
        alice, site


def test_add_attester_writes_an_entry_and_its_rule() -> None:
    envelope, alice, site = _policy()
    policy = envelope.signed
    assert policy.attester_of_key(site.key_id) == "site-a"
    assert policy.endorser_of_key(site.key_id) is None
    assert policy.attester_of_key(alice.key_id) is None
    path = layout.attestation_path("site-a", IMAGE)
    assert policy.attesters_for_path(path) == {"site-a"}
    assert policy.attesters_for_path(path + ".sig") == {"site-a"}
    assert policy.attesters_for_path(layout.attestation_path("site-b", IMAGE)) == set()
    # Attester rules grant no endorser anything, and endorser rules no attester.
    assert policy.endorsers_for_path(path) == set()
    assert policy.attesters_for_path(f"imagelists/{IMAGE}.json") == set()
    signed = envelope.signed.to_dict()
    assert signed["attesters"] == {"site-a": {"keys": [site.key_id], "email": "ops@site-a.org"}}
    assert {"paths": ["attestations/site-a/*"], "attesters": ["site-a"]} in signed["rules"]
    removed = remove_attester(envelope, "site-a").signed
    assert dict(removed.attesters) == {} and site.key_id not in removed.keys
    assert all(not r.attesters for r in removed.rules) and removed.endorsers_for_path(
        "imagelists/x") == {"alice"}


@pytest.mark.parametrize(("edit", "where", "message"), [
    (lambda raw, a, s: raw["attesters"]["site-a"].update(keys=[a]),
     'signed.attesters.site-a.keys[0]', 'already belongs to endorser "alice"'),
    (lambda raw, a, s: raw["attesters"]["site-a"].update(keys=["SHA256:nope"]),
     'signed.attesters.site-a.keys[0]', "unknown key"),
    (lambda raw, a, s: raw["attesters"].update({"site@b": {"keys": [s]}}),
     'signed.attesters["site@b"]', "invalid attester name"),
    (lambda raw, a, s: raw["attesters"]["site-a"].update(role="admin"),
     'signed.attesters.site-a.role', "unknown key"),
    (lambda raw, a, s: raw["rules"].append({"paths": ["imagelists/*"], "attesters": ["site-a"]}),
     "signed.rules[2].paths[0]", "covers only attestations/ paths"),
    (lambda raw, a, s: raw["rules"].append({"paths": ["attestations/x/*"],
                                            "attesters": ["site-x"]}),
     "signed.rules[2].attesters[0]", 'unknown attester "site-x"'),
    (lambda raw, a, s: raw["rules"].append({"paths": ["attestations/x/*"]}),
     "signed.rules[2].endorsers", "names endorsers or attesters"),
])
def test_policy_attesters_are_parsed_strictly(edit: Any, where: str, message: str) -> None:
    envelope, alice, site = _policy()
    raw = envelope.signed.to_dict()
    edit(raw, alice.key_id, site.key_id)
    with pytest.raises(InvalidDocumentError) as caught:
        Policy(raw)
    found = {p.path: p.message for p in caught.value.problems}
    assert where in found and message in found[where], found


def test_endorser_and_root_edits_leave_attesters_alone() -> None:
    envelope, _, site = _policy()
    path = layout.attestation_path("site-a", IMAGE)
    rooted = policy_edit.add_root(envelope, site.public_key())
    unrooted = policy_edit.remove_root(rooted, site.key_id).signed
    assert unrooted.attester_of_key(site.key_id) == "site-a" and site.key_id in unrooted.keys
    without_alice = policy_edit.remove_endorser(envelope, "alice").signed
    assert without_alice.attesters_for_path(path) == {"site-a"}
    widened = policy_edit.allow(envelope, "alice", "attestations/site-a/*").signed
    assert widened.attesters_for_path(path) == {"site-a"}
    with pytest.raises(UsageError, match='already belongs to attester "site-a"'):
        policy_edit.add_endorser(envelope, "bob", [site.public_key()])
    with pytest.raises(UsageError, match='already belongs to attester "site-a"'):
        policy_edit.add_key(envelope, "alice", site.public_key())
