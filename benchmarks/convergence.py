"""Benchmark: replicas converging after 100 pushes, `sync-peers` after every push (issue 8).

In ONE run, with keys generated at run time in a temporary directory:

  1. builds a registry (``benchmarks/site_sync.py``'s ``build``: default 500
     lists of 1 to 5 images, real history, packed) and seeds 3 hook-guarded
     replicas from it (``gitreg server init``), each with the other two as
     peers (by path: git's local transport runs upload-pack, as for any
     remote);
  2. pushes in rounds of 1 to 3 concurrent pushes (seeded): each pushing
     endorser (3 working copies of one endorser key) makes one signed
     commit (a new version of a random list, 1 to 5 images) and pushes it
     with the ``git`` CLI to its own replica (distinct replicas in a round),
     so the pre-receive hook judges it. A push refused as non-fast-forward
     is fetched, verified, merged deterministically and pushed again, as
     ``gitreg publish --push`` does. What the commit builds on is
     ``--endorsers``: ``give-way`` (default, ``publish`` since the change
     of gitreg/publish/give_way.py) keeps each copy's own ``main`` between
     rounds (its last push, or its forward merge) and, when that ``main``
     is gitreg's merge, first fetches every replica and moves to the
     canonical state of those that hold it (``canonical_successor``, the
     function ``publish`` calls); ``keep-merge`` keeps the copy's ``main``
     but signs on the forward merge (``publish`` before that change);
     ``refetch`` replaces the copy by a random replica's ``main`` at the
     start of every round (so copies are often stale, and a forward merge
     is never built on). After every accepted push, ``gitreg
     server sync-peers`` runs on that replica (what the post-receive
     trigger of docs/replication.md does): the pushes of a round land
     first, then their replicas' ``sync-peers`` processes run at the same
     time, as triggers of concurrent pushes would;
  3. times each round from its first push until the replicas that received
     a push hold one ``main``; after the last round, runs ``sync-peers`` on
     every replica in turn (a timer round) until all three hold the same
     ``main``, and times that;
  4. records the distinct merge commits each round wrote, by the endorsers'
     retries and by the replicas' ``sync-peers`` (replicas that merge the
     same commits write the same merge, counted once), then walks the
     converged history: every merge commit reachable from the final head,
     which round wrote it (endorser or replica), merges of merges, and
     merges that add nothing (the merge's tree is one of its parents'
     trees, or it is a merge of merges whose tree another commit of the
     history already has). A merge written and then given up for the
     canonical merge of the same signed commits (docs/format.md,
     "Replication") is written but not in the history. An endorser's
     merge is counted like a replica's: it belongs to the round whose
     refused push wrote it, "by endorsers" if an endorser wrote it (a
     replica may write the same commit later), and it survived if the
     converged history reaches it.

Baseline in the same run: the median ``git push`` (hook included), to which
the median ``sync-peers`` is compared.

    .venv/bin/python benchmarks/convergence.py                # a few minutes
    .venv/bin/python benchmarks/convergence.py --pushes 30 --json out.json
    .venv/bin/python benchmarks/convergence.py --endorsers keep-merge    # the old publish

Exit status: 0 if the replicas converged, the converged history holds at
most one merge written by any one round (endorsers' and replicas' together)
and no merge of merges that adds nothing; 1 if not; 2 if a command failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import machine, say
from benchmarks.site_sync import ENV, GITREG, build, workplace

REPLICAS = 3
ENDORSERS = ("give-way", "keep-merge", "refetch")


@dataclass
class Tally:
    push_seconds: list[float] = field(default_factory=list)
    sync_seconds: list[float] = field(default_factory=list)
    refused: int = 0  # pushes refused as non-fast-forward, then merged and pushed again
    gave_way: int = 0  # copies whose main (a forward merge) moved before signing
    # Distinct merge commits written per round (0: the timer rounds after the
    # last push), by the endorsers' retries and by the replicas' sync-peers.
    endorser_merges: dict[int, set[str]] = field(default_factory=dict)
    replica_merges: dict[int, set[str]] = field(default_factory=dict)
    round_seconds: list[float] = field(default_factory=list)


def git(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *map(str, args)], capture_output=True, text=True,
                          check=check, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})


def main_of(repository: Path) -> str:
    return git("-C", repository, "rev-parse", "main").stdout.strip()


def sync_peers(replica: Path, tally: Tally) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([*GITREG, "server", "sync-peers", str(replica), "--json"],
                          capture_output=True, text=True, check=False, env=ENV)
    tally.sync_seconds.append(time.perf_counter() - started)
    if done.returncode != 0:
        raise RuntimeError(f"sync-peers {replica} exited {done.returncode}:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def fetch_main(repository: Path, replica: Path, ref: str) -> str:
    git("-C", repository, "fetch", "-q", "--no-tags", replica, f"+main:{ref}")
    return git("-C", repository, "rev-parse", ref).stdout.strip()


def give_way(repository: Path, replicas: Sequence[Path], local: str, *, who: int,
             registry: Any, cache: Any, tally: Tally) -> str:
    """What ``publish --push`` does to a ``main`` that is gitreg's merge: fetch every
    replica, move to the canonical state of those that hold it (if any)."""
    from gitreg.gitstore.store import RegistryStore
    from gitreg.publish.give_way import canonical_successor
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    heads = [fetch_main(repository, replica, f"refs/copies/{who}-replica-{n}")
             for n, replica in enumerate(replicas)]
    store = RegistryStore.open(repository)
    verifier = Verifier(store, cache, context=VerifyContext.for_site(datetime.now(UTC)),
                        pinned_policy=registry.trust_root)
    successor = canonical_successor(store, verifier, local, heads)
    if successor.target is None:
        return local
    tally.gave_way += 1
    return successor.target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lists", type=int, default=500, help="lists in the registry")
    parser.add_argument("--pushes", type=int, default=100, help="accepted pushes in all")
    parser.add_argument("--seed", type=int, default=8, help="seed of the schedule")
    parser.add_argument("--endorsers", choices=ENDORSERS, default="give-way",
                        help="what each endorser's commit builds on (see above)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from gitreg.gitstore.acceptance import build_merge, is_gitreg_merge
    from gitreg.gitstore.store import RegistryStore
    from gitreg.server.init import init_server
    from gitreg.server.peers import store_peers
    from gitreg.verify.cache import MemoryCache
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier
    from tests.registry_simulator import image_entry, new_id, ssh_signer

    rng = random.Random(args.seed)
    signer = ssh_signer("bench endorser")
    tally = Tally()
    with workplace("gitreg-convergence-") as (where, _images, shared):
        say(f"building a {args.lists}-list registry ...")
        registry = build(where, args.lists, signer, shared, args.seed)
        sim = registry.sim
        replicas = [where / f"replica-{n}.git" for n in range(REPLICAS)]
        for path in replicas:
            init_server(path, source=sim.path)
        for path in replicas:
            store_peers(path, [str(p) for p in replicas if p != path])
        cache = MemoryCache()
        copies = [sim.head] * REPLICAS  # the endorsers' working copies
        versions: dict[str, int] = {}
        pushes, round_no = 0, 0
        started = time.perf_counter()
        while pushes < args.pushes:
            round_no += 1
            count = min(rng.randint(1, REPLICAS), args.pushes - pushes)
            targets = rng.sample(range(REPLICAS), count)
            for who in range(count):
                if args.endorsers == "refetch":
                    # Each endorser starts the round from some replica: often a stale one.
                    copies[who] = fetch_main(sim.path, replicas[rng.randrange(REPLICAS)],
                                             f"refs/copies/{who}")
                elif args.endorsers == "give-way" and is_gitreg_merge(
                        RegistryStore.open(sim.path), copies[who]):
                    copies[who] = give_way(sim.path, replicas, copies[who], who=who,
                                           registry=registry, cache=cache, tally=tally)
            round_started = time.perf_counter()
            for who, target in enumerate(targets):
                store = RegistryStore.open(sim.path)
                list_id = rng.choice(registry.list_ids)
                versions[list_id] = max(versions.get(list_id, 2), 2) + 1
                entries = [{**image_entry(new_id(), title=f"image {n}"), **shared}
                           for n in range(rng.randint(1, 5))]
                sim.clock = max(sim.clock, datetime.now(UTC).replace(microsecond=0)
                                - timedelta(minutes=1))
                data = sim.list_version(list_id, version=str(versions[list_id]),
                                        images=entries)
                commit = sim.commit(sim.signed_list(list_id, data, signer), signer,
                                    parents=[copies[who]], move=False)
                t0 = time.perf_counter()
                done = git("-C", sim.path, "push", "-q", replicas[target],
                           f"{commit}:refs/heads/main", check=False)
                if done.returncode != 0:
                    tally.refused += 1
                    theirs = fetch_main(sim.path, replicas[target],
                                        f"refs/copies/fetched-{who}")
                    store = RegistryStore.open(sim.path)
                    verifier = Verifier(store, cache, context=VerifyContext.for_site(
                        datetime.now(UTC)), pinned_policy=registry.trust_root)
                    verifier.verify_range(store.merge_base((commit, theirs)), theirs)
                    commit, _ = build_merge(store, verifier, [commit, theirs])
                    tally.endorser_merges.setdefault(round_no, set()).add(commit)
                    done = git("-C", sim.path, "push", "-q", replicas[target],
                               f"{commit}:refs/heads/main", check=False)
                    if done.returncode != 0:
                        raise RuntimeError(f"push after merging refused: {done.stderr}")
                tally.push_seconds.append(time.perf_counter() - t0)
                copies[who] = commit
                pushes += 1
            # The post-receive triggers of the round's pushes, at the same time.
            with ThreadPoolExecutor(len(targets)) as pool:
                reports = list(pool.map(lambda t: sync_peers(replicas[t], tally), targets))
            tally.replica_merges[round_no] = {r["after"] for r in reports
                                              if r["merged"] and r["advanced"]}
            tally.round_seconds.append(time.perf_counter() - round_started)
            if len({main_of(replicas[t]) for t in targets}) != 1:
                raise RuntimeError(f"round {round_no}: the pushed replicas differ")
        pushed = time.perf_counter() - started
        # After the last push: timer rounds over every replica until one main.
        converge_started, timer_runs = time.perf_counter(), 0
        timer_merges = tally.replica_merges.setdefault(0, set())
        while len({main_of(r) for r in replicas}) > 1:
            for replica in replicas:
                report = sync_peers(replica, tally)
                if report["merged"] and report["advanced"]:
                    timer_merges.add(report["after"])
                timer_runs += 1
                if len({main_of(r) for r in replicas}) == 1:
                    break
            if timer_runs > 3 * REPLICAS:
                raise RuntimeError("the replicas do not converge")
        converge = time.perf_counter() - converge_started
        head = main_of(replicas[0])
        history = analyse(RegistryStore.open(replicas[0]), head, tally)

    per_round = [len(m) for m in tally.replica_merges.values()]
    written = {r: set(m) for r, m in tally.replica_merges.items()}
    for r, m in tally.endorser_merges.items():
        written.setdefault(r, set()).update(m)
    result = {
        "lists": args.lists, "pushes": pushes, "rounds": round_no,
        "endorsers": args.endorsers,
        "refused_pushes": tally.refused, "copies_that_gave_way": tally.gave_way,
        "seconds_100_pushes_with_sync": round(pushed, 1),
        "seconds_to_converge_after_last_push": round(converge, 2),
        "median_round_seconds": round(statistics.median(tally.round_seconds), 2),
        "timer_runs_to_converge": timer_runs,
        "median_push_ms": round(statistics.median(tally.push_seconds) * 1000),
        "median_sync_peers_ms": round(statistics.median(tally.sync_seconds) * 1000),
        "sync_over_push": round(statistics.median(tally.sync_seconds)
                                / statistics.median(tally.push_seconds), 2),
        "merges": {"written_by_replicas": sum(per_round),
                   "written_by_replicas_in_timer_rounds": len(timer_merges),
                   "written_by_endorsers": sum(map(len, tally.endorser_merges.values())),
                   "most_written_in_one_round": max(map(len, written.values()), default=0),
                   **history},
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    # The goal: at most one merge a round, never a merge of merges that adds
    # nothing. A merge of two signed commits of one list adds nothing to the newer
    # one's tree, but joins a signed commit no rebase may drop: reported, allowed.
    good = (history["merges_of_merges_adding_nothing"] == 0
            and history["most_in_history_in_one_round"] <= 1)
    return 0 if good else 1


def analyse(store: Any, head: str, tally: Tally) -> dict[str, Any]:
    """The merge commits in the history of ``head``: per round, and whether any adds nothing.

    A merge adds nothing if its tree is one of its parents' trees, or if it
    is a merge of merges whose tree another commit of the history already
    has (it recomputed an existing state).
    """
    trees: dict[str, list[str]] = {}
    merges: list[Any] = []
    seen, todo = set(), [head]
    while todo:
        oid = todo.pop()
        if oid in seen:
            continue
        seen.add(oid)
        commit = store.commit(oid)
        todo.extend(commit.parents)
        trees.setdefault(commit.tree, []).append(oid)
        if len(commit.parents) > 1:
            merges.append(commit)
    round_of = {m: r for source in (tally.endorser_merges, tally.replica_merges)
                for r, written in source.items() for m in written}
    by_endorsers = {m for written in tally.endorser_merges.values() for m in written}
    per_round: dict[int, int] = {}
    of_merges = nothing = of_merges_nothing = 0
    for commit in merges:
        per_round[round_of.get(commit.oid, -1)] = per_round.get(round_of.get(commit.oid, -1),
                                                                 0) + 1
        parents = [store.commit(p) for p in commit.parents]
        merge_of_merges = any(len(p.parents) > 1 for p in parents)
        of_merges += merge_of_merges
        adds_nothing = (any(p.tree == commit.tree for p in parents)
                        or (merge_of_merges and len(trees[commit.tree]) > 1))
        nothing += adds_nothing
        of_merges_nothing += merge_of_merges and adds_nothing
    return {"in_history": len(merges),
            "in_history_by_endorsers": sum(1 for m in merges if m.oid in by_endorsers),
            "in_history_not_written_in_this_run": per_round.get(-1, 0),
            "most_in_history_in_one_round": max(per_round.values(), default=0),
            "rounds_with_a_merge_in_history": sum(1 for r in per_round if r > 0),
            "merges_of_merges": of_merges, "adding_nothing": nothing,
            "merges_of_merges_adding_nothing": of_merges_nothing}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        say(str(exc))
        sys.exit(2)
