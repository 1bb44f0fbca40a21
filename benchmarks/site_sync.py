"""Benchmark: `gitreg site sync` after one change and with nothing new (issues 4, 9).

In ONE run, with keys generated at run time in a temporary directory:

  1. builds three registries with ``tests/registry_simulator.py`` (pygit2
     objects, lists signed in-process with SSHSigner): a small one (default
     100 lists), a large one (default 10,000) and one of 1,000 lists for the
     no-op target. Every list carries 1 to 5 images (seeded, 3 on average;
     1 KiB, the same file under a UUID of its own, which the sites download
     and then hold), and each registry has real history: the lists arrive
     in ten commits, then a tenth of them get a second version in two more.
     Each is packed (``git repack -a -d``, as a server's gc leaves it) and
     served as a real Git repository by its local path (git's local
     transport: git fetch runs upload-pack and pack-objects, as for any
     remote);
  2. writes site configs (one remote, trust root pinned by the policy
     fingerprint, no handler): for the small and the large registry one
     site subscribed to ONE list (the list that changes) and one subscribed
     to ALL lists (it holds every image: about 300 and 30,000); for the
     no-op registry one subscribed to all lists. An initial ``gitreg site
     sync`` of each (not timed) verifies all history and downloads;
  3. target 1, one list changed: before each timed round, publishes a new
     signed version of one list (always the same) in which one image is
     replaced by a new 1 KiB file (served by an HTTP server on 127.0.0.1),
     so that each sync fetches one commit, verifies it, downloads one image,
     retires the one it replaces and refreshes the list's other images.
     Times the whole ``gitreg site sync --config F`` process (the real CLI
     in a subprocess), small and large interleaved so both see the same
     load; for each subscription case the ratio of the medians must be <= 1.5;
  4. target 2, nothing new: times ``gitreg site sync`` on the 1,000-list
     site with no change, interleaved with a bare ``python -c "import
     pygit2"`` (same interpreter); the ratio of the medians must be <= 3.

All processes run with byte-code caches (in the temporary directory), as an
installed package has them. Wall and CPU time (with child processes) are
reported; the verdicts are on wall time.

    .venv/bin/python benchmarks/site_sync.py                  # about 10 minutes
    .venv/bin/python benchmarks/site_sync.py --repeat 21 --json site.json
    .venv/bin/python benchmarks/site_sync.py --profile one    # cProfile of one sync

Exit status: 0 if both targets are met, 1 if one is not, 2 if a sync failed
or a site did not end up holding exactly the images it should.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitreg.signing.ssh import SSHSigner
    from tests.registry_simulator import RegistrySimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import machine, run_timed, say

CHANGE_TARGET = 1.5
NOOP_TARGET = 3.0
COMMITS = 10  # the lists of a registry arrive in this many commits
GITREG = [sys.executable, "-m", "gitreg"]
# Every timed process runs with byte-code caches, as an installed package
# does (pip compiles at install time), in a directory of this run: the
# baseline's pygit2 has its caches, gitreg's must not be compiled per run.
ENV: dict[str, str] = {}


@dataclass
class Samples:
    """Wall and CPU time (the process and its children: git, handlers) of runs."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, measured: tuple[float, float]) -> None:
        self.wall.append(measured[0])
        self.cpu.append(measured[1])


