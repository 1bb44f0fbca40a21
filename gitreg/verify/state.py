"""Expiry as a property of a verified state, judged at the context's reference time.

At a site, a mirror and in ``gitreg verify`` a commit in the middle of
history may have been made under a policy or by an endorser that expired
since, and a signer's dates prove nothing. So expiry does not refuse commits
there; it decides what a verified state is worth at the reference time:

- ``policy-expired``: the state is not applied (the site keeps its trusted
  state) until a renewal arrives;
- ``endorser-expired``: a list signed by an endorser who is expired is
  inert (its images are not installed, and are retired if they were),
  whenever it claims to have been signed;
- ``list-expired``, ``list-dates`` (dated in the future): reported by
  ``gitreg verify``; a site's planner retires (or waits for) such lists on
  its own.

A site judges every new state, so the cost follows the change: the tree's
entries are walked only when some endorser is expired (or the lists were
asked for), and ``judge_state_since`` carries the inert lists of the
previous verdict forward, judging only the lists whose blobs changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gitreg.errors import PolicyViolationError
from gitreg.model.policy import Policy
from gitreg.verify import layout
from gitreg.verify.facts import CREATED_SKEW, ListFacts
from gitreg.verify.source import Entry


def _date(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


@dataclass(frozen=True)
class StateFinding:
    """One thing a state is not good for at the reference time."""

    rule: str
    message: str
    path: str
    list_id: str | None = None
    endorser: str | None = None


@dataclass(frozen=True)
class StateVerdict:
    """What a verified commit is worth at one reference time."""

    commit: str
    at: datetime
    policy_expired: StateFinding | None = None
    # list UUID -> why its content is inert (endorser-expired).
    inert: Mapping[str, StateFinding] = field(default_factory=dict)
    expired_lists: tuple[StateFinding, ...] = ()
    # The first moment after ``at`` at which this verdict changes (an expiry
    # of the policy or of an endorser), if any: what a cache may keep it until.
    valid_until: datetime | None = None
    # What ``judge_state_since`` needs to carry this verdict forward.
    policy_version: int = 0
    expired_endorsers: frozenset[str] = frozenset()

    @property
    def applicable(self) -> bool:
        return self.policy_expired is None

    def findings(self) -> list[StateFinding]:
        found = [self.policy_expired] if self.policy_expired else []
        return [*found, *(self.inert[k] for k in sorted(self.inert)), *self.expired_lists]

    def refusal(self) -> PolicyViolationError | None:
        """The error to raise where a state that cannot be applied is refused."""
        if self.policy_expired is None:
            return None
        return PolicyViolationError(self.policy_expired.message, rule="policy-expired",
                                    commit=self.commit, path=layout.POLICY_FILE,
                                    hint="the root key holders must sign a renewed policy")


def judge_state(commit: str, policy: Policy, at: datetime, *, entries: Iterable[Entry],
                list_signer: Callable[[str], str | None],
                list_facts: Callable[[Entry], ListFacts] | None = None) -> StateVerdict:
    """Judge the state of ``commit`` (its policy and list ``entries``) at ``at``.

    ``list_signer(list_id)``: the policy key that signed that list (``None`` if
    none of the allowed keys did); asked only when some endorser is expired.
    ``list_facts``: given, the expired lists are reported too (``gitreg verify``).
    """
    expired = _expired_endorsers(policy, at)
    inert: dict[str, StateFinding] = {}
    expired_lists: list[StateFinding] = []
    # With no endorser expired and no list asked for, no entry can change the verdict.
    for entry in entries if expired or list_facts is not None else ():
        if not layout.is_list(entry.path):
            continue
        list_id = layout.list_id_of(entry.path)
        assert list_id is not None
        if expired:
            finding = _inert(list_id, entry.path, policy, expired=expired, at=at,
                             list_signer=list_signer)
            if finding is not None:
                inert[list_id] = finding
        if list_facts is not None and list_id not in inert:
            facts = list_facts(entry)
            if facts.created > at + CREATED_SKEW:
                expired_lists.append(StateFinding(
                    "list-dates", f"list {list_id} is dated {_date(facts.created)}, after "
                    f"the reference time {_date(at)}; it waits for its date", entry.path,
                    list_id=list_id))
            elif facts.expires <= at:
                expired_lists.append(StateFinding(
                    "list-expired", f"list {list_id} expired at {_date(facts.expires)}",
                    entry.path, list_id=list_id))
    return _verdict(commit, policy, at, expired=expired, inert=inert,
                    expired_lists=tuple(expired_lists))


def judge_state_since(previous: StateVerdict, commit: str, policy: Policy, at: datetime, *,
                      changed: Iterable[Entry], removed: Collection[str],
                      list_signer: Callable[[str], str | None]) -> StateVerdict | None:
    """``judge_state`` of ``commit`` (lists not asked for) from the verdict of an
    earlier state: ``changed`` are the list entries whose list or signature blob
    differs from that state's, ``removed`` the list UUIDs it had and this one lacks.

    Equal to ``judge_state`` over every entry whenever it answers; None (judge
    the whole state) when the previous verdict cannot be carried forward: the
    policy or the set of expired endorsers differs.
    """
    expired = _expired_endorsers(policy, at)
    if previous.policy_version != policy.version or \
            previous.expired_endorsers != frozenset(expired):
        return None
    lists = [(list_id, e) for e in changed
             if layout.is_list(e.path) and (list_id := layout.list_id_of(e.path))]
    gone = set(removed) | {list_id for list_id, _ in lists}
    inert: dict[str, StateFinding] = {}
    for list_id, old in previous.inert.items():
        if list_id not in gone and old.endorser is not None:
            # Same blobs, same policy, same expired endorsers: the same signer.
            inert[list_id] = _inert_finding(list_id, old.path, old.endorser,
                                            expired[old.endorser], at)
    for list_id, entry in lists if expired else ():
        finding = _inert(list_id, entry.path, policy, expired=expired, at=at,
                             list_signer=list_signer)
        if finding is not None:
            inert[list_id] = finding
    return _verdict(commit, policy, at, expired=expired, inert=dict(sorted(inert.items())),
                    expired_lists=())


def _expired_endorsers(policy: Policy, at: datetime) -> dict[str, datetime]:
    return {name: e.expires for name, e in policy.endorsers.items()
            if e.expires is not None and e.expires <= at}


def _inert(list_id: str, path: str, policy: Policy, *, expired: Mapping[str, datetime],
           at: datetime, list_signer: Callable[[str], str | None]) -> StateFinding | None:
    key = list_signer(list_id)
    endorser = policy.endorser_of_key(key) if key is not None else None
    if endorser is None or endorser not in expired:
        return None
    return _inert_finding(list_id, path, endorser, expired[endorser], at)


def _inert_finding(list_id: str, path: str, endorser: str, expires: datetime,
                   at: datetime) -> StateFinding:
    return StateFinding(
        "endorser-expired", f"list {list_id} is inert: its signer, endorser {endorser}, "
        f"expired at {_date(expires)} (reference time {_date(at)})", path,
        list_id=list_id, endorser=endorser)


def _verdict(commit: str, policy: Policy, at: datetime, *, expired: Mapping[str, datetime],
             inert: dict[str, StateFinding],
             expired_lists: tuple[StateFinding, ...]) -> StateVerdict:
    policy_expired = None
    if policy.expires <= at:
        policy_expired = StateFinding(
            "policy-expired", f"policy version {policy.version} expired at "
            f"{_date(policy.expires)} (reference time {_date(at)}); the state is not "
            "applied until a renewal arrives", layout.POLICY_FILE)
    future = [m for m in (policy.expires,
                          *(e.expires for e in policy.endorsers.values()))
              if m is not None and m > at]
    return StateVerdict(commit=commit, at=at, policy_expired=policy_expired, inert=inert,
                        expired_lists=expired_lists,
                        valid_until=min(future) if future else None,
                        policy_version=policy.version,
                        expired_endorsers=frozenset(expired))
