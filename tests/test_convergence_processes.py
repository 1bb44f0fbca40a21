"""Convergence with real processes (issue 8): seeded schedules over hooked replicas.

Each schedule has 3 hook-guarded bare replicas (``gitreg server init``; one
also served over smart HTTP on 127.0.0.1), 2 verifying mirrors served as
dumb HTTP by ``python3 -m http.server`` and 3 sites. Two endorsers make
signed commits from stale working copies (in-process, in one object store)
and push them with the ``git`` CLI, so the replicas' pre-receive hooks judge
every push; a push refused as non-fast-forward is fetched, verified, merged
deterministically and pushed again, as ``gitreg publish --push`` does. The
schedule runs real ``gitreg server sync-peers``, ``gitreg mirror sync`` and
``gitreg site sync`` processes, SIGKILLs some of them (the whole process
tree: after a random delay, or at a crash point of ``GITREG_TEST_CRASH_AT``),
takes a replica down for a while (its directory moves away) and tries a
forged push now and then.

Invariants at every step: a replica's ``main`` moves forward (or off a
merge to a state holding every signed commit the merge held) and verifies; a
forged push changes nothing; what a mirror advertises verifies; no site's
list goes back to a lower ``hv:version``; a site's trusted commit
verifies from the trust root and every file in its cache has the bytes its
list promises. After quiescence (every replica ran ``sync-peers``, every
mirror and site synced, nothing killed): one commit id everywhere and the
same cache at every site, holding exactly the images of that state that one
list carries (endorsers often put one shared image in the list they push,
so concurrent pushes make image conflicts, which no site holds).

The seed of a failing schedule is printed; ``GITREG_CONVERGENCE_PROCESS_SEED=N``
replays it and ``GITREG_CONVERGENCE_PROCESS_RUNS=N`` runs more (default 10);
``GITREG_CONVERGENCE_PROCESS_VERBOSE=1`` prints every schedule's steps (with ``-s``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitreg.gitstore.acceptance import build_merge, judge_head, signed_tips
from gitreg.gitstore.store import RegistryStore
from gitreg.model.policy import fingerprint
from gitreg.model.versions import compare_versions
from gitreg.server.http import GitHTTPServer
from gitreg.server.init import init_server
from gitreg.server.mirror import init_mirror
from gitreg.server.peers import store_peers
from gitreg.signing.interface import Signer
from gitreg.verify import layout
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from tests.fixtures.env import GITREG
from tests.fixtures.git_server import git
from tests.fixtures.image_server import ImageServer
from tests.registry_simulator import RegistrySimulator, image_entry, ssh_signer
from tests.site_registry import site_toml

REPLICAS, MIRRORS, SITES = 3, 2, 3
STEPS = 8
KILLED = -signal.SIGKILL
# Where a sync of each kind may be made to kill itself (gitreg/site/crash.py).
CRASH_POINTS = {"sync-peers": ["peers-merged"], "mirror": ["mirror-advanced"],
                "site": ["fetch", "download", "install", "retire", "state-commit"]}
LISTS = 3


@dataclass
class Origin:
    """What every schedule starts from: the registry, its endorsers, servers for images."""

    root: Path
    sim: RegistrySimulator
    endorsers: list[Signer]
    lists: list[str]
    base: str
    trust_root: str
    images: ImageServer
    www: Path
    www_url: str
    replica_template: Path
    bodies: dict[str, bytes] = field(default_factory=dict)  # image UUID -> bytes
    # An image endorsers put in any list, so that concurrent pushes put it in
    # two lists (image conflicts): UUID -> entry.
    shared: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def store(self) -> RegistryStore:
        return self.sim.store

    def image(self, rng: random.Random) -> dict[str, object]:
        """A new image entry whose bytes the image server serves."""
        image_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        body = hashlib.sha256(image_id.encode()).digest() * 8
        self.bodies[image_id] = body
        entry = image_entry(image_id)
        entry.update({"hv:uri": self.images.serve(f"/{image_id}.img", body),
                      "hv:size": len(body),
                      "sl:checksum:sha512": hashlib.sha512(body).hexdigest()})
        return entry

    def pooled(self, rng: random.Random, taken: set[str]) -> dict[str, object] | None:
        """The shared image, if no other list of the copy carries it."""
        if not self.shared:
            # Not from the schedule's generator: a replayed seed draws what it drew.
            entry = self.image(random.Random("shared image"))
            self.shared[str(entry["dc:identifier"])] = entry
        free = sorted(u for u in self.shared if u not in taken)
        return self.shared[rng.choice(free)] if free else None


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    root = tmp_path_factory.mktemp("convergence-processes")
    images = ImageServer().start()
    www = root / "www"
    www.mkdir()
    static = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
         "--directory", str(www)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert static.stdout is not None
        port = re.search(r"port (\d+)", static.stdout.readline())
        assert port is not None
        # Commits an hour in the past: the hook refuses commits from the future.
        sim = RegistrySimulator.create(root / "origin.git",
                                       start=datetime.now(UTC) - timedelta(hours=1))
        trust_root = fingerprint(sim.policy.canonical_bytes())
        endorsers: list[Signer] = [ssh_signer("bob"), ssh_signer("carol")]
        for name, signer in zip(("bob", "carol"), endorsers, strict=True):
            sim.add_endorser(name, [signer.public_key()], ["imagelists/*"])
        world = Origin(root, sim, endorsers, [], "", trust_root, images, www,
                       f"http://127.0.0.1:{port.group(1)}", root / "replica-template.git")
        rng = random.Random(0)
        world.lists = [str(uuid.UUID(int=n + 1, version=4)) for n in range(LISTS)]
        changes: dict[str, bytes | None] = {}
        for list_id in world.lists:
            data = sim.list_version(list_id, version="1", images=[world.image(rng)])
            changes.update(sim.signed_list(list_id, data, endorsers[0]))
        world.base = sim.commit(changes, endorsers[0], message="Three lists")
        init_server(world.replica_template, source=sim.path)
        yield world
    finally:
        static.terminate()
        static.wait(timeout=10)
        images.stop()


# --- processes ----------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything it started (git runs in sessions of its own).

    The tree is stopped first so that nothing forks past the kill: like an OOM
    kill of a whole unit, no orphaned ``git fetch`` goes on writing refs.
    """
    stopped: set[int] = set()
    todo = [pid]
    while todo:
        for each in todo:
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, signal.SIGSTOP)
            stopped.add(each)
        todo = [p for p in _descendants(pid) if p not in stopped]
    for each in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def gitreg(args: list[str | Path], log: Path, *, kill_after: float | None = None,
           crash_at: str | None = None) -> Run:
    """Run the real ``gitreg``; SIGKILL its tree after ``kill_after`` seconds if still running."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    if crash_at is not None:
        env["GITREG_TEST_CRASH_AT"] = crash_at
    out, err = log.with_suffix(".out"), log.with_suffix(".err")
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([*GITREG, *map(str, args)], stdout=stdout, stderr=stderr,
                                env=env, stdin=subprocess.DEVNULL)
        try:
            proc.wait(timeout=kill_after if kill_after is not None else 180)
        except subprocess.TimeoutExpired:
            if kill_after is None:
                kill_tree(proc.pid)
                proc.wait()
                raise
            kill_tree(proc.pid)
            proc.wait()
    return Run(proc.returncode, out.read_text(), err.read_text())


# --- one schedule ---------------------------------------------------------------


@dataclass
class Site:
    config: Path
    state: Path
    versions: dict[str, str] = field(default_factory=dict)  # what it held so far


class Schedule:
    def __init__(self, origin: Origin, seed: int, root: Path) -> None:
        self.origin = origin
        self.seed = seed
        self.rng = random.Random(seed)
        self.root = root
        self.log: list[str] = []
        self.runs = 0
        self.kill_note = ""  # how the last run was to be killed, for the log
        self.replicas = [root / f"replica-{n}.git" for n in range(REPLICAS)]
        for path in self.replicas:
            shutil.copytree(origin.replica_template, path, symlinks=True)
        for path in self.replicas:
            store_peers(path, [str(p) for p in self.replicas if p != path])
            # git CLI pushes by path run the hook; HTTP too, for the first one.
            git("-C", path, "config", "http.receivepack", "true")
        self.http = GitHTTPServer(self.replicas[0], "127.0.0.1", 0, log=None)
        self.http.start()
        replica_urls = [self.http.url, *map(str, self.replicas[1:])]
        self.mirrors = [origin.www / f"s{seed}" / f"mirror-{n}.git" for n in range(MIRRORS)]
        mirror_urls = []
        for n, path in enumerate(self.mirrors):
            init_mirror(path, self.rng.sample(replica_urls, 2), origin.trust_root)
            mirror_urls.append(f"{origin.www_url}/s{seed}/mirror-{n}.git")
        self.sites = []
        for n in range(SITES):
            remotes = [*self.rng.sample(replica_urls, 2), self.rng.choice(mirror_urls)]
            self.rng.shuffle(remotes)
            site = root / f"site-{n}"
            site.mkdir()
            config = site / "site.toml"
            config.write_text(site_toml(
                [{"name": "test", "remotes": remotes, "trust_root": origin.trust_root}],
                settings='download_workers = 2\nmin_rate = 1\ndeadline = "30s"\n'))
            self.sites.append(Site(config, site / "state"))
        self.copies = [origin.base, origin.base]  # the endorsers' working copies
        self.down: int | None = None
        self.checker = MemoryCache()

    def close(self) -> None:
        self.http.stop()
        if self.down is not None:
            self._up()

    # --- helpers ---------------------------------------------------------------

    def _verifier(self, store: RegistryStore | None = None) -> Verifier:
        # One cache for the schedule: verdicts are per object id, whichever store holds it.
        return Verifier(store or self.origin.store, self.checker,
                        context=VerifyContext.for_site(datetime.now(UTC)),
                        pinned_policy=self.origin.trust_root)

    def _gitreg(self, kind: str, args: list[str | Path], *, kill: bool = False) -> Run:
        self.runs += 1
        log = self.root / f"run-{self.runs:03d}-{kind}"
        self.kill_note = ""
        if not kill:
            return gitreg(args, log)
        if self.rng.random() < 0.5:
            point = self.rng.choice(CRASH_POINTS[kind])
            self.kill_note = f" (crash point {point})"
            return gitreg(args, log, crash_at=point)
        delay = self.rng.uniform(0.3, 2.0)
        self.kill_note = f" (SIGKILL after {delay:.2f}s)"
        return gitreg(args, log, kill_after=delay)

    def _up_replicas(self) -> list[int]:
        return [n for n in range(REPLICAS) if n != self.down]

    def _main(self, repository: Path) -> str | None:
        return RegistryStore.open(repository).ref("refs/heads/main")

    def _fetch(self, replica: int, ref: str) -> str:
        """Fetch a replica's main into the endorsers' object store (the git CLI)."""
        git("-C", self.origin.sim.path, "fetch", "--quiet", "--no-tags",
            str(self.replicas[replica]), f"+main:{ref}")
        head = self.origin.store.ref(ref)
        assert head is not None
        return head

    def _verified(self, repository: Path, commit: str, where: str) -> None:
        """``commit`` of ``repository`` verifies from the trust root."""
        self._verifier(RegistryStore.open(repository)).verify_range(None, commit)
        self.log.append(f"  {where} at {commit[:12]}: verified")

    def _versions(self, store: RegistryStore, commit: str | None) -> dict[str, str]:
        if commit is None:
            return {}
        found = {}
        for entry in store.entries(store.commit(commit).tree):
            if layout.is_list(entry.path):
                body = json.loads(store.blob(entry.oid, 1 << 20))["hv:imagelist"]
                found[layout.list_id_of(entry.path) or ""] = str(body["hv:version"])
        return found

    def _carriers(self, store: RegistryStore, commit: str) -> dict[str, list[str]]:
        """Image UUID -> the lists of ``commit`` that carry it."""
        found: dict[str, list[str]] = {}
        for entry in store.entries(store.commit(commit).tree):
            if layout.is_list(entry.path):
                body = json.loads(store.blob(entry.oid, 1 << 20))["hv:imagelist"]
                for image in body["hv:images"]:
                    found.setdefault(image["hv:image"]["dc:identifier"], []).append(
                        layout.list_id_of(entry.path) or "")
        return found

    def _images(self, store: RegistryStore, commit: str) -> set[str]:
        """The images a site takes: those one list carries (two is an image conflict)."""
        return {u for u, lists in self._carriers(store, commit).items() if len(lists) == 1}

    # --- actions ---------------------------------------------------------------

    def push(self) -> None:
        who = self.rng.randrange(2)
        target = self.rng.choice(self._up_replicas())
        sim, base = self.origin.sim, self.copies[who]
        list_id = self.rng.choice(self.origin.lists)
        version = self._versions(self.origin.store, base).get(list_id, "0")
        images = [self.origin.image(self.rng) for _ in range(self.rng.randint(1, 3))]
        if self.rng.random() < 0.6:
            # The hook refuses an image another list of the copy carries (image-unique).
            taken = {u for u, lists in self._carriers(self.origin.store, base).items()
                     if set(lists) - {list_id}}
            pooled = self.origin.pooled(self.rng, taken)
            if pooled is not None:
                images[0] = pooled
        data = sim.list_version(list_id, version=str(int(version) + 1), images=images)
        signer = self.origin.endorsers[who]
        commit = sim.commit(sim.signed_list(list_id, data, signer), signer, parents=[base],
                            move=False)
        self.log.append(f"endorser {who} pushes {list_id[-4:]} v{int(version) + 1} "
                        f"to replica {target}")
        done = git("-C", sim.path, "push", "--quiet", str(self.replicas[target]),
                   f"{commit}:refs/heads/main", check=False)
        if done.returncode != 0:
            # Refused as non-fast-forward: fetch, verify, merge, push again (publish --push).
            assert "fetch first" in done.stderr or "non-fast-forward" in done.stderr, \
                done.stderr
            theirs = self._fetch(target, f"refs/endorsers/{who}/fetched")
            verifier = self._verifier()
            verdict = judge_head(self.origin.store, verifier, commit, theirs)
            assert verdict.valid or verdict.verdict == "stale", verdict.detail
            if verdict.valid:
                commit, _ = build_merge(self.origin.store, verifier, [commit, theirs])
            self.log.append(f"  refused (the replica moved): merged, pushed {commit[:12]}")
            done = git("-C", sim.path, "push", "--quiet", str(self.replicas[target]),
                       f"{commit}:refs/heads/main", check=False)
            assert done.returncode == 0, done.stderr
        assert self._main(self.replicas[target]) == commit
        self.copies[who] = commit

    def refresh(self) -> None:
        who = self.rng.randrange(2)
        source = self.rng.choice(self._up_replicas())
        self.copies[who] = self._fetch(source, f"refs/endorsers/{who}/fetched")
        self.log.append(f"endorser {who} fetches replica {source}")

    def forge(self) -> None:
        """An unsigned list change pushed with the git CLI: the hook refuses it."""
        target = self.rng.choice(self._up_replicas())
        before = self._main(self.replicas[target])
        assert before is not None
        self._fetch(target, "refs/forger/fetched")
        sim = self.origin.sim
        list_id = self.rng.choice(self.origin.lists)
        forged = sim.commit({layout.list_path(list_id): b"{}\n"}, None, parents=[before],
                            move=False)
        done = git("-C", sim.path, "push", "--quiet", str(self.replicas[target]),
                   f"{forged}:refs/heads/main", check=False)
        assert done.returncode != 0, "the hook accepted a forged push"
        assert self._main(self.replicas[target]) == before
        self.log.append(f"forged push to replica {target} refused")

    def sync_peers(self, n: int, *, kill: bool = False) -> bool:
        before = self._main(self.replicas[n])
        assert before is not None
        run = self._gitreg("sync-peers", ["server", "sync-peers", self.replicas[n], "--json"],
                           kill=kill)
        self.log.append(f"replica {n} sync-peers{self.kill_note}: exit {run.returncode}")
        assert run.returncode in (0, 3, KILLED), run.stderr
        after = self._main(self.replicas[n])
        assert after is not None
        if after != before:
            # Forward, or off a merge (no signed content) to the canonical state:
            # every signed commit the old main held is still held.
            store = RegistryStore.open(self.replicas[n])
            assert store.is_descendant(after, before) or all(
                tip == after or store.is_descendant(after, tip)
                for tip in signed_tips(store, [before])), \
                f"replica {n}: main went from {before} to {after}, losing commits"
            self._verified(self.replicas[n], after, f"replica {n}")
        return after != before

    def sync_mirror(self, n: int, *, kill: bool = False) -> None:
        run = self._gitreg("mirror", ["mirror", "sync", self.mirrors[n], "--json"], kill=kill)
        self.log.append(f"mirror {n} sync{self.kill_note}: exit {run.returncode}")
        assert run.returncode in (0, 3, KILLED), run.stderr
        # What the mirror advertises to dumb-HTTP clients verifies.
        info = self.mirrors[n] / "info" / "refs"
        advertised = {line.split()[0] for line in info.read_text().splitlines() if line}
        for commit in sorted(advertised):
            self._verified(self.mirrors[n], commit, f"mirror {n}")

    def sync_site(self, n: int, *, kill: bool = False) -> None:
        site = self.sites[n]
        run = self._gitreg("site", ["site", "sync", "--config", site.config, "--json"],
                           kill=kill)
        self.log.append(f"site {n} sync{self.kill_note}: exit {run.returncode}")
        assert run.returncode in (0, KILLED), run.stderr
        self._check_site(n)
        trusted = self._trusted(site)
        if run.returncode == 0 and trusted is not None:
            store = RegistryStore.open(site.state / "repos" / "test.git")
            twice = sorted(u for u, lists in self._carriers(store, trusted).items()
                           if len(lists) > 1)
            if twice:
                self.log.append(f"  (image conflict at site {n}: {len(twice)})")
            held = [u for u in twice if (site.state / "cache" / u).exists()]
            assert not held, f"site {n} holds {held}, which two lists carry"

    def _trusted(self, site: Site) -> str | None:
        db = site.state / "state.sqlite"
        if not db.exists():
            return None
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as raw:
            try:
                row = raw.execute("SELECT trusted_commit FROM registry").fetchone()
            except sqlite3.OperationalError:  # killed before the schema was written
                return None
        return row[0] if row else None

    def _check_site(self, n: int) -> None:
        site = self.sites[n]
        trusted = self._trusted(site)
        if trusted is not None:
            store = RegistryStore.open(site.state / "repos" / "test.git")
            versions = self._versions(store, trusted)
            for list_id, version in site.versions.items():
                assert compare_versions(versions.get(list_id, "0"), version) >= 0, \
                    f"site {n}: list {list_id} went from {version} to {versions.get(list_id)}"
            site.versions = versions
            self._verified(site.state / "repos" / "test.git", trusted, f"site {n}")
        cache = site.state / "cache"
        for image in cache.iterdir() if cache.exists() else []:
            assert image.read_bytes() == self.origin.bodies[image.name], \
                f"site {n}: cache/{image.name} is not the promised image"

    def toggle_down(self) -> None:
        if self.down is not None:
            self._up()
            return
        self.down = self.rng.randrange(REPLICAS)
        self.replicas[self.down].rename(self.replicas[self.down].with_suffix(".down"))
        self.log.append(f"replica {self.down} goes down")

    def _up(self) -> None:
        assert self.down is not None
        self.replicas[self.down].with_suffix(".down").rename(self.replicas[self.down])
        self.log.append(f"replica {self.down} is back")
        self.down = None

    # --- the schedule ----------------------------------------------------------

    def run(self) -> None:
        for _ in range(STEPS):
            action = self.rng.random()
            kill = self.rng.random() < 0.3
            if action < 0.40:
                self.push()
            elif action < 0.45:
                self.refresh()
            elif action < 0.49:
                self.forge()
            elif action < 0.63:
                self.sync_peers(self.rng.choice(self._up_replicas()), kill=kill)
            elif action < 0.72:
                self.sync_mirror(self.rng.randrange(MIRRORS), kill=kill)
            elif action < 0.92:
                self.sync_site(self.rng.randrange(SITES), kill=kill)
            else:
                self.toggle_down()
        self.quiesce()

    def quiesce(self) -> None:
        self.log.append("-- quiescence")
        if self.down is not None:
            self._up()
        for _ in range(REPLICAS):
            for n in range(REPLICAS):
                self.sync_peers(n)
            if len({self._main(r) for r in self.replicas}) == 1:
                break
        heads = {self._main(r) for r in self.replicas}
        assert len(heads) == 1, f"replicas did not converge: {heads}"
        [head] = heads
        assert head is not None
        for n in range(MIRRORS):
            self.sync_mirror(n)
            assert self._main(self.mirrors[n]) == head, f"mirror {n} is not at {head}"
        caches = []
        for n, site in enumerate(self.sites):
            self.sync_site(n)
            assert self._trusted(site) == head, f"site {n} is not at {head}"
            cache = site.state / "cache"
            caches.append({p.name: p.read_bytes() for p in cache.iterdir()})
        assert all(c == caches[0] for c in caches), "the sites' caches differ"
        assert set(caches[0]) == self._images(RegistryStore.open(self.replicas[0]), head)


SEED = os.environ.get("GITREG_CONVERGENCE_PROCESS_SEED")
RUNS = 1 if SEED else int(os.environ.get("GITREG_CONVERGENCE_PROCESS_RUNS", "10"))


# One test per schedule, so that pytest-xdist spreads them over its workers;
# the seed is drawn inside (the collected ids must not depend on it).
@pytest.mark.slow
@pytest.mark.parametrize("run", range(RUNS))
def test_real_process_schedules_converge_through_sigkills(origin: Origin, run: int) -> None:
    seed = int(SEED) if SEED else random.SystemRandom().randrange(2**32)
    root = origin.root / f"schedule-{seed}"
    root.mkdir()
    schedule = Schedule(origin, seed, root)
    start = time.monotonic()
    try:
        schedule.run()
    except Exception as exc:  # any failure: say how to replay it
        raise AssertionError(
            f"schedule failed for seed {seed} (replay: "
            f"GITREG_CONVERGENCE_PROCESS_SEED={seed}); logs in {root}; steps:\n  "
            + "\n  ".join(schedule.log) + f"\n{exc}") from exc
    finally:
        schedule.close()
    killed = sum(line.endswith(f"exit {KILLED}") for line in schedule.log)
    print(f"seed {seed}: {schedule.runs} gitreg runs, {killed} killed, "
          f"{time.monotonic() - start:.1f}s")
    if os.environ.get("GITREG_CONVERGENCE_PROCESS_VERBOSE"):
        print("  " + "\n  ".join(schedule.log))
    shutil.rmtree(root, ignore_errors=True)