@dataclass
class Registry:
    """One registry (the simulator, its endorser's side) and what it holds."""

    lists: int
    sim: RegistrySimulator
    trust_root: str
    list_ids: list[str]
    # list uuid -> its current image bodies
    images: dict[str, list[dict[str, object]]]
    build_seconds: float
    changes: int = 0

    @property
    def changing(self) -> str:
        """The list that every change publishes anew."""
        return self.list_ids[len(self.list_ids) // 2]

    @property
    def image_count(self) -> int:
        return sum(len(v) for v in self.images.values())


@dataclass
class Site:
    """A site following one registry, subscribed to one list or to all."""

    registry: Registry
    subscribed: str  # "one" or "all"
    config: Path
    initial_sync_seconds: float = 0.0
    times: Samples = field(default_factory=Samples)

    @property
    def label(self) -> str:
        held = (self.registry.image_count if self.subscribed == "all"
                else len(self.registry.images[self.registry.changing]))
        lists = "all lists" if self.subscribed == "all" else "one list"
        return f"{self.registry.lists:,} lists, subscribed to {lists} ({held:,} images)"

    def expected(self) -> list[str]:
        lists = (self.registry.images.values() if self.subscribed == "all"
                 else [self.registry.images[self.registry.changing]])
        return sorted(str(i["dc:identifier"]) for images in lists for i in images)


class ImageServer:
    """A plain HTTP server on 127.0.0.1 for the images the benchmark publishes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, name: str, body: bytes) -> str:
        (self.root / name).write_bytes(body)
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def workplace(prefix: str) -> Iterator[tuple[Path, ImageServer, dict[str, object]]]:
    """A temporary directory, the environment of the timed processes, and an image
    server with the one image every list carries: (directory, server, image fields)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        where = Path(tmp)
        ENV.update({k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
        ENV["PYTHONPYCACHEPREFIX"] = str(where / "pycache")
        import_pygit2()  # fills the caches; the initial syncs do the same for gitreg
        (where / "images").mkdir()
        images = ImageServer(where / "images")
        try:
            body = b"one image shared by every list\n" * 32
            yield where, images, {"hv:uri": images.serve("shared.img", body),
                                  "hv:size": len(body),
                                  "sl:checksum:sha512": hashlib.sha512(body).hexdigest()}
        finally:
            images.close()


def build(where: Path, lists: int, signer: SSHSigner, shared: dict[str, object],
          seed: int) -> Registry:
    """A registry of ``lists`` lists of 1 to 5 images each, with some history.

    Every image has ``shared``'s file (the same bytes and URL under a UUID
    of its own).
    """
    import random

    from gitreg.model.policy import Limits, fingerprint
    from tests.registry_simulator import RegistrySimulator, image_entry, new_id, ssh_signer

    rng = random.Random(seed)
    started = time.perf_counter()
    sim = RegistrySimulator.create(
        where / f"registry-{lists}.git", roots=[ssh_signer("root")],
        start=datetime.now(UTC) - timedelta(hours=1),
        limits=Limits(max_file_size=1 << 20, max_list_lifetime_days=365))
    trust_root = fingerprint(sim.policy.canonical_bytes())
    sim.add_endorser("bench", [signer.public_key()], ["imagelists/*"])
    list_ids = [new_id(f"{lists}/list/{i}") for i in range(lists)]

    def entries(list_id: str, version: int) -> list[dict[str, object]]:
        return [{**image_entry(new_id(f"{list_id}/{version}/{n}"), title=f"image {n}",
                               version=str(version)), **shared}
                for n in range(rng.randint(1, 5))]

    images = {list_id: entries(list_id, 1) for list_id in list_ids}
    batch = max(1, -(-lists // COMMITS))
    for start in range(0, lists, batch):
        sim.publish(signer, {i: images[i] for i in list_ids[start:start + batch]})  # type: ignore[misc]
    # History: a tenth of the lists get a second version, in two commits.
    updated = rng.sample(list_ids, max(2, lists // 10))
    for half in (updated[::2], updated[1::2]):
        for list_id in half:
            images[list_id] = entries(list_id, 2)
        sim.publish(signer, {i: images[i] for i in half})  # type: ignore[misc]
    # The simulator writes loose objects; a served repository is packed (its
    # gc packs what pushes bring), and git serves a pack far faster.
    subprocess.run(["git", "-C", str(sim.path), "repack", "-a", "-d", "-q"], check=True)
    return Registry(lists, sim, trust_root, list_ids, images,
                    time.perf_counter() - started)


def site(where: Path, registry: Registry, subscribed: str) -> Site:
    """A site config following ``registry``, subscribed to one list or to all."""
    directory = where / f"site-{registry.lists}-{subscribed}"
    directory.mkdir()
    config = directory / "site.toml"
    lists = '"*"' if subscribed == "all" else json.dumps(registry.changing)
    config.write_text(f"""[site]
state_dir = "state"
download_workers = 2

[[registry]]
name = "bench"
remotes = [{json.dumps(str(registry.sim.path))}]
trust_root = "{registry.trust_root}"

[[subscription]]
registry = "bench"
imagelists = [{lists}]
""", encoding="utf-8")
    return Site(registry, subscribed, config)


def sync(site: Site) -> tuple[float, float]:
    """One `gitreg site sync` process; its wall and CPU time in seconds."""
    run = run_timed([*GITREG, "site", "sync", "--config", str(site.config)], env=ENV)
    if run.done.returncode != 0:
        raise RuntimeError(f"gitreg site sync ({site.label}) exited "
                           f"{run.done.returncode}:\n{run.done.stdout}{run.done.stderr}")
    return run.wall, run.cpu


def publish_change(registry: Registry, signer: SSHSigner, images: ImageServer) -> None:
    """A new signed version of one list in which one image is a new 1 KiB file."""
    from tests.registry_simulator import image_entry, new_id

    sim = registry.sim
    list_id = registry.changing
    registry.changes += 1
    image_id = new_id()
    body = os.urandom(1024)
    entry = {**image_entry(image_id, title=f"bench image {registry.changes}"),
             "hv:uri": images.serve(f"{image_id}.img", body), "hv:size": len(body),
             "sl:checksum:sha512": hashlib.sha512(body).hexdigest()}
    current = registry.images[list_id]
    current[registry.changes % len(current)] = entry
    # The simulator's clock runs a second per commit; keep it near real time.
    sim.clock = max(sim.clock, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1))
    sim.publish(signer, {list_id: list(current)})  # type: ignore[arg-type]


def cached_images(site: Site) -> list[str]:
    done = subprocess.run([*GITREG, "site", "images", "--config", str(site.config), "--json"],
                          capture_output=True, text=True, check=True, env=ENV)
    return sorted(row["uuid"] for row in json.loads(done.stdout))  # only cached images


def import_pygit2() -> tuple[float, float]:
    run = run_timed([sys.executable, "-c", "import pygit2"], env=ENV)
    run.done.check_returncode()
    return run.wall, run.cpu


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def profile(site: Site, where: Path) -> None:
    """cProfile of one sync after one change, its top entries on stderr."""
    import pstats

    out = where / "sync.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "gitreg",
                           "site", "sync", "--config", str(site.config)],
                          capture_output=True, text=True, env=ENV, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"profiled sync exited {done.returncode}:\n{done.stderr}")
    stats = pstats.Stats(str(out), stream=sys.stderr)
    say(f"--- cProfile: one change, {site.label}")
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(20)
    # gitreg's own functions, and who runs the SQL: what grows with the registry.
    stats.sort_stats("cumulative").print_stats(r"gitreg/(site|verify|gitstore|adapters)", 40)
    stats.print_callers(r"method 'execute'|method 'executemany'|method 'fetchall'")
    if os.environ.get("GITREG_BENCH_PROFILE_OUT"):
        import shutil

        shutil.copyfile(out, os.environ["GITREG_BENCH_PROFILE_OUT"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=100, help="lists in the small registry")
    parser.add_argument("--large", type=int, default=10_000, help="lists in the large one")
    parser.add_argument("--noop", type=int, default=1_000,
                        help="lists of the registry synced with nothing new")
    parser.add_argument("--repeat", type=int, default=11, help="timed runs of each kind")
    parser.add_argument("--seed", type=int, default=9, help="seed of the image counts")
    parser.add_argument("--profile", choices=["one", "all"],
                        help="profile one sync of the large site after one change and stop")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from tests.registry_simulator import ssh_signer

    signer = ssh_signer("bench endorser")
    with workplace("gitreg-site-bench-") as (where, images, shared):
        try:
            sizes = [args.small, args.large] if args.profile is None else [args.large]
            registries: list[Registry] = []
            sites: list[Site] = []
            for n, lists in enumerate(sizes):
                say(f"building a {lists}-list registry ...")
                registry = build(where, lists, signer, shared, args.seed + n)
                registries.append(registry)
                say(f"  built in {registry.build_seconds:.1f} s "
                    f"({registry.image_count} images)")
                for subscribed in ("one", "all"):
                    if args.profile not in (None, subscribed):
                        continue
                    made = site(where, registry, subscribed)
                    made.initial_sync_seconds = sync(made)[0]
                    say(f"  initial sync of {made.label}: {made.initial_sync_seconds:.1f} s")
                    sites.append(made)
            if args.profile is not None:
                for _ in range(2):  # warm the page cache and the state db
                    publish_change(registries[0], signer, images)
                    sync(sites[0])
                publish_change(registries[0], signer, images)
                profile(sites[0], where)
                return 0
            say("target 1: one list changed, small and large interleaved ...")
            rounds = [(r, [s for s in sites if s.registry is r]) for r in registries]
            for registry, following in rounds:  # warm the page cache and the state db
                publish_change(registry, signer, images)
                for s in following:
                    sync(s)
            for _ in range(args.repeat):
                for registry, following in rounds:
                    publish_change(registry, signer, images)
                    for s in following:
                        s.times.add(sync(s))
            for s in sites:
                if cached_images(s) != s.expected():
                    say(f"the site of {s.label} does not hold exactly the images it should")
                    return 2
            say(f"building a {args.noop}-list registry for target 2 ...")
            registry = build(where, args.noop, signer, shared, args.seed + 2)
            noop = site(where, registry, "all")
            noop.initial_sync_seconds = sync(noop)[0]
            say(f"  initial sync of {noop.label}: {noop.initial_sync_seconds:.1f} s")
            say("target 2: nothing new, interleaved with `python -c 'import pygit2'` ...")
            baseline = Samples()
            sync(noop)
            for _ in range(args.repeat):
                noop.times.add(sync(noop))
                baseline.add(import_pygit2())
            if cached_images(noop) != noop.expected():
                say("the site synced with nothing new does not hold exactly its images")
                return 2
        except RuntimeError as exc:
            say(str(exc))
            return 2

    median = statistics.median
    small_one, small_all, large_one, large_all = sites
    change = {case: (median(large.times.wall) / median(small.times.wall),
                     median(large.times.cpu) / median(small.times.cpu))
              for case, small, large in (("one", small_one, large_one),
                                         ("all", small_all, large_all))}
    noop_ratio = median(noop.times.wall) / median(baseline.wall)
    noop_cpu = median(noop.times.cpu) / median(baseline.cpu)
    change_verdict = ("PASS" if max(w for w, _ in change.values()) <= CHANGE_TARGET
                      else "FAIL")
    noop_verdict = "PASS" if noop_ratio <= NOOP_TARGET else "FAIL"
    print(f"{'wall time of the process':<62} {'median':>11} {'min':>11} {'max':>11} "
          f"{'CPU median':>11}")
    rows = [*[(f"one change, {s.label}", s.times) for s in sites],
            (f"nothing new, {noop.label}", noop.times),
            ("python -c 'import pygit2'", baseline)]
    for label, t in rows:
        print(f"{label:<62} {ms(median(t.wall))} {ms(min(t.wall))} {ms(max(t.wall))} "
              f"{ms(median(t.cpu))}")
    for case, (wall, cpu) in change.items():
        print(f"target 1, subscribed to {case}: {args.large}/{args.small} lists after one "
              f"change: {wall:.2f}x (target <= {CHANGE_TARGET}x; CPU {cpu:.2f}x)")
    print(f"target 1: {change_verdict}")
    print(f"target 2: nothing new, {noop.label} / import pygit2: {noop_ratio:.2f}x "
          f"(target <= {NOOP_TARGET}x; CPU {noop_cpu:.2f}x): {noop_verdict}")
    info = machine()
    print(json.dumps(info))
    result = {
        "rows": [{"what": label, "median_ms": round(median(t.wall) * 1000, 1),
                  "min_ms": round(min(t.wall) * 1000, 1),
                  "max_ms": round(max(t.wall) * 1000, 1),
                  "cpu_median_ms": round(median(t.cpu) * 1000, 1), "runs": len(t.wall)}
                 for label, t in rows],
        "build_s": {str(r.lists): round(r.build_seconds, 2) for r in [*registries, registry]},
        "initial_sync_s": {s.label: round(s.initial_sync_seconds, 2) for s in [*sites, noop]},
        "change_ratios": {case: {"wall": round(w, 3), "cpu": round(c, 3)}
                          for case, (w, c) in change.items()},
        "change_target": CHANGE_TARGET, "change_verdict": change_verdict,
        "noop_ratio": round(noop_ratio, 3), "noop_cpu_ratio": round(noop_cpu, 3),
        "noop_target": NOOP_TARGET, "noop_verdict": noop_verdict, "repeat": args.repeat,
        "seed": args.seed, "machine": info,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if change_verdict == noop_verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
