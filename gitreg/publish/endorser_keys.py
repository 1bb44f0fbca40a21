"""Adding a key to, and removing one from, an endorser that is already in the policy.

An endorser rotates keys (a new laptop, a grid certificate renewed) without
losing its name, its rules or its place in the history. Pure: a policy
envelope in, a new unsigned one (version + 1) out, or a UsageError that says
what is wrong once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gitreg.errors import UsageError
from gitreg.model.policy import Policy, PolicyEnvelope
from gitreg.signing.interface import PublicKey


def _edited(envelope: PolicyEnvelope, change: Callable[[dict[str, Any]], None]
            ) -> PolicyEnvelope:
    raw = envelope.signed.to_dict()
    change(raw)
    raw["version"] = envelope.version + 1
    return PolicyEnvelope(Policy(raw, source=envelope.source), (), envelope.source)


def add_key(envelope: PolicyEnvelope, name: str, key: PublicKey) -> PolicyEnvelope:
    """Give endorser ``name`` the further key ``key``."""
    policy = envelope.signed
    owned = policy.endorser_keys(name)  # UsageError naming the endorsers if unknown
    if key.key_id in owned:
        raise UsageError(f"endorser {json.dumps(name)} already has key {key.key_id}")
    owner = policy.endorser_of_key(key.key_id)
    if owner is not None:
        raise UsageError(f"key {key.key_id} already belongs to endorser {json.dumps(owner)}",
                         hint=f"remove it there first: `gitreg policy remove-key {owner} "
                              f"{key.key_id}`")

    def change(raw: dict[str, Any]) -> None:
        raw["keys"].setdefault(key.key_id, key.to_policy())
        raw["endorsers"][name]["keys"].append(key.key_id)

    return _edited(envelope, change)


def remove_key(envelope: PolicyEnvelope, name: str, key_id: str) -> PolicyEnvelope:
    """Take key ``key_id`` from endorser ``name`` (its material too, unless a root key's)."""
    policy = envelope.signed
    owned = policy.endorser_keys(name)
    if key_id not in owned:
        raise UsageError(f"endorser {json.dumps(name)} has no key {key_id} (its keys: "
                         f"{', '.join(owned)})")
    if len(owned) == 1:
        raise UsageError(f"key {key_id} is the last key of endorser {json.dumps(name)}",
                         hint="add its new key first (`gitreg policy add-key`), or remove "
                              "the endorser (`gitreg policy remove-endorser`)")
    root = key_id in policy.root_keys

    def change(raw: dict[str, Any]) -> None:
        raw["endorsers"][name]["keys"].remove(key_id)
        if not root:
            del raw["keys"][key_id]

    return _edited(envelope, change)
