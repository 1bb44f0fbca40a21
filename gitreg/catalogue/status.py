"""Validity of catalogue records at one reference time (pure: the clock is given).

A list record carries what the verifier found (who signed it, whether that
signer is still allowed by the policy of the state) and its dates; whether it
is *valid now* depends on the reference time, so it is judged at query time
and never cached. What a state is worth at that time (its policy expired,
lists of an expired endorser inert) is the trust core's judgement
(``gitreg.verify.state.judge_state``), made from the policy the records were
read under, once per registry state until the next expiry it names. The
dates of lists and images are compared as text: the format is fixed
(``YYYY-MM-DDTHH:MM:SSZ``), so text order is time order, and a search over
30,000 images does not parse 60,000 dates.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gitreg.model.dates import format_date, parse_date

if TYPE_CHECKING:
    from gitreg.model.policy import Policy
    from gitreg.verify.source import Entry
    from gitreg.verify.state import StateVerdict

VALID = "valid"
EXPIRED = "expired"
REVOKED = "revoked"
INERT = "inert"  # signed by an endorser whose policy entry has expired
POLICY_EXPIRED = "policy-expired"
CONFLICT = "conflict"  # an image UUID two lists carry (a merge's image conflict)

STATUSES = (VALID, EXPIRED, REVOKED, INERT, POLICY_EXPIRED, CONFLICT)

# Parsed policies by blob id, and verdicts by registry state: (from, until, verdict).
_POLICIES: dict[str, Policy] = {}
_VERDICTS: dict[tuple[str, str, str], tuple[str, str | None, StateVerdict]] = {}
_EXPIRED_ATTESTERS: dict[tuple[str, str], frozenset[str]] = {}
# Per state, the image UUIDs several lists carry with their claims; per time, the
# ones still in conflict at a time (conflicted_images).
_SHARED: dict[tuple[str, str], dict[str, tuple[tuple[dict[str, Any], dict[str, Any]], ...]]] = {}
_CONFLICTS: dict[tuple[str, str, str], frozenset[str]] = {}
_KEEP = 64


def stamp(now: datetime) -> str:
    """The reference time in the records' date format."""
    return format_date(now)


def verdict(registry: dict[str, Any], now: str) -> StateVerdict:
    """The trust core's verdict on the state ``registry`` was read from, at ``now``.

    Kept for the span in which it cannot change (``valid_until``): a server
    judging every request at its own time asks the core once per expiry.
    """
    key = (registry["registry"], registry["head"], registry["policy_blob"])
    known = _VERDICTS.get(key)
    if known is not None and known[0] <= now and (known[1] is None or now < known[1]):
        return known[2]
    from gitreg.verify.state import judge_state

    policy = _policy(registry)
    lists = registry["lists"]

    def signer(list_id: str) -> str | None:
        record = lists.get(list_id)
        return record["signature"].get("key") if record else None

    found = judge_state(registry["head"], policy, parse_date(now),
                        entries=_entries(lists), list_signer=signer)
    if len(_VERDICTS) >= _KEEP:
        _VERDICTS.clear()
    until = stamp(found.valid_until) if found.valid_until else None
    _VERDICTS[key] = (now, until, found)
    return found


def expired_attesters(registry: dict[str, Any], now: str) -> frozenset[str]:
    """The attesters whose policy entry has expired at ``now``: their statements count no more.

    As an endorser whose entry expired leaves its lists inert (``judge_state``).
    """
    key = (registry["policy_blob"], now)
    found = _EXPIRED_ATTESTERS.get(key)
    if found is None:
        if len(_EXPIRED_ATTESTERS) >= _KEEP:
            _EXPIRED_ATTESTERS.clear()
        found = _EXPIRED_ATTESTERS[key] = _policy(registry).expired_attesters(parse_date(now))
    return found


def _policy(registry: dict[str, Any]) -> Policy:
    from gitreg.model.policy import Policy

    policy = _POLICIES.get(registry["policy_blob"])
    if policy is None:
        policy = _POLICIES[registry["policy_blob"]] = Policy(registry["policy"])
    return policy


def _entries(lists: dict[str, Any]) -> Iterator[Entry]:
    from gitreg.verify import layout
    from gitreg.verify.source import Entry

    for list_id, record in lists.items():
        yield Entry(path=layout.list_path(list_id), oid=record["blob"], mode=0o100644)


def list_status(registry: dict[str, Any], record: dict[str, Any],
                now: str) -> tuple[str, str]:
    """``(status, reason)`` of a list record of ``registry`` at ``now`` (``stamp``)."""
    signature = record["signature"]
    if signature.get("error"):
        return REVOKED, str(signature["error"])
    state = verdict(registry, now)
    if state.policy_expired is not None:
        return POLICY_EXPIRED, f"the registry's policy expired at {registry['policy_expires']}"
    inert = state.inert.get(record["id"])
    if inert is not None:
        until = _policy(registry).endorsers[str(inert.endorser)].expires
        return INERT, f"endorser {inert.endorser} expired at {stamp(until) if until else '?'}"
    if now >= record["expires"]:
        return EXPIRED, f"the list expired at {record['expires']}"
    return VALID, ""


def image_status(registry: dict[str, Any], list_state: tuple[str, str],
                 image: dict[str, Any], now: str) -> tuple[str, str]:
    """``(status, reason)`` of one image of a list of ``registry`` whose status is
    ``list_state``."""
    state = _claim_status(list_state, image, now)
    if state[0] != VALID:
        return state
    if image["id"] in conflicted_images(registry, now):
        return CONFLICT, ("another list of the registry carries this image UUID too (an "
                          "image conflict): sites take it from neither list")
    return VALID, ""


def conflicted_images(registry: dict[str, Any], now: str) -> frozenset[str]:
    """The image UUIDs that several current lists of the state carry at ``now``.

    Only a merge of concurrent pushes leaves one (docs/format.md,
    "Replication"); it lasts until an endorser drops the image from a list.
    As at a site (gitreg/site/plan.py), a claim counts while its list is
    valid and the image unexpired. The UUIDs carried twice at all are found
    once per state (usually none), and judged at each reference time.
    """
    key = (registry["registry"], registry["head"])
    shared = _SHARED.get(key)
    if shared is None:
        carriers: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        for record in registry["lists"].values():
            for image in record["images"]:
                carriers.setdefault(image["id"], []).append((record, image))
        if len(_SHARED) >= _KEEP:
            _SHARED.clear()
        shared = _SHARED[key] = {u: tuple(c) for u, c in carriers.items() if len(c) > 1}
    if not shared:
        return frozenset()
    at = (*key, now)
    found = _CONFLICTS.get(at)
    if found is None:
        if len(_CONFLICTS) >= _KEEP:
            _CONFLICTS.clear()
        found = _CONFLICTS[at] = frozenset(
            uuid for uuid, claims in shared.items()
            if sum(_current(registry, record, image, now) for record, image in claims) > 1)
    return found


def _claim_status(list_state: tuple[str, str], image: dict[str, Any],
                  now: str) -> tuple[str, str]:
    """The status of an image from its list's and its own dates, conflicts aside."""
    if list_state[0] != VALID:
        return list_state
    expires = image.get("expires")
    if expires and now >= expires:
        return EXPIRED, f"the image expired at {expires}"
    return VALID, ""


def _current(registry: dict[str, Any], record: dict[str, Any], image: dict[str, Any],
             now: str) -> bool:
    return _claim_status(list_status(registry, record, now), image, now)[0] == VALID
