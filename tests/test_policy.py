"""The trust policy model: strict parsing, thresholds, transitions, globs, editing.

Keys are real: Ed25519 keys made by ssh-keygen once per session; one signer
shells out to `ssh-keygen -Y sign` so a policy signed by OpenSSH itself is
checked too.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gitreg.errors import (
    ExpiredError,
    InvalidDocumentError,
    InvalidKeyError,
    PolicyViolationError,
    UntrustedSignerError,
    UsageError,
)
from gitreg.model.globs import glob_matches, glob_problem
from gitreg.model.policy import (
    Limits,
    PolicyEnvelope,
    PolicySignature,
    check_key_ids,
    fingerprint,
    parse_policy,
)
from gitreg.model.registry_info import RegistryInfo
from gitreg.publish import policy_edit
from gitreg.publish.policy_edit import add_signature, new_policy
from gitreg.signing.interface import NAMESPACE_POLICY, PublicKey, Signer
from gitreg.signing.openpgp import OpenPGPSigner
from gitreg.signing.ssh import SSHPublicKey, SSHSigner
from gitreg.verify.policy_rules import check_root_signatures, verify_policy_transition

REGISTRY = "6f1c3c52-4d0e-4f55-9f43-2d3a3c0b8e11"
OTHER_REGISTRY = "0b4c2f0e-86a4-4c45-8a0c-6a9f0d0e5d22"
EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)
NOW = datetime(2027, 6, 1, 12, 0, 0, tzinfo=UTC)
LIST_UUID = "3c1a2b4d-5e6f-4a1b-8c2d-9e0f1a2b3c4d"

KEY_NAMES = ("root1", "root2", "root3", "alice", "bob")


@dataclasses.dataclass(frozen=True)
class KeyPair:
    path: Path
    signer: SSHSigner
    public: SSHPublicKey

    @property
    def key_id(self) -> str:
        return self.public.key_id


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    """Ed25519 keys made by ssh-keygen into a session temp dir."""
    directory = tmp_path_factory.mktemp("policy-ssh-keys")
    pairs = {}
    for name in KEY_NAMES:
        path = directory / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                        "-f", str(path)], check=True, capture_output=True)
        pairs[name] = KeyPair(path, SSHSigner.from_file(path),
                              SSHPublicKey.from_file(path.with_suffix(".pub")))
    return pairs


class SshKeygenSigner(Signer):
    """Signs by running OpenSSH's own `ssh-keygen -Y sign`."""

    scheme: ClassVar = "ssh"

    def __init__(self, pair: KeyPair, tmp: Path) -> None:
        self._pair = pair
        self._tmp = tmp

    @property
    def key_id(self) -> str:
        return self._pair.key_id

    def public_key(self) -> PublicKey:
        return self._pair.public

    def sign(self, data: bytes, *, namespace: str) -> bytes:
        message = self._tmp / f"message-{uuid.uuid4()}"
        message.write_bytes(data)
        subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", namespace,
                        "-f", str(self._pair.path), str(message)], check=True,
                       capture_output=True)
        return message.with_name(message.name + ".sig").read_bytes()


def _signed(envelope: PolicyEnvelope, *pairs: KeyPair) -> PolicyEnvelope:
    for pair in pairs:
        envelope = add_signature(envelope, pair.signer)
    return envelope


@pytest.fixture
def base(keys: dict[str, KeyPair]) -> PolicyEnvelope:
    """Version 1: roots root1..3 (2 of 3), no endorsers, unsigned."""
    return new_policy(REGISTRY, [keys["root1"].public, keys["root2"].public,
                                 keys["root3"].public], 2, EXPIRES)


@pytest.fixture
def with_alice(base: PolicyEnvelope, keys: dict[str, KeyPair]) -> PolicyEnvelope:
    """Version 2: alice may change imagelists/<LIST_UUID>.json, bob everything."""
    env = policy_edit.add_endorser(base, "alice", [keys["alice"].public], "alice@example.org",
                                   [f"imagelists/{LIST_UUID}.json"])
    env = policy_edit.add_endorser(env, "bob", [keys["bob"].public], None, ["imagelists/*.json"])
    # Two edits of one draft: still exactly one version after the base.
    return policy_edit.with_version(env, base.version + 1)


