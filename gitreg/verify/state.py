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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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
    policy_expired = None
    if policy.expires <= at:
        policy_expired = StateFinding(
            "policy-expired", f"policy version {policy.version} expired at "
            f"{_date(policy.expires)} (reference time {_date(at)}); the state is not "
            "applied until a renewal arrives", layout.POLICY_FILE)
    expired = {name: e.expires for name, e in policy.endorsers.items()
               if e.expires is not None and e.expires <= at}
    future = [m for m in (policy.expires,
                          *(e.expires for e in policy.endorsers.values()))
              if m is not None and m > at]
    inert: dict[str, StateFinding] = {}
    expired_lists: list[StateFinding] = []
    for entry in entries:
        if not layout.is_list(entry.path):
            continue
        list_id = layout.list_id_of(entry.path)
        assert list_id is not None
        if expired:
            key = list_signer(list_id)
            endorser = policy.endorser_of_key(key) if key is not None else None
            if endorser in expired:
                assert endorser is not None
                inert[list_id] = StateFinding(
                    "endorser-expired", f"list {list_id} is inert: its signer, endorser "
                    f"{endorser}, expired at {_date(expired[endorser])} (reference time "
                    f"{_date(at)})", entry.path, list_id=list_id, endorser=endorser)
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
    return StateVerdict(commit=commit, at=at, policy_expired=policy_expired, inert=inert,
                        expired_lists=tuple(expired_lists),
                        valid_until=min(future) if future else None)
