"""A site's freeze check: does a young signed heartbeat vouch for the state it applies?

Every remote's ``refs/gitreg/heartbeat/*`` is fetched with its ``main``
(staged as ``refs/gitreg/remotes/r<n>/heartbeat/<replica>``). When the policy
of the state to apply names heartbeat keys, each staged heartbeat is judged
by the trust core (``gitreg.verify.heartbeat``) under that policy at the
sync's reference time, and the state is fresh when one valid heartbeat for
it (its commit is the state or a descendant) is at most ``max_age`` old.
Otherwise a mirror or replica may be frozen in time: the site stays where
it is ("freeze suspected"). Heartbeats by keys the policy does not name and
heartbeats from the future (clock skew) are reported and do not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitreg.errors import GitregError, PolicyViolationError, RejectedError
from gitreg.gitstore.store import RegistryStore
from gitreg.model.dates import format_date
from gitreg.model.policy import Policy
from gitreg.server.heartbeat import judge, staged_refs
from gitreg.site.config import RegistryConfig
from gitreg.verify.context import VerifyContext
from gitreg.verify.heartbeat import Freshness, Heartbeat, describe_age, judge_freshness


@dataclass
class RemoteHeartbeat:
    """The newest valid heartbeat one remote offered, and whether it covers the state."""

    url: str
    newest: Heartbeat | None = None
    covers: bool = False
    findings: list[str] = field(default_factory=list)

    def to_json(self, context: VerifyContext) -> dict[str, Any]:
        beat = self.newest
        if beat is None:
            return {"url": self.url, "heartbeat": None, "findings": self.findings}
        age = max(beat.age(context.at).total_seconds(), 0)
        return {"url": self.url, "findings": self.findings, "heartbeat": {
            "replica": beat.replica, "commit": beat.commit, "time": format_date(beat.time),
            "age_seconds": int(age), "age": describe_age(beat.age(context.at)),
            "covers_state": self.covers, "key": beat.key_id}}


@dataclass
class FreshnessReport:
    """What a sync found out about the freshness of one registry's state."""

    state: str
    freshness: Freshness
    remotes: list[RemoteHeartbeat]

    @property
    def findings(self) -> list[str]:
        return [f for remote in self.remotes for f in remote.findings]

    def freeze(self) -> str | None:
        """``freeze suspected: ...`` when the state is not vouched for, else None."""
        if self.freshness.fresh:
            return None
        fresh = self.freshness
        limit = describe_age(fresh.max_age)
        if fresh.newest is None:
            return (f"freeze suspected: no remote offers a valid heartbeat for state "
                    f"{self.state[:12]} or a newer one (maximum age {limit})")
        return (f"freeze suspected: the newest valid heartbeat for state {self.state[:12]} "
                f"or a newer one (replica {fresh.newest.replica}, commit "
                f"{fresh.newest.commit[:12]}) is {describe_age(fresh.age)} old, more than the "
                f"maximum age {limit}")

    def to_json(self, context: VerifyContext) -> dict[str, Any]:
        fresh = self.freshness
        return {"state": self.state, "required": fresh.required, "fresh": fresh.fresh,
                "max_age": describe_age(fresh.max_age) if fresh.max_age else None,
                "age_seconds": int(fresh.age.total_seconds()) if fresh.age is not None
                else None,
                "detail": fresh.describe(), "findings": self.findings,
                "remotes": [r.to_json(context) for r in self.remotes]}


def remote_heartbeats(store: RegistryStore, registry: RegistryConfig, policy: Policy,
                      state: str, context: VerifyContext) -> list[RemoteHeartbeat]:
    """Each remote's staged heartbeats judged under ``policy``: its newest valid one."""
    found = []
    for index, url in enumerate(registry.remotes):
        remote = RemoteHeartbeat(url)
        for ref, oid in staged_refs(store, f"r{index}"):
            replica = ref.rsplit("/", 1)[-1]
            try:
                beat = judge(store, oid, policy, context, source=f"heartbeat {replica}")
            except PolicyViolationError as exc:
                why = ("clock skew" if exc.rule == "heartbeat-future" else "ignored")
                remote.findings.append(f"remote {url}: heartbeat {replica}: {why}: "
                                       f"{exc.message} [rule: {exc.rule}]")
                continue
            except RejectedError as exc:
                remote.findings.append(f"remote {url}: heartbeat {replica}: ignored: "
                                       f"{exc.message} [rule: heartbeat-format]")
                continue
            covers = _covers(store, beat.commit, state)
            best = remote.newest
            if best is None or (covers, beat.time) > (remote.covers, best.time):
                remote.newest, remote.covers = beat, covers
        found.append(remote)
    return found


def _covers(store: RegistryStore, commit: str, state: str) -> bool:
    """Whether ``commit`` is ``state`` or a descendant of it (False if unknown here)."""
    if commit == state:
        return True
    try:
        return store.is_descendant(commit, state)
    except GitregError:
        return False  # a commit this site never fetched vouches for nothing


def check_freshness(store: RegistryStore, registry: RegistryConfig, policy: Policy,
                    state: str, context: VerifyContext) -> FreshnessReport:
    """Judge the freshness of ``state`` (whose policy is ``policy``) from every remote."""
    remotes = remote_heartbeats(store, registry, policy, state, context) \
        if policy.heartbeat is not None else []
    beats = [(r.newest, r.covers) for r in remotes if r.newest is not None]
    return FreshnessReport(state, judge_freshness(policy, beats, context), remotes)


def status_freshness(registry: RegistryConfig, repository: Any, trusted: str | None,
                     context: VerifyContext) -> dict[str, Any] | None:
    """For `site status`: each remote's newest valid heartbeat under the trusted policy.

    None when nothing is trusted yet or the trusted policy requires no
    heartbeat. Reads the local repository only (what the last sync fetched).
    """
    from pathlib import Path

    from gitreg.model.policy import parse_policy
    from gitreg.verify.layout import BOOTSTRAP_MAX_SIZE

    if trusted is None or not (Path(repository) / "HEAD").exists():
        return None
    try:
        store = RegistryStore.open(repository)
        entry = store.entry(store.commit(trusted).tree, "policy.json")
        if entry is None:
            return None
        policy = parse_policy(store.blob(entry.oid, BOOTSTRAP_MAX_SIZE)).signed
    except GitregError:
        return None
    if policy.heartbeat is None:
        return None
    return check_freshness(store, registry, policy, trusted, context).to_json(context)