def _doc(envelope: PolicyEnvelope) -> dict[str, Any]:
    return json.loads(envelope.canonical_bytes())


def _bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, indent=4).encode() + b"\n"


# --- parsing and round trip ------------------------------------------------------


def test_round_trip_is_byte_stable_including_unknown_keys(with_alice, keys):
    doc = _doc(_signed(with_alice, keys["root1"], keys["root2"]))
    doc["signed"]["zz_future"] = {"b": [1, 2, {"c": None}], "a": "ü"}
    doc["signed"]["heartbeat"] = {"keys": [keys["alice"].key_id], "max_age": "6h"}
    doc["signed"]["limits"]["max_widgets"] = 7
    doc["signed"]["keys"][keys["alice"].key_id]["comment"] = "kept"
    data = json.dumps(doc, sort_keys=True, indent=4, ensure_ascii=False).encode() + b"\n"

    envelope = parse_policy(data)

    assert envelope.canonical_bytes() == data
    assert envelope.signed.heartbeat is not None
    assert envelope.signed.heartbeat.keys == (keys["alice"].key_id,)
    assert envelope.signed.keys[keys["alice"].key_id]["comment"] == "kept"
    assert envelope.version == 2
    assert envelope.signed.limits == Limits()
    assert [s.keyid for s in envelope.signatures] == [keys["root1"].key_id,
                                                      keys["root2"].key_id]


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(extra=st.dictionaries(st.from_regex(r"x_[a-z]{1,8}", fullmatch=True), json_values,
                             max_size=3))
def test_unknown_top_level_keys_round_trip_byte_stable(keys, extra):
    base = new_policy(REGISTRY, [keys["root1"].public], 1, EXPIRES)
    doc = _doc(_signed(base, keys["root1"]))
    doc["signed"].update(extra)
    data = json.dumps(doc, sort_keys=True, indent=4, ensure_ascii=False).encode() + b"\n"
    envelope = parse_policy(data)
    assert envelope.canonical_bytes() == data
    assert parse_policy(envelope.canonical_bytes()).to_dict() == envelope.to_dict()
    # the signature covers the unknown keys too: it no longer verifies
    assert check_root_signatures(envelope, envelope.signed, at=NOW).enough is (not extra)


def test_new_policy_is_canonical_and_parses_back(base):
    data = base.canonical_bytes()
    assert data.endswith(b"}\n")
    assert parse_policy(data) == base
    assert parse_policy(data).canonical_bytes() == data
    assert json.loads(data)["signed"]["limits"] == {
        "max_file_size": 1048576, "max_list_lifetime_days": 365, "max_images_per_list": 1000}


def test_all_problems_are_reported_with_json_paths(with_alice, keys):
    doc = _doc(with_alice)
    signed = doc["signed"]
    signed["version"] = 0
    signed["expires"] = "2030-01-01 00:00:00"
    signed["registry"] = REGISTRY.upper()
    signed["root"]["keys"].append("SHA256:" + "A" * 43)
    signed["root"]["threshold"] = 9
    signed["endorsers"]["alice"]["keys"].append("SHA256:" + "B" * 43)
    signed["endorsers"]["carol"] = {"keys": [keys["bob"].key_id], "colour": "red"}
    signed["rules"].append({"paths": ["imagelists/**"], "endorsers": ["bob", "dave"]})
    signed["limits"]["max_file_size"] = -1
    doc["extra"] = True
    doc["signatures"] = [{"keyid": "", "sig": 5}]

    with pytest.raises(InvalidDocumentError) as caught:
        parse_policy(_bytes(doc))

    found = {f"{p.path}: {p.message}" for p in caught.value.problems}
    expected = {
        "signed.version: must be at least 1, not 0",
        f'signed.root.keys[3]: unknown key "SHA256:{"A" * 43}" (not in signed.keys)',
        "signed.root.threshold: must be between 1 and the number of root keys (4), not 9",
        f'signed.endorsers.alice.keys[1]: unknown key "SHA256:{"B" * 43}" '
        "(not in signed.keys)",
        "signed.endorsers.carol.colour: unknown key (allowed: keys, email, expires)",
        f'signed.endorsers.carol.keys[0]: key "{keys["bob"].key_id}" already belongs to '
        'endorser "bob"',
        'signed.rules[2].endorsers[1]: unknown endorser "dave"',
        "signed.limits.max_file_size: must be at least 1, not -1",
        "extra: unknown key (allowed: signed, signatures)",
        "signatures[0].keyid: must not be empty",
        "signatures[0].sig: must be a string, not an integer",
    }
    assert expected <= found, found - expected
    assert any(p.startswith("signed.expires: ") for p in found)
    assert any(p.startswith("signed.registry: UUID must be lower-case") for p in found)
    assert any(p.startswith("signed.rules[2].paths[0]: invalid path glob") and '"**"' in p
               for p in found)
    assert all(p.source == "policy.json" for p in caught.value.problems)
    assert "policy.json: " in caught.value.diagnostics()


