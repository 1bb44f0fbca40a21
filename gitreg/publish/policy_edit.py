"""Editing the trust policy: the endorser side of ``policy.json``.

Pure: a policy envelope in, a new unsigned one out (version + 1), or a
UsageError that says once what is wrong. The trust core and the model only
parse and read policies; everything that drafts a new one lives here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from gitreg.errors import UsageError
from gitreg.model.attestation import ATTESTER_NAME
from gitreg.model.dates import format_date
from gitreg.model.globs import glob_problem
from gitreg.model.policy import (
    ENDORSER_NAME,
    Limits,
    Policy,
    PolicyEnvelope,
    PolicySignature,
    parse_duration,
)
from gitreg.signing.interface import NAMESPACE_POLICY, PublicKey, Signer


def _q(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def edited(envelope: PolicyEnvelope, change: Callable[[dict[str, Any]], None]
           ) -> PolicyEnvelope:
    """``envelope`` after ``change`` to a copy of its signed dict: version + 1, unsigned."""
    raw = envelope.signed.to_dict()
    change(raw)
    raw["version"] = envelope.version + 1
    return PolicyEnvelope(Policy(raw, source=envelope.source), (), envelope.source)


def with_version(envelope: PolicyEnvelope, version: int) -> PolicyEnvelope:
    """The same policy as version ``version``, unsigned.

    For drafts: edits each add 1, and a draft edited several times before
    publication must still be exactly the published version + 1.
    """
    raw = envelope.signed.to_dict()
    raw["version"] = version
    return PolicyEnvelope(Policy(raw, source=envelope.source), (), envelope.source)


def _date_text(expires: datetime) -> str:
    try:
        return format_date(expires)
    except ValueError as exc:
        raise UsageError(f"policy expiry: {exc}") from None


def with_expires(envelope: PolicyEnvelope, expires: datetime) -> PolicyEnvelope:
    text = _date_text(expires)

    def change(raw: dict[str, Any]) -> None:
        raw["expires"] = text

    return edited(envelope, change)


def add_endorser(envelope: PolicyEnvelope, name: str, keys: Sequence[PublicKey],
                 email: str | None = None, allow: Iterable[str] = ()) -> PolicyEnvelope:
    """Add endorser ``name`` with ``keys``, allowed to change the ``allow`` globs."""
    policy = envelope.signed
    if name in policy.endorsers:
        raise UsageError(f"{envelope.source}: endorser {_q(name)} already exists",
                         hint=f"to give it another key: `gitreg policy add-key {name} "
                              "--key PUB`")
    if not ENDORSER_NAME.fullmatch(name):
        raise UsageError(f"invalid endorser name {_q(name)} (letters, digits and ._@+-, "
                         "starting with a letter or digit, at most 64)")
    if not keys:
        raise UsageError(f"endorser {_q(name)} needs at least one key")
    globs = list(allow)
    for glob in globs:
        if (why := glob_problem(glob)) is not None:
            raise UsageError(why)
    for key in keys:
        _check_unowned(policy, key)

    def change(raw: dict[str, Any]) -> None:
        raw["endorsers"][name] = _key_holder(raw, keys, email)
        for glob in globs:
            _allow_in(raw, name, glob)

    return edited(envelope, change)


def _check_unowned(policy: Policy, key: PublicKey) -> None:
    """One key, one endorser or attester: otherwise a signature could not say who signed."""
    if (owner := policy.endorser_of_key(key.key_id)) is not None:
        raise UsageError(f"key {key.key_id} already belongs to endorser {_q(owner)}")
    if (site := policy.attester_of_key(key.key_id)) is not None:
        raise UsageError(f"key {key.key_id} already belongs to attester {_q(site)}")


def _key_holder(raw: dict[str, Any], keys: Sequence[PublicKey],
                email: str | None) -> dict[str, Any]:
    """An endorser or attester entry for ``keys`` (their material added to ``keys``)."""
    key_ids: list[str] = []
    for key in keys:
        raw["keys"].setdefault(key.key_id, key.to_policy())
        if key.key_id not in key_ids:
            key_ids.append(key.key_id)
    entry: dict[str, Any] = {"keys": key_ids}
    if email is not None:
        entry["email"] = email
    return entry


def remove_endorser(envelope: PolicyEnvelope, name: str) -> PolicyEnvelope:
    """Remove endorser ``name``, its keys (unless root keys) and its rule entries."""
    owned = envelope.signed.endorser_keys(name)
    root = set(envelope.signed.root_keys) | set(_heartbeat_keys(envelope.signed))

    def change(raw: dict[str, Any]) -> None:
        del raw["endorsers"][name]
        for key_id in owned:
            if key_id not in root:
                del raw["keys"][key_id]
        _drop_from_rules(raw, "endorsers", name)

    return edited(envelope, change)


def _drop_from_rules(raw: dict[str, Any], field: str, name: str) -> None:
    """Take ``name`` out of every rule's ``field``; drop rules that name nobody then."""
    rules = []
    for rule in raw["rules"]:
        if field in rule:
            rule[field] = [n for n in rule[field] if n != name]
            if not rule[field]:
                del rule[field]
        if rule.get("endorsers") or rule.get("attesters"):
            rules.append(rule)
    raw["rules"] = rules


