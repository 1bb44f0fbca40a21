"""Convergence property (issue 8): seeded random schedules over replicas, mirrors and sites.

In-process: one object database holds every party's commits (the real trust
core, acceptance rule and deterministic merge; no subprocesses). Each
schedule has 3 replicas (a hook: verify, fast-forward only), 2 mirrors and 3
sites (provisional trusted state), 2 endorsers pushing from stale working
copies to random replicas or to every replica up (merging a replica that
moved, as ``publish --push`` does, and first giving way to the replicas' canonical state when
the copy's ``main`` is such a merge, as ``publish`` does), random
``sync-peers``, mirror and site syncs, and a replica down for a while.
Endorsers often take images from a small shared pool, so that concurrent
pushes put one image in two lists (image conflicts). Any sync or push may
be "killed" (the SIGKILL-equivalent of one process: a sync dies after it
wrote its merge commit but before it moved its state; an endorser dies
after the replica accepted the push but before its working copy recorded
it). Invariants at every step: no site's list goes back to a lower
``hv:version``; nothing unverified is trusted.
After quiescence every replica, mirror and site holds one commit id.
tests/test_convergence_processes.py runs schedules with real processes.

The seed of a failing schedule is printed; ``GITREG_CONVERGENCE_SEED=N``
replays it and ``GITREG_CONVERGENCE_RUNS=N`` runs more.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from gitreg.gitstore.acceptance import (
    Choice,
    build_merge,
    choose,
    holds,
    is_gitreg_merge,
    judge_head,
)
from gitreg.gitstore.store import RegistryStore
from gitreg.model.versions import compare_versions
from gitreg.publish.give_way import canonical_successor
from gitreg.signing.interface import Signer
from gitreg.verify import layout
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from tests.registry_simulator import RegistrySimulator, ssh_signer

REPLICAS, MIRRORS, SITES = 3, 2, 3
STEPS = 14
KILL = 0.15  # the chance that a sync or push is killed at its crash point
SHARED = [str(uuid.UUID(int=500 + n)) for n in range(2)]


@dataclass
class World:
    sim: RegistrySimulator
    endorsers: list[Signer]
    lists: list[str]
    base: str

    @property
    def store(self) -> RegistryStore:
        return self.sim.store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    sim = RegistrySimulator.create(tmp_path_factory.mktemp("convergence") / "r.git")
    endorsers = [ssh_signer("bob"), ssh_signer("carol")]
    for name, signer in zip(("bob", "carol"), endorsers, strict=True):
        sim.add_endorser(name, [signer.public_key()], ["imagelists/*"])
    lists = [str(uuid.UUID(int=n + 1)) for n in range(3)]
    return World(sim, endorsers, lists, sim.head)


@dataclass
class Party:
    head: str | None
    cache: MemoryCache = field(default_factory=MemoryCache)


class Schedule:
    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self.rng = random.Random(seed)
        self.replicas = [Party(world.base) for _ in range(REPLICAS)]
        self.mirrors = [Party(None) for _ in range(MIRRORS)]
        self.sites = [Party(None) for _ in range(SITES)]
        self.copies = [world.base, world.base]  # the endorsers' working copies
        self.endorser_caches = [MemoryCache(), MemoryCache()]
        self.down: int | None = None
        self.log: list[str] = []
        self.quiet = False  # quiescence: nothing is killed any more

    def verifier(self, party: Party, *, push: bool = False) -> Verifier:
        moment = self.world.sim.clock
        context = VerifyContext.for_push(moment) if push else VerifyContext.for_site(moment)
        return Verifier(self.world.store, party.cache, context=context)

    def up(self) -> list[int]:
        return [n for n in range(REPLICAS) if n != self.down]

    # --- actions ------------------------------------------------------------

    def push(self) -> None:
        who = self.rng.randrange(2)
        target = self.rng.choice(self.up())
        commit = self._sign(who)
        if self.rng.random() < 0.3:
            self._push_everywhere(who, commit)
            return
        replica = self.replicas[target]
        assert replica.head is not None
        if not self.world.store.is_descendant(commit, replica.head):
            # Refused as non-fast-forward: fetch, verify and merge, as publish --push does.
            mine = Party(commit, replica.cache)
            verdict = judge_head(self.world.store, self.verifier(mine), commit, replica.head)
            assert verdict.valid, verdict.detail
            commit, _ = build_merge(self.world.store, self.verifier(mine),
                                    [commit, replica.head])
        self.verifier(replica, push=True).verify_range(replica.head, commit)  # the hook
        replica.head = commit
        if self.rng.random() < KILL:
            self.log.append(f"endorser {who} pushes to replica {target}, killed after it")
            return
        self.copies[who] = commit
        self.log.append(f"endorser {who} pushes to replica {target}")

    def _sign(self, who: int) -> str:
        """Endorser ``who`` signs a new version of a random list on its copy."""
        base = self._give_way(who)
        list_id = self.rng.choice(self.world.lists)
        version = self._version(base, list_id)
        sim = self.world.sim
        data = sim.list_version(list_id, version=str(int(version) + 1 if version else 1),
                                images=[self._image(base, list_id)])
        return sim.commit(sim.signed_list(list_id, data, self.world.endorsers[who]),
                          self.world.endorsers[who], parents=[base], move=False)

    def _push_everywhere(self, who: int, commit: str) -> None:
        """``publish --push`` to every replica up (gitreg/publish/replicas.py
        ``push_main``): a replica that moved is merged and every replica pushed again,
        but one still serving a merge the copy holds is left pending once another
        replica took the push."""
        store, copy = self.world.store, commit
        mine = Party(copy, self.endorser_caches[who])
        for _ in range(REPLICAS + 1):
            start, refused, taken = copy, [], False
            for n in self.up():
                replica = self.replicas[n]
                assert replica.head is not None
                if store.is_descendant(copy, replica.head):
                    if copy != replica.head:
                        self.verifier(replica, push=True).verify_range(replica.head, copy)
                        replica.head = copy
                    taken = True
                else:
                    refused.append(n)
            for n in refused:
                head = self.replicas[n].head
                assert head is not None
                verdict = judge_head(store, self.verifier(mine), copy, head)
                if verdict.verdict == "stale":
                    continue  # an earlier merge of this push holds it: pushed next round
                assert verdict.valid, verdict.detail
                if taken and holds(store, copy, head):
                    # Pending (behind): it gives way at its next sync-peers.
                    self.log.append(f"  (replica {n} left pending)")
                    continue
                target = choose(store, self.verifier(mine), copy, [head],
                                covered=False).target
                if target is not None:
                    copy = target
            if copy == start:
                break
        if self.rng.random() < KILL:
            self.log.append(f"endorser {who} pushes everywhere, killed after it")
            return
        self.copies[who] = copy
        self.log.append(f"endorser {who} pushes everywhere")

    def _image(self, base: str, list_id: str) -> str:
        """A new image, or one of a small shared pool: concurrent pushes then put one
        image UUID in two lists (an image conflict), as long as the copy's own tree
        does not already hold it in another list (the hook's ``image-unique``)."""
        store = self.world.store
        taken = set()
        for other in self.world.lists:
            entry = store.entry(store.commit(base).tree, layout.list_path(other))
            if other != list_id and entry is not None:
                taken.update(u for u in SHARED if u in store.blob(entry.oid, 1 << 20).decode())
        free = [u for u in SHARED if u not in taken]
        if free and self.rng.random() < 0.3:
            return self.rng.choice(free)
        return str(uuid.UUID(int=self.rng.getrandbits(128)))

    def _give_way(self, who: int) -> str:
        """``publish`` first moves a copy on gitreg's merge to the canonical state the
        replicas (those up) hold, if any holds it; nothing signed goes back."""
        copy = self.copies[who]
        if not is_gitreg_merge(self.world.store, copy):
            return copy
        heads = [h for h in (self.replicas[p].head for p in self.up()) if h is not None]
        verifier = self.verifier(Party(copy, self.endorser_caches[who]))
        target = canonical_successor(self.world.store, verifier, copy, heads).target
        if target is None:
            return copy
        before, after = self._versions(copy), self._versions(target)
        for list_id, version in before.items():
            assert compare_versions(after.get(list_id, ""), version) >= 0, \
                f"endorser {who}: giving way took {list_id} from {version} back"
        self.copies[who] = target
        self.log.append(f"endorser {who} gives way")
        return target

    def refresh(self) -> None:
        who = self.rng.randrange(2)
        source = self.replicas[self.rng.choice(self.up())]
        assert source.head is not None
        self.copies[who] = source.head
        self.log.append(f"endorser {who} fetches")

    def sync_peers(self, n: int) -> bool:
        replica = self.replicas[n]
        heads = [self.replicas[p].head for p in self.up() if p != n]
        moved = self._sync(replica, [h for h in heads if h], provisional=False)
        if moved:
            assert replica.head is not None
        self.log.append(f"replica {n} sync-peers")
        return moved

    def sync_mirror(self, n: int) -> None:
        heads = [self.replicas[p].head for p in self.up()]
        self._sync(self.mirrors[n], [h for h in heads if h], provisional=True)
        self.log.append(f"mirror {n} sync")

    def sync_site(self, n: int) -> None:
        site = self.sites[n]
        remotes = [self.replicas[p].head for p in self.up()] + [m.head for m in self.mirrors]
        before = self._versions(site.head)
        self._sync(site, [h for h in remotes if h], provisional=True)
        after = self._versions(site.head)
        for list_id, version in before.items():
            assert compare_versions(after.get(list_id, ""), version) >= 0, \
                f"site {n}: {list_id} went from {version} to {after.get(list_id)}"
        self.log.append(f"site {n} sync")

    def _sync(self, party: Party, heads: list[str], *, provisional: bool) -> bool:
        verifier = self.verifier(party)
        valid = []
        for head in dict.fromkeys(heads):
            verdict = judge_head(self.world.store, verifier, party.head, head)
            if verdict.valid or verdict.verdict == "stale":
                valid.append(head)
        choice = choose(self.world.store, verifier, party.head, valid)
        if not self.quiet and self.rng.random() < KILL:
            # Killed after writing the merge commit, before moving: nothing moves.
            self.log.append("  (killed before moving its state)")
            return False
        moved = choice.target != party.head
        party.head = choice.target
        return moved

    def _version(self, commit: str, list_id: str) -> str | None:
        return self._versions(commit).get(list_id)

    def _versions(self, commit: str | None) -> dict[str, str]:
        if commit is None:
            return {}
        found = {}
        for path, blob in _tree(self.world.store, commit).items():
            if layout.is_list(path):
                data = self.world.store.blob(blob, 1 << 20)
                marker = b'"hv:version": "'
                start = data.rindex(marker) + len(marker)
                found[layout.list_id_of(path) or ""] = data[start:data.index(b'"', start)].decode()
        return found

    # --- the schedule -------------------------------------------------------

    def run(self) -> None:
        for _ in range(STEPS):
            action = self.rng.random()
            if action < 0.35:
                self.push()
            elif action < 0.42:
                self.refresh()
            elif action < 0.57:
                self.sync_peers(self.rng.choice(self.up()))
            elif action < 0.67:
                self.sync_mirror(self.rng.randrange(MIRRORS))
            elif action < 0.92:
                self.sync_site(self.rng.randrange(SITES))
            else:
                self.down = None if self.down is not None else self.rng.randrange(REPLICAS)
                self.log.append(f"replica down: {self.down}")
        self.quiesce()

    def quiesce(self) -> None:
        self.down, self.quiet = None, True
        for _ in range(REPLICAS + 2):
            if not any([self.sync_peers(n) for n in range(REPLICAS)]):
                break
        for n in range(MIRRORS):
            self.sync_mirror(n)
        for n in range(SITES):
            self.sync_site(n)
        heads = {p.head for p in (*self.replicas, *self.mirrors, *self.sites)}
        assert len(heads) == 1, f"no convergence: {heads}"
        # Nothing unverified: the common state verifies from the root with a fresh cache.
        [head] = heads
        assert head is not None
        Verifier(self.world.store, MemoryCache(),
                 context=VerifyContext.for_site(self.world.sim.clock)).verify_range(None, head)


def _tree(store: RegistryStore, commit: str) -> dict[str, str]:
    return {e.path: e.oid for e in store.entries(store.commit(commit).tree)}


def _seeds() -> list[int]:
    if "GITREG_CONVERGENCE_SEED" in os.environ:
        return [int(os.environ["GITREG_CONVERGENCE_SEED"])]
    master = random.Random()
    return [master.randrange(2**32)
            for _ in range(int(os.environ.get("GITREG_CONVERGENCE_RUNS", "200")))]


def test_random_schedules_converge_without_rollback(world: World) -> None:
    start = world.sim.clock
    for seed in _seeds():
        world.sim.clock = start
        schedule = Schedule(world, seed)
        try:
            schedule.run()
        except AssertionError as exc:
            raise AssertionError(
                f"schedule failed for seed {seed} (replay: GITREG_CONVERGENCE_SEED={seed}); "
                f"steps: {'; '.join(schedule.log)}: {exc}") from exc


def test_replicas_that_merged_different_views_never_merge_their_merges(world: World) -> None:
    # a, b, c pushed to three replicas from one base; replica C merged all three,
    # replica A saw only b (C was down): two merges of the same pushes.
    sim, store = world.sim, world.store
    a, b, c = (sim.commit(sim.signed_list(list_id, sim.list_version(
        list_id, version="7", images=[str(uuid.UUID(int=90 + n))]), world.endorsers[0]),
        world.endorsers[0], parents=[world.base], move=False)
        for n, list_id in enumerate(world.lists))
    verifier = Verifier(store, MemoryCache(), context=VerifyContext.for_site(sim.clock))
    for head in (a, b, c):
        verifier.verify_range(world.base, head)
    # Replicas: main is public (provisional=False), covered merges give way.
    on_c = choose(store, verifier, c, [a, b])
    on_a = choose(store, verifier, a, [b])
    assert on_c.merged and on_a.merged and on_c.target != on_a.target
    assert on_c.target is not None and on_a.target is not None

    # Replica B sees both merges: it takes the one holding everything, no new merge.
    on_b = choose(store, verifier, b, [on_a.target, on_c.target])
    assert (on_b.target, on_b.merged) == (on_c.target, False)
    # Replica A's own merge gives way too: C's merge holds all its parents.
    again = choose(store, verifier, on_a.target, [on_c.target, b])
    assert (again.target, again.merged) == (on_c.target, False)
    # An endorser pushing to replica A (forward-only) must still merge them: the
    # replica's main has to be an ancestor of what is pushed.
    forward = choose(store, verifier, a, [on_a.target, on_c.target], covered=False)
    assert forward.merged and forward.parents == tuple(sorted([on_a.target, on_c.target]))


def test_an_endorsers_merge_gives_way_so_a_round_makes_one_merge(world: World) -> None:
    # Replica A moved to r; endorser 0, from a stale copy (the base), pushes c0 to A
    # and merges A's main (m0, forward-only); endorser 1 pushes c1 on r to B.
    sim, store = world.sim, world.store

    def signed(n: int, parent: str) -> str:
        list_id = world.lists[n]
        data = sim.list_version(list_id, version="8", images=[str(uuid.UUID(int=70 + n))])
        return sim.commit(sim.signed_list(list_id, data, world.endorsers[n % 2]),
                          world.endorsers[n % 2], parents=[parent], move=False)

    r = signed(0, world.base)
    c0, c1 = signed(1, world.base), signed(2, r)
    verifier = Verifier(store, MemoryCache(), context=VerifyContext.for_site(sim.clock))
    for head in (r, c0, c1):
        verifier.verify_range(world.base, head)
    m0 = choose(store, verifier, c0, [r], covered=False).target
    assert m0 is not None and store.commit(m0).parents == tuple(sorted([c0, r]))

    # Both replicas end on the one merge of the two signed commits, not merge(m0, c1).
    on_a = choose(store, verifier, m0, [c1, r])
    on_b = choose(store, verifier, c1, [m0, r])
    assert on_a.merged and on_a.target == on_b.target and on_a.parents == tuple(sorted([c0, c1]))
    x = on_a.target
    assert x is not None and not store.is_descendant(x, m0)
    # Every list at its newest signed content: nothing of m0 or c1 is lost.
    tree = _tree(store, x)
    for commit, n in ((r, 0), (c0, 1), (c1, 2)):
        path = next(p for p in _tree(store, commit) if world.lists[n] in p)
        assert tree[path] == _tree(store, commit)[path]
    # Converged: nothing moves and no merge is built again.
    assert choose(store, verifier, x, [x, r]) == \
        Choice(target=x, maximal=(x,))
    # The old outcome, a merge of the endorser's merge, gives way to x too (one
    # party alone on it builds x again); a site that held m0 moves to x.
    n = choose(store, verifier, c1, [m0], covered=False).target
    assert n is not None and n != x
    assert choose(store, verifier, n, [x]).target == x
    assert choose(store, verifier, n, []).target == x
    assert choose(store, verifier, m0, [x]).target == x


def test_clock_is_the_simulators(world: World) -> None:
    # The schedules judge expiry at the simulator's clock, never the machine's.
    assert isinstance(world.sim.clock, datetime) and Path(world.sim.path).exists()