def test_unknown_endorser_in_rule_is_named(with_alice):
    doc = _doc(with_alice)
    doc["signed"]["rules"][1]["endorsers"] = ["carol"]
    with pytest.raises(InvalidDocumentError) as caught:
        parse_policy(_bytes(doc), source="policy.json@abc123")
    assert [str(p) for p in caught.value.problems] == [
        'policy.json@abc123: signed.rules[1].endorsers[0]: unknown endorser "carol"']


@pytest.mark.parametrize("data, fragment", [
    (b'{"signed": {}, "signed": {}, "signatures": []}', "duplicate key"),
    (b"[]", "must be an object"),
    (b'{"signed": {"version": NaN}, "signatures": []}', "NaN"),
    (b'{"signed": {"version": true, "expires": "2030-01-01T00:00:00Z"}, "signatures": []}',
     "signed.version: must be an integer, not a boolean"),
    (b'{"signatures": []}', "signed: missing"),
])
def test_malformed_documents_are_rejected(data, fragment):
    with pytest.raises(InvalidDocumentError) as caught:
        parse_policy(data)
    assert fragment in caught.value.diagnostics()


def test_key_id_must_fit_its_scheme(base, keys):
    doc = _doc(base)
    material = doc["signed"]["keys"].pop(keys["root3"].key_id)
    doc["signed"]["keys"]["ABCDEF"] = material
    doc["signed"]["root"]["keys"][2] = "ABCDEF"
    with pytest.raises(InvalidDocumentError) as caught:
        parse_policy(_bytes(doc))
    assert [p.path for p in caught.value.problems] == ['signed.keys["ABCDEF"]']


def test_key_listed_under_another_keys_id_is_caught(base, keys):
    doc = _doc(base)
    # root3's id with root1's material: parses (pure), fails the derivation check.
    doc["signed"]["keys"][keys["root3"].key_id] = doc["signed"]["keys"][keys["root1"].key_id]
    envelope = parse_policy(_bytes(doc))
    with pytest.raises(InvalidDocumentError) as caught:
        check_key_ids(envelope.signed)
    assert [p.path for p in caught.value.problems] == [f'signed.keys["{keys["root3"].key_id}"]']
    assert keys["root1"].key_id in caught.value.problems[0].message
    with pytest.raises(InvalidKeyError):
        envelope.signed.public_key(keys["root3"].key_id)
    check_key_ids(base.signed)  # the honest policy passes


def test_public_key_is_cached_and_unknown_keys_are_untrusted(base, keys):
    policy = base.signed
    assert policy.public_key(keys["root1"].key_id) is policy.public_key(keys["root1"].key_id)
    with pytest.raises(UntrustedSignerError, match="not in the policy"):
        policy.public_key(keys["alice"].key_id)


def test_fingerprint_is_sha256_of_the_bytes(base):
    data = base.canonical_bytes()
    assert fingerprint(data) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert fingerprint(data + b" ") != fingerprint(data)


# --- thresholds -------------------------------------------------------------------


def test_two_of_three_with_one_signature_is_not_enough(base, keys):
    envelope = _signed(base, keys["root1"])
    result = check_root_signatures(envelope, base.signed, at=NOW)
    assert result.signed_by == (keys["root1"].key_id,)
    assert result.missing == (keys["root2"].key_id, keys["root3"].key_id)
    assert not result.enough
    text = result.describe()
    assert text.startswith("signed by 1 of 2 root keys required (3 listed); needs 1 more "
                           "signature, by any 1 of: ")
    assert keys["root2"].key_id in text
    assert keys["root3"].key_id in text

    with pytest.raises(PolicyViolationError) as caught:
        verify_policy_transition(None, envelope, at=NOW)
    assert caught.value.rule == "policy-threshold-new"
    assert keys["root3"].key_id in caught.value.message