def add_key(envelope: PolicyEnvelope, name: str, key: PublicKey) -> PolicyEnvelope:
    """Give endorser ``name`` the further key ``key`` (a new laptop, a renewed certificate)."""
    policy = envelope.signed
    owned = policy.endorser_keys(name)  # UsageError naming the endorsers if unknown
    if key.key_id in owned:
        raise UsageError(f"endorser {_q(name)} already has key {key.key_id}")
    owner = policy.endorser_of_key(key.key_id)
    if owner is not None:
        raise UsageError(f"key {key.key_id} already belongs to endorser {_q(owner)}",
                         hint=f"remove it there first: `gitreg policy remove-key {owner} "
                              f"{key.key_id}`")
    _check_unowned(policy, key)

    def change(raw: dict[str, Any]) -> None:
        raw["keys"].setdefault(key.key_id, key.to_policy())
        raw["endorsers"][name]["keys"].append(key.key_id)

    return edited(envelope, change)


def remove_key(envelope: PolicyEnvelope, name: str, key_id: str) -> PolicyEnvelope:
    """Take key ``key_id`` from endorser ``name`` (its material too, unless a root key's)."""
    policy = envelope.signed
    owned = policy.endorser_keys(name)
    if key_id not in owned:
        raise UsageError(f"endorser {_q(name)} has no key {key_id} (its keys: "
                         f"{', '.join(owned)})")
    if len(owned) == 1:
        raise UsageError(f"key {key_id} is the last key of endorser {_q(name)}",
                         hint="add its new key first (`gitreg policy add-key`), or remove "
                              "the endorser (`gitreg policy remove-endorser`)")
    root = key_id in policy.root_keys or key_id in _heartbeat_keys(policy)

    def change(raw: dict[str, Any]) -> None:
        raw["endorsers"][name]["keys"].remove(key_id)
        if not root:
            del raw["keys"][key_id]

    return edited(envelope, change)


def allow(envelope: PolicyEnvelope, name: str, glob: str) -> PolicyEnvelope:
    """Allow endorser ``name`` to change paths matching ``glob``."""
    envelope.signed.endorser_keys(name)  # raises for an unknown endorser
    if (why := glob_problem(glob)) is not None:
        raise UsageError(why)
    if any(glob in rule.paths and name in rule.endorsers and len(rule.paths) == 1
           for rule in envelope.signed.rules):
        raise UsageError(f"endorser {_q(name)} is already allowed {_q(glob)}")
    return edited(envelope, lambda raw: _allow_in(raw, name, glob))


def add_root(envelope: PolicyEnvelope, key: PublicKey) -> PolicyEnvelope:
    """Add ``key`` to the root keys (the threshold stays as it is)."""
    if key.key_id in envelope.signed.root_keys:
        raise UsageError(f"key {key.key_id} is already a root key")

    def change(raw: dict[str, Any]) -> None:
        raw["keys"].setdefault(key.key_id, key.to_policy())
        raw["root"]["keys"].append(key.key_id)

    return edited(envelope, change)


