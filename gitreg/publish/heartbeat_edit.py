"""Setting and removing the policy's heartbeat requirement (``signed.heartbeat``).

Pure: a policy envelope in, a new unsigned one (version + 1) out, or a
UsageError saying what is wrong once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gitreg.errors import UsageError
from gitreg.model.policy import Policy, PolicyEnvelope, parse_duration
from gitreg.signing.interface import PublicKey


def _edited(envelope: PolicyEnvelope, change: Callable[[dict[str, Any]], None]
            ) -> PolicyEnvelope:
    raw = envelope.signed.to_dict()
    change(raw)
    raw["version"] = envelope.version + 1
    return PolicyEnvelope(Policy(raw, source=envelope.source), (), envelope.source)


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

    return _edited(envelope, change)


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

    return _edited(envelope, change)