def test_two_of_three_with_two_signatures_is_enough(base, keys):
    envelope = _signed(base, keys["root3"], keys["root1"])
    result = check_root_signatures(envelope, base.signed, at=NOW)
    assert result.enough
    assert set(result.signed_by) == {keys["root1"].key_id, keys["root3"].key_id}
    verify_policy_transition(None, envelope, at=NOW)


def test_two_signatures_by_the_same_key_count_once(base, keys):
    one = _signed(base, keys["root1"])
    again = keys["root1"].signer.sign(base.signed_bytes(), namespace=NAMESPACE_POLICY)
    twice = dataclasses.replace(one, signatures=(
        *one.signatures, PolicySignature(keys["root1"].key_id, again.decode())))
    reparsed = parse_policy(twice.canonical_bytes())
    assert len(reparsed.signatures) == 2

    result = check_root_signatures(reparsed, reparsed.signed, at=NOW)
    assert result.signed_by == (keys["root1"].key_id,)
    assert not result.enough
    with pytest.raises(PolicyViolationError) as caught:
        verify_policy_transition(None, reparsed, at=NOW)
    assert caught.value.rule == "policy-threshold-new"


def test_signing_twice_with_one_key_replaces_the_signature(base, keys):
    envelope = _signed(base, keys["root1"], keys["root1"])
    assert [s.keyid for s in envelope.signatures] == [keys["root1"].key_id]


def test_signature_by_a_non_root_key_does_not_count(with_alice, keys):
    # alice's key is in the policy (as an endorser) but is no root key.
    envelope = _signed(with_alice, keys["root1"], keys["alice"])
    result = check_root_signatures(envelope, with_alice.signed, at=NOW)
    assert result.signed_by == (keys["root1"].key_id,)
    assert result.ignored == (keys["alice"].key_id,)
    assert not result.enough
    assert "not counted" in result.describe()


def test_invalid_signature_is_reported_not_fatal(base, keys):
    # root2's signature over other bytes, filed under root2's id.
    other = policy_edit.with_expires(base, EXPIRES + timedelta(days=1))
    stale = add_signature(other, keys["root2"].signer).signatures[0]
    # root3's signature filed under root1's id: the claim is checked.
    wrong = add_signature(base, keys["root3"].signer).signatures[0]
    envelope = dataclasses.replace(_signed(base, keys["root1"]), signatures=(
        PolicySignature(keys["root1"].key_id, wrong.sig),
        stale,
        *_signed(base, keys["root1"]).signatures))
    result = check_root_signatures(envelope, base.signed, at=NOW)
    assert result.signed_by == (keys["root1"].key_id,)
    assert len(result.invalid) == 2
    assert result.invalid[0].startswith(keys["root1"].key_id + ": ")
    assert result.invalid[1].startswith(keys["root2"].key_id + ": ")
    assert "invalid: " in result.describe()


def test_signature_in_another_namespace_does_not_count(base, keys):
    sig = keys["root1"].signer.sign(base.signed_bytes(), namespace="gitreg-imagelist")
    envelope = dataclasses.replace(base, signatures=(
        PolicySignature(keys["root1"].key_id, sig.decode()),))
    result = check_root_signatures(envelope, base.signed, at=NOW)
    assert result.signed_by == ()
    assert "namespace" in result.invalid[0]


def test_policy_signed_by_openssh_itself_counts(base, keys, tmp_path):
    envelope = add_signature(base, SshKeygenSigner(keys["root2"], tmp_path))
    envelope = add_signature(envelope, SshKeygenSigner(keys["root3"], tmp_path))
    verify_policy_transition(None, parse_policy(envelope.canonical_bytes()), at=NOW)


def test_mixed_scheme_roots_with_an_openpgp_key(keys, openpgp_keyring):
    home = str(openpgp_keyring.gnupghome)
    gpg_alice = OpenPGPSigner(openpgp_keyring.fingerprints["alice"], home)
    envelope = new_policy(REGISTRY, [keys["root1"].public, gpg_alice.public_key()], 2, EXPIRES)
    assert gpg_alice.key_id in envelope.signed.root_keys
    check_key_ids(envelope.signed)

    half = add_signature(envelope, gpg_alice)
    with pytest.raises(PolicyViolationError) as caught:
        verify_policy_transition(None, half, at=NOW)
    assert keys["root1"].key_id in caught.value.message

    both = parse_policy(add_signature(half, keys["root1"].signer).canonical_bytes())
    verify_policy_transition(None, both, at=NOW)