def remove_root(envelope: PolicyEnvelope, key_id: str) -> PolicyEnvelope:
    """Remove ``key_id`` from the root keys (and its material unless an endorser's)."""
    policy = envelope.signed
    roots = policy.root_keys
    if key_id not in roots:
        raise UsageError(f"key {key_id} is not a root key "
                         f"(root keys: {', '.join(roots)})")
    if len(roots) == 1:
        raise UsageError(f"key {key_id} is the only root key; add another root first")
    if policy.threshold > len(roots) - 1:
        raise UsageError(f"the threshold {policy.threshold} would exceed the "
                         f"{len(roots) - 1} remaining root keys; lower it first")
    owned = (policy.endorser_of_key(key_id) is not None or policy.attester_of_key(key_id)
             is not None or key_id in _heartbeat_keys(policy))

    def change(raw: dict[str, Any]) -> None:
        raw["root"]["keys"].remove(key_id)
        if not owned:
            del raw["keys"][key_id]

    return edited(envelope, change)


def set_threshold(envelope: PolicyEnvelope, threshold: int) -> PolicyEnvelope:
    """Require ``threshold`` root signatures on the next policy change."""
    n = len(envelope.signed.root_keys)
    if not 1 <= threshold <= n:
        raise UsageError(f"threshold must be between 1 and the number of root keys "
                         f"({n}), not {threshold}")

    def change(raw: dict[str, Any]) -> None:
        raw["root"]["threshold"] = threshold

    return edited(envelope, change)


def _allow_in(raw: dict[str, Any], name: str, glob: str) -> None:
    # Endorsers allowed the same single glob share one rule, so the rule list
    # stays as short as a human would write it.
    for rule in raw["rules"]:
        if rule["paths"] == [glob] and "endorsers" in rule:
            if name not in rule["endorsers"]:
                rule["endorsers"].append(name)
            return
    raw["rules"].append({"paths": [glob], "endorsers": [name]})


def attester_glob(name: str) -> str:
    """The rule an attester gets: its own directory of statements."""
    return f"attestations/{name}/*"


def add_attester(envelope: PolicyEnvelope, name: str, keys: Sequence[PublicKey],
                 email: str | None = None) -> PolicyEnvelope:
    """Add attester ``name`` (a site) with ``keys`` and the rule ``attestations/<name>/*``."""
    policy = envelope.signed
    if name in policy.attesters:
        raise UsageError(f"{envelope.source}: attester {_q(name)} already exists")
    if not ATTESTER_NAME.fullmatch(name):
        raise UsageError(f"invalid attester name {_q(name)} (letters, digits and ._-, "
                         "starting with a letter or digit, at most 64)")
    if not keys:
        raise UsageError(f"attester {_q(name)} needs at least one key")
    for key in keys:
        if key.scheme == "x509":
            raise UsageError(f"key {key.key_id}: an attester signs its commits with its key, "
                             "and git signs commits with SSH or OpenPGP keys, not X.509")
        _check_unowned(policy, key)
    if email is not None and "@" not in email:
        raise UsageError(f"--email {email!r} is not an e-mail address")

    def change(raw: dict[str, Any]) -> None:
        raw.setdefault("attesters", {})[name] = _key_holder(raw, keys, email)
        raw["rules"].append({"paths": [attester_glob(name)], "attesters": [name]})

    return edited(envelope, change)


def remove_attester(envelope: PolicyEnvelope, name: str) -> PolicyEnvelope:
    """Remove attester ``name``, its keys (unless root keys) and its rule entries.

    Its statements stay in the tree (they are never deleted) but count no more:
    no policy key of an attester signs them.
    """
    policy = envelope.signed
    if name not in policy.attesters:
        known = ", ".join(sorted(policy.attesters)) or "none"
        raise UsageError(f"{envelope.source}: no attester named {_q(name)} "
                         f"(attesters: {known})")
    owned = policy.attester_keys(name)
    root = set(policy.root_keys) | set(_heartbeat_keys(policy))

    def change(raw: dict[str, Any]) -> None:
        del raw["attesters"][name]
        if not raw["attesters"]:
            del raw["attesters"]
        for key_id in owned:
            if key_id not in root:
                del raw["keys"][key_id]
        _drop_from_rules(raw, "attesters", name)

    return edited(envelope, change)


