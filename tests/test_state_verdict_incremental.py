"""The state verdict carried forward equals the verdict of the whole state (seeded property).

A site judges each new state from the previous verdict and the lists that
changed (``judge_state_since``); ``judge_state`` walks every entry. Random
registries (lists signed by endorsers some of whom are expired, unsigned
lists, signature files), random changes (new signers, new lists, removed
lists) and random reference times: whenever the carried verdict answers it
equals the full one, and it declines exactly when the expired endorsers
changed. The previous verdict also goes through the site's list index, as
between two syncs.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from gitreg.model.policy import Policy
from gitreg.site.list_index import ListIndex
from gitreg.verify import layout
from gitreg.verify.source import Entry
from gitreg.verify.state import StateVerdict, judge_state, judge_state_since
from tests.seeds import seeded

T0 = datetime(2030, 1, 1, tzinfo=UTC)
KEYS = [f"key-{i}" for i in range(6)]


@dataclass(frozen=True)
class _Endorser:
    expires: datetime | None


class _Policy:
    """What the state rule reads of a policy: its expiry, version and endorsers."""

    def __init__(self, rng: random.Random) -> None:
        self.version = rng.randint(1, 9)
        self.expires = T0 + timedelta(days=rng.choice([-1, 30, 400]))
        choices = [None, T0 - timedelta(days=5), T0 + timedelta(days=2),
                   T0 + timedelta(days=20)]
        self.endorsers = {f"e{i}": _Endorser(rng.choice(choices)) for i in range(4)}
        self._owner = {k: rng.choice([*self.endorsers, None]) for k in KEYS}

    def endorser_of_key(self, key_id: str) -> str | None:
        return self._owner.get(key_id)


def _entries(state: dict[str, tuple[str, str | None]]) -> list[Entry]:
    """Tree entries of lists (blob, signer key): each list and its signature file."""
    out = [Entry("gitreg.json", "a" * 40, 0o100644), Entry("policy.json", "b" * 40, 0o100644)]
    for list_id, (blob, _) in sorted(state.items()):
        out.append(Entry(layout.list_path(list_id), blob, 0o100644))
        out.append(Entry(layout.sig_path(list_id), blob[::-1], 0o100644))
    return sorted(out, key=lambda e: e.path)


def _judge(commit: str, policy: Policy, at: datetime,
           state: dict[str, tuple[str, str | None]]) -> StateVerdict:
    return judge_state(commit, policy, at, entries=_entries(state),
                       list_signer=lambda list_id: state[list_id][1])


def _changed(rng: random.Random, state: dict[str, tuple[str, str | None]]
             ) -> tuple[dict[str, tuple[str, str | None]], list[Entry], list[str]]:
    new = dict(state)
    removed = rng.sample(sorted(new), k=min(len(new), rng.randint(0, 2)))
    for list_id in removed:
        del new[list_id]
    edited = rng.sample(sorted(new), k=min(len(new), rng.randint(0, 3)))
    added = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(rng.randint(0, 2))]
    for list_id in [*edited, *added]:
        new[list_id] = (f"{rng.getrandbits(160):040x}", rng.choice([*KEYS, None]))
    changed = [Entry(layout.list_path(u), new[u][0], 0o100644) for u in [*edited, *added]]
    return new, changed, removed


def test_the_carried_verdict_equals_the_full_one_on_random_changes(tmp_path: Path) -> None:
    seed, rng = seeded(20261202)
    carried = declined = 0
    for trial in range(150):
        policy = cast(Policy, _Policy(rng))
        state = {str(uuid.UUID(int=rng.getrandbits(128))):
                 (f"{rng.getrandbits(160):040x}", rng.choice([*KEYS, None]))
                 for _ in range(rng.randint(0, 12))}
        at = T0 + timedelta(hours=rng.randint(-48, 48))
        previous = _judge("c0", policy, at, state)
        with ListIndex(tmp_path / f"{trial}.lists.sqlite") as index:
            for step in range(1, 5):
                state, changed, removed = _changed(rng, state)
                # Mostly a later sync at a time with the same expired endorsers,
                # sometimes one where an endorser expired in between.
                at += timedelta(hours=rng.choice([0, 1, 6, 24 * 3]))
                full = _judge(f"c{step}", policy, at, state)
                index.keep_verdict(previous)
                kept = index.verdict()
                assert kept is not None
                since = judge_state_since(kept, f"c{step}", policy, at, changed=changed,
                                          removed=removed,
                                          list_signer=lambda list_id, s=state: s[list_id][1])
                if previous.expired_endorsers != full.expired_endorsers:
                    assert since is None, (seed, trial, step)
                    declined += 1
                else:
                    assert since == full, (seed, trial, step)
                    carried += 1
                previous = full
    assert carried > 300 and declined > 10, (carried, declined)


def test_a_state_with_no_expired_endorser_reads_no_entry() -> None:
    """Nothing in the tree can change such a verdict: the entries are not even read."""

    class Untouchable:
        def __iter__(self) -> object:
            raise AssertionError("the entries were read")

    rng = random.Random(3)
    policy = _Policy(rng)
    policy.endorsers = {name: _Endorser(None) for name in policy.endorsers}
    verdict = judge_state("c", cast(Policy, policy), T0, entries=cast(list[Entry],
                                                                      Untouchable()),
                          list_signer=lambda _: "key-0")
    assert verdict.inert == {} and verdict.expired_endorsers == frozenset()