# --- transitions --------------------------------------------------------------------


def test_rotating_root_keys_needs_old_and_new_thresholds(keys):
    old = _signed(new_policy(REGISTRY, [keys["root1"].public, keys["root2"].public], 2,
                             EXPIRES), keys["root1"], keys["root2"])
    verify_policy_transition(None, old, at=NOW)
    # root1 leaves, root3 joins: 2 of {root2, root3}.
    new = policy_edit.remove_root(policy_edit.add_root(old, keys["root3"].public),
                                  keys["root1"].key_id)
    new = policy_edit.with_version(new, old.version + 1)
    assert new.signed.root_keys == (keys["root2"].key_id, keys["root3"].key_id)

    only_new = _signed(new, keys["root2"], keys["root3"])
    with pytest.raises(PolicyViolationError) as caught:
        verify_policy_transition(old, only_new, commit="a" * 40, at=NOW)
    assert caught.value.rule == "policy-threshold-old"
    assert keys["root1"].key_id in caught.value.message
    assert "commit aaaaaaaaaaaa" in str(caught.value)

    only_old = _signed(new, keys["root1"], keys["root2"])
    with pytest.raises(PolicyViolationError) as caught:
        verify_policy_transition(old, only_old, at=NOW)
    assert caught.value.rule == "policy-threshold-new"
    assert keys["root3"].key_id in caught.value.message

    verify_policy_transition(old, _signed(new, keys["root1"], keys["root2"], keys["root3"]), at=NOW)


@pytest.mark.parametrize("version", [1, 3, 10])
def test_version_must_be_exactly_one_more(base, keys, version):
    old = _signed(base, keys["root1"], keys["root2"])
    new = _signed(policy_edit.with_version(policy_edit.set_threshold(base, 1), version),
                  keys["root1"], keys["root2"])
    with pytest.raises(PolicyViolationError) as caught:
        verify_policy_transition(old, new, at=NOW)
    assert caught.value.rule == "policy-version"
    assert caught.value.path == "policy.json"


def test_registry_id_cannot_change(base, keys):
    old = _signed(base, keys["root1"], keys["root2"])
    doc = _doc(policy_edit.set_threshold(base, 1))
    doc["signed"]["registry"] = OTHER_REGISTRY
    new = _signed(parse_policy(_bytes(doc)), keys["root1"], keys["root2"])
    with pytest.raises(PolicyViolationError) as caught:
        verify_policy_transition(old, new, at=NOW)
    assert caught.value.rule == "policy-registry"


def test_ordinary_change_with_thresholds_passes(with_alice, keys):
    old = _signed(with_alice, keys["root1"], keys["root2"])
    new = _signed(policy_edit.remove_endorser(old, "bob"), keys["root2"], keys["root3"])
    verify_policy_transition(old, new, at=NOW)


# --- expiry and endorsers -------------------------------------------------------------


def test_policy_expiry(base):
    base.signed.check_expiry(NOW)
    with pytest.raises(ExpiredError, match="expired at 2030-01-01T00:00:00Z"):
        base.signed.check_expiry(EXPIRES)


def test_endorser_expiry_and_lookup(with_alice, keys):
    doc = _doc(with_alice)
    doc["signed"]["endorsers"]["alice"]["expires"] = "2028-01-01T00:00:00Z"
    policy = parse_policy(_bytes(doc)).signed
    assert policy.is_endorser_active("alice", NOW)
    assert not policy.is_endorser_active("alice", datetime(2028, 1, 1, tzinfo=UTC))
    assert policy.is_endorser_active("bob", datetime(2099, 1, 1, tzinfo=UTC))
    assert not policy.is_endorser_active("nobody", NOW)
    assert policy.endorser_of_key(keys["alice"].key_id) == "alice"
    assert policy.endorser_of_key(keys["root1"].key_id) is None
    assert policy.endorser_keys("bob") == (keys["bob"].key_id,)
    assert policy.endorsers["alice"].email == "alice@example.org"
    with pytest.raises(UsageError, match='no endorser named "carol"'):
        policy.endorser_keys("carol")