def new_policy(registry_id: str, root_keys: Sequence[PublicKey], threshold: int,
               expires: datetime, *, limits: Limits | None = None) -> PolicyEnvelope:
    """The first policy (version 1) of registry ``registry_id``, unsigned."""
    if not root_keys:
        raise UsageError("a policy needs at least one root key")
    key_ids = list(dict.fromkeys(k.key_id for k in root_keys))
    if not 1 <= threshold <= len(key_ids):
        raise UsageError(f"threshold must be between 1 and the number of root keys "
                         f"({len(key_ids)}), not {threshold}")
    signed = {
        "version": 1,
        "expires": _date_text(expires),
        "registry": registry_id,
        "root": {"keys": key_ids, "threshold": threshold},
        "keys": {k.key_id: k.to_policy() for k in root_keys},
        "endorsers": {},
        "rules": [],
        "limits": (limits or Limits()).to_dict(),
    }
    return PolicyEnvelope(Policy(signed))


def add_signature(envelope: PolicyEnvelope, signer: Signer) -> PolicyEnvelope:
    """``envelope`` with a signature by ``signer`` over its signed bytes.

    A signature already made by the same key is replaced, so signing twice
    never looks like two signers.
    """
    armour = signer.sign(envelope.signed_bytes(), namespace=NAMESPACE_POLICY)
    try:
        text = armour.decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(f"key {signer.key_id}: the signature is not armoured text") from None
    new = PolicySignature(keyid=signer.key_id, sig=text)
    signatures = list(envelope.signatures)
    for i, existing in enumerate(signatures):
        if existing.keyid == new.keyid:
            signatures[i] = new
            break
    else:
        signatures.append(new)
    return PolicyEnvelope(envelope.signed, tuple(signatures), envelope.source)


# --- the heartbeat requirement (``signed.heartbeat``) ---------------------------


def _heartbeat_keys(policy: Policy) -> tuple[str, ...]:
    """Key ids the heartbeat requirement names: their material stays while it does."""
    return policy.heartbeat.keys if policy.heartbeat is not None else ()


def _used_elsewhere(policy: Policy, key_id: str) -> bool:
    return key_id in policy.root_keys or policy.endorser_of_key(key_id) is not None


def set_heartbeat(envelope: PolicyEnvelope, keys: Sequence[PublicKey],
                  max_age: str | None) -> PolicyEnvelope:
    """Require heartbeats signed by ``keys`` (all of them replace the old ones; none:
    keep them) at most ``max_age`` old (None: keep it)."""
    policy = envelope.signed
    current = policy.heartbeat
    if max_age is not None:
        try:
            parse_duration(max_age)
        except ValueError as exc:
            raise UsageError(f"--max-age: {exc}") from None
    if current is None and (not keys or max_age is None):
        raise UsageError("the policy requires no heartbeat yet: give --key and --max-age")
    key_ids = list(dict.fromkeys(k.key_id for k in keys)) if keys else list(current.keys
                                                                             if current else ())
    age = max_age if max_age is not None else (current.max_age_text if current else "")
    if current is not None and list(current.keys) == key_ids and current.max_age_text == age:
        raise UsageError(f"the policy already requires heartbeats by {', '.join(key_ids)} "
                         f"at most {age} old")
    dropped = [k for k in (current.keys if current else ()) if k not in key_ids
               and not _used_elsewhere(policy, k)]

    def change(raw: dict[str, Any]) -> None:
        for key in keys:
            raw["keys"].setdefault(key.key_id, key.to_policy())
        for key_id in dropped:
            del raw["keys"][key_id]
        raw["heartbeat"] = {"keys": key_ids, "max_age": age}

    return edited(envelope, change)


def remove_heartbeat(envelope: PolicyEnvelope) -> PolicyEnvelope:
    """Require no heartbeat any more (heartbeat-only key material goes too)."""
    policy = envelope.signed
    current = policy.heartbeat
    if current is None:
        raise UsageError("the policy requires no heartbeat; nothing to remove")
    dropped = [k for k in current.keys if not _used_elsewhere(policy, k)]

    def change(raw: dict[str, Any]) -> None:
        del raw["heartbeat"]
        for key_id in dropped:
            del raw["keys"][key_id]

    return edited(envelope, change)