# --- authorisation by path ------------------------------------------------------------


def test_endorsers_for_path(with_alice):
    policy = with_alice.signed
    mine = f"imagelists/{LIST_UUID}.json"
    assert policy.endorsers_for_path(mine) == {"alice", "bob"}
    assert policy.endorsers_for_path(mine + ".sig") == {"alice", "bob"}
    assert policy.endorsers_for_path(f"imagelists/{uuid.uuid4()}.json") == {"bob"}
    # default deny: nobody may touch paths no rule names
    assert policy.endorsers_for_path("policy.json") == frozenset()
    assert policy.endorsers_for_path("gitreg.json") == frozenset()
    assert policy.endorsers_for_path(f"imagelists/sub/{LIST_UUID}.json") == frozenset()
    assert policy.endorsers_for_path(f"imagelists/{LIST_UUID}.json.bak") == frozenset()
    assert policy.endorsers_for_path(f"x/imagelists/{LIST_UUID}.json") == frozenset()


def test_literal_and_wildcard_rules_combine_in_a_large_policy(with_alice):
    doc = _doc(with_alice)
    lists = [str(uuid.UUID(int=i)) for i in range(1, 2001)]
    doc["signed"]["rules"] = [{"paths": [f"imagelists/{u}.json"], "endorsers": ["alice"]}
                              for u in lists]
    doc["signed"]["rules"].append({"paths": ["imagelists/0*.json"], "endorsers": ["bob"]})
    policy = parse_policy(_bytes(doc)).signed
    assert all(policy.endorsers_for_path(f"imagelists/{u}.json.sig") == {"alice", "bob"}
               for u in lists)
    assert policy.endorsers_for_path(f"imagelists/{uuid.UUID(int=9999)}.json") == {"bob"}
    assert policy.endorsers_for_path(f"imagelists/{uuid.UUID(int=1)}.jsonx") == frozenset()
    assert policy.endorsers_for_path("imagelists/f0.json") == frozenset()


def test_key_material_view_cannot_change_what_is_signed(with_alice, keys):
    before = with_alice.signed_bytes()
    material = with_alice.signed.keys[keys["alice"].key_id]
    material["public_key"] = "tampered"  # type: ignore[index]
    with pytest.raises(TypeError):
        with_alice.signed.keys["x"] = {}  # type: ignore[index]
    assert with_alice.signed_bytes() == before
    assert with_alice.signed.public_key(keys["alice"].key_id) == keys["alice"].public


def test_policy_without_rules_denies_everything(base):
    assert base.signed.rules == ()
    assert base.signed.endorsers_for_path(f"imagelists/{LIST_UUID}.json") == frozenset()


@pytest.mark.parametrize("pattern, path, expected", [
    ("imagelists/*.json", "imagelists/a.json", True),
    ("imagelists/*.json", "imagelists/a/b.json", False),
    ("imagelists/*", "imagelists/a/b.json", False),
    ("*", "imagelists/a.json", False),
    ("*/*.json", "imagelists/a.json", True),
    ("imagelists/?.json", "imagelists/a.json", True),
    ("imagelists/?.json", "imagelists/ab.json", False),
    ("imagelists/[ab].json", "imagelists/b.json", True),
    ("imagelists/[!ab].json", "imagelists/b.json", False),
    ("imagelists/[!ab].json", "imagelists/c.json", True),
    ("imagelists/[0-9]*.json", "imagelists/7x.json", True),
    ("imagelists/a?b", "imagelists/a/b", False),
    ("imagelists/a[!x]b", "imagelists/a/b", False),
    ("imagelists/a.json", "imagelists/aXjson", False),
    ("imagelists/(a|b).json", "imagelists/a.json", False),
])
def test_glob_matching(pattern, path, expected):
    assert glob_problem(pattern) is None
    assert glob_matches(pattern, path) is expected


@pytest.mark.parametrize("pattern", [
    "", "/imagelists/*.json", "imagelists/", "imagelists//a", "imagelists/../x",
    "./imagelists/a", "imagelists/**", "imagelists/[a", "imagelists/[]", "imagelists/[a/b]",
    "imagelists/[z-a]", "imagelists\\a", "imagelists/\na",
])
def test_invalid_globs_are_refused(pattern):
    assert glob_problem(pattern) is not None
    with pytest.raises(UsageError):
        glob_matches(pattern, "imagelists/a.json")


segment = st.text(alphabet="ab.-", min_size=0, max_size=6)


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(alphabet="ab*?.", min_size=1, max_size=8),
       left=segment, right=segment)
def test_star_never_crosses_a_slash_and_agrees_with_fnmatch_within_a_segment(
        pattern, left, right):
    assume(glob_problem(pattern) is None)  # "**", "." and ".." are refused
    # within one segment, the same answer as fnmatch
    assert glob_matches(pattern, left) is fnmatch.fnmatchcase(left, pattern)
    # a single-segment pattern never matches a path with a "/"
    assert not glob_matches(pattern, f"{left}/{right}")


# --- editing -----------------------------------------------------------------------


def test_editing_operations_produce_valid_unsigned_policies(base, keys):
    signed = _signed(base, keys["root1"], keys["root2"])
    steps = [
        lambda e: policy_edit.add_endorser(e, "alice", [keys["alice"].public],
                                           "alice@example.org", ["imagelists/*.json"]),
        lambda e: policy_edit.allow(e, "alice", f"imagelists/{LIST_UUID}.json"),
        lambda e: policy_edit.add_endorser(e, "bob", [keys["bob"].public], None,
                                           ["imagelists/*.json"]),
        lambda e: policy_edit.add_root(e, keys["alice"].public),
        lambda e: policy_edit.set_threshold(e, 3),
        lambda e: policy_edit.set_threshold(e, 2),
        lambda e: policy_edit.remove_root(e, keys["root3"].key_id),
        lambda e: policy_edit.remove_endorser(e, "alice"),
        lambda e: policy_edit.with_expires(e, EXPIRES + timedelta(days=30, microseconds=5)),
    ]
    envelope = signed
    for i, step in enumerate(steps):
        before = envelope.canonical_bytes()
        edited = step(envelope)
        assert envelope.canonical_bytes() == before  # the input is never changed
        assert edited.version == envelope.version + 1, i
        assert edited.signatures == ()
        assert parse_policy(edited.canonical_bytes()) == edited
        check_key_ids(edited.signed)
        envelope = edited

    final = envelope.signed
    # the bob rule shares the glob alice had: one rule, alice gone from it
    assert [(r.paths, r.endorsers) for r in final.rules] == [(("imagelists/*.json",), ("bob",))]
    assert list(final.endorsers) == ["bob"]
    # alice's key stays: it became a root key before alice was removed
    assert final.root_keys == (keys["root1"].key_id, keys["root2"].key_id,
                               keys["alice"].key_id)
    assert keys["alice"].key_id in final.keys
    assert keys["root3"].key_id not in final.keys
    assert final.threshold == 2
    assert final.expires == EXPIRES + timedelta(days=30)


def test_remove_endorser_drops_its_keys_and_rules(with_alice, keys):
    edited = policy_edit.remove_endorser(with_alice, "alice")
    assert keys["alice"].key_id not in edited.signed.keys
    assert edited.signed.endorsers_for_path(f"imagelists/{LIST_UUID}.json") == {"bob"}
    assert [r.endorsers for r in edited.signed.rules] == [("bob",)]


@pytest.mark.parametrize("edit, fragment", [
    (lambda e, k: policy_edit.add_endorser(e, "alice", [k["root1"].public]), "already exists"),
    (lambda e, k: policy_edit.add_endorser(e, "carol", [k["alice"].public]), "already belongs"),
    (lambda e, k: policy_edit.add_endorser(e, "carol", []), "at least one key"),
    (lambda e, k: policy_edit.add_endorser(e, "-carol", [k["root1"].public]),
     "invalid endorser name"),
    (lambda e, k: policy_edit.add_endorser(e, "carol", [k["root1"].public], None, ["/abs"]),
     "invalid path glob"),
    (lambda e, k: policy_edit.remove_endorser(e, "carol"), 'no endorser named "carol"'),
    (lambda e, k: policy_edit.allow(e, "carol", "imagelists/*.json"), "no endorser named"),
    (lambda e, k: policy_edit.allow(e, "bob", "imagelists/*.json"), "already allowed"),
    (lambda e, k: policy_edit.allow(e, "bob", "imagelists/**"), "invalid path glob"),
    (lambda e, k: policy_edit.add_root(e, k["root1"].public), "already a root key"),
    (lambda e, k: policy_edit.remove_root(e, k["alice"].key_id), "not a root key"),
    (lambda e, k: policy_edit.remove_root(policy_edit.set_threshold(e, 3), k["root1"].key_id),
     "lower it first"),
    (lambda e, k: policy_edit.set_threshold(e, 0), "between 1 and"),
    (lambda e, k: policy_edit.set_threshold(e, 4), "between 1 and"),
    (lambda e, k: policy_edit.with_expires(e, datetime(2030, 1, 1)), "no timezone"),
])
def test_bad_edits_raise_usage_errors_and_change_nothing(with_alice, keys, edit, fragment):
    before = with_alice.canonical_bytes()
    with pytest.raises(UsageError, match=fragment):
        edit(with_alice, keys)
    assert with_alice.canonical_bytes() == before


def test_remove_last_root_is_refused(keys):
    single = new_policy(REGISTRY, [keys["root1"].public], 1, EXPIRES)
    with pytest.raises(UsageError, match="only root key"):
        policy_edit.remove_root(single, keys["root1"].key_id)


@pytest.mark.parametrize("registry, roots, threshold, fragment", [
    (REGISTRY, (), 1, "at least one root key"),
    (REGISTRY, ("root1",), 2, "between 1 and"),
    (REGISTRY, ("root1", "root1"), 2, "between 1 and"),
])
def test_new_policy_refuses_bad_arguments(keys, registry, roots, threshold, fragment):
    with pytest.raises(UsageError, match=fragment):
        new_policy(registry, [keys[r].public for r in roots], threshold, EXPIRES)


def test_new_policy_refuses_a_bad_registry_id(keys):
    with pytest.raises(InvalidDocumentError) as caught:
        new_policy("not-a-uuid", [keys["root1"].public], 1, EXPIRES)
    assert [p.path for p in caught.value.problems] == ["signed.registry"]


# --- gitreg.json -----------------------------------------------------------------------


def test_registry_info_round_trip():
    info = RegistryInfo(1, REGISTRY, "Example catalogue")
    data = info.canonical_bytes()
    assert data == (b'{\n    "format_version": 1,\n    "name": "Example catalogue",\n'
                    b'    "registry_id": "' + REGISTRY.encode() + b'"\n}\n')
    assert RegistryInfo.parse(data) == info


def test_registry_info_reports_every_problem():
    data = json.dumps({"format_version": 2, "registry_id": "nope", "name": "",
                       "owner": "x"}).encode()
    with pytest.raises(InvalidDocumentError) as caught:
        RegistryInfo.parse(data, "gitreg.json@deadbeef")
    assert sorted(p.path for p in caught.value.problems) == [
        "format_version", "name", "owner", "registry_id"]
    assert caught.value.source == "gitreg.json@deadbeef"
    assert "unsupported registry format version 2" in caught.value.diagnostics()


@pytest.mark.parametrize("data", [
    b"", b"{}", b'{"format_version": 1, "format_version": 1}', b"\xef\xbb\xbf{}",
    b'{"format_version": true, "registry_id": "' + REGISTRY.encode() + b'", "name": "x"}',
])
def test_registry_info_rejects_malformed(data):
    with pytest.raises(InvalidDocumentError):
        RegistryInfo.parse(data)


def test_registry_info_constructor_validates():
    with pytest.raises(InvalidDocumentError):
        RegistryInfo(1, REGISTRY.upper(), "x")


@pytest.mark.parametrize("refs, ok", [
    (["refs/tags/*"], True),
    (["refs/heads/main"], False),
    (["refs/*"], False),
    (["tags/*"], False),
    ("refs/tags/*", False),
])
def test_refs_open_only_refs_other_than_main(with_alice, refs, ok):
    doc = _doc(with_alice)
    doc["signed"]["refs"] = refs
    if ok:
        assert parse_policy(_bytes(doc)).signed.refs == tuple(refs)
    else:
        with pytest.raises(InvalidDocumentError) as caught:
            parse_policy(_bytes(doc))
        assert "signed.refs" in caught.value.diagnostics()
