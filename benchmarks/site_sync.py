"""Benchmark: `gitreg site sync` after one change and with nothing new (issue 4).

In ONE run, with keys generated at run time in a temporary directory:

  1. builds four registries with ``tests/registry_simulator.py`` (pygit2
     objects, lists signed in-process with SSHSigner, 1,000 lists per
     commit): a small one (default 100 lists) and a large one (default
     10,000) whose lists have no image, so that those sites hold only what
     the benchmark changes; and two of 1,000 lists for the no-op target,
     one whose lists have no image and one whose lists have one image each
     (1 KiB, the same file under 1,000 UUIDs, which the site downloads and
     then holds). Each is packed (``git repack -a -d``, as a server's gc
     leaves it) and served as a real Git repository by its local path
     (git's local transport: git fetch runs upload-pack and pack-objects,
     as for any remote);
  2. writes a site config per registry (one remote, trust root pinned by
     the policy fingerprint, every list subscribed, no handler) and runs an
     initial ``gitreg site sync`` (not timed), which verifies all history;
  3. target 1, one list changed: before each timed run, publishes a new
     signed version of one list (always the same) whose only image is a
     new 1 KiB file (served by an HTTP server on 127.0.0.1), so that each
     sync fetches one commit, verifies it, downloads one image and retires
     the previous one. Times the whole ``gitreg site sync --config F``
     process (the real CLI in a subprocess), small and large interleaved so
     both see the same load; the ratio of the medians must be <= 1.5;
  4. target 2, nothing new: times ``gitreg site sync`` on both 1,000-list
     sites with no change, interleaved with a bare ``python -c "import
     pygit2"`` (same interpreter); the ratio of the medians must be <= 3
     for each (the verdict is on the worse).

All processes run with byte-code caches (in the temporary directory), as an
installed package has them. Wall and CPU time (with child processes) are
reported; the verdicts are on wall time.

    .venv/bin/python benchmarks/site_sync.py                      # about 1 minute
    .venv/bin/python benchmarks/site_sync.py --repeat 21 --json site.json

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
from collections.abc import Sequence
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
BATCH = 1000
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
class Site:
    """One registry (the simulator, its endorser's side) and the site that follows it."""

    lists: int
    sim: RegistrySimulator
    config: Path
    list_ids: list[str]
    build_seconds: float
    initial_sync_seconds: float = 0.0
    times: Samples = field(default_factory=Samples)
    with_images: bool = False
    changes: int = 0
    newest_image: str | None = None

    @property
    def lists_label(self) -> str:
        return f"{self.lists} lists" + (", an image each" if self.with_images else "")


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


def build(where: Path, lists: int, signer: SSHSigner,
          image: dict[str, object] | None = None) -> Site:
    """A registry of ``lists`` lists by one endorser, and a site config following it.

    The lists have no image, or each one image with ``image``'s file (the
    same bytes and URL under a UUID of its own).
    """
    from gitreg.model.policy import Limits, fingerprint
    from tests.registry_simulator import RegistrySimulator, image_entry, new_id, ssh_signer

    name = f"{lists}-images" if image else str(lists)

    started = time.perf_counter()
    sim = RegistrySimulator.create(
        where / f"registry-{name}.git", roots=[ssh_signer("root")],
        start=datetime.now(UTC) - timedelta(hours=1),
        limits=Limits(max_file_size=1 << 20, max_list_lifetime_days=365))
    trust_root = fingerprint(sim.policy.canonical_bytes())
    sim.add_endorser("bench", [signer.public_key()], ["imagelists/*"])
    list_ids = [new_id(f"{name}/list/{i}") for i in range(lists)]
    for start in range(0, lists, BATCH):
        sim.publish(signer, {
            list_id: [{**image_entry(new_id()), **image}] if image else []  # type: ignore[list-item]
            for list_id in list_ids[start:start + BATCH]})
    # The simulator writes loose objects; a served repository is packed (its
    # gc packs what pushes bring), and git serves a pack far faster.
    subprocess.run(["git", "-C", str(sim.path), "repack", "-a", "-d", "-q"], check=True)
    build_seconds = time.perf_counter() - started

    site = where / f"site-{name}"
    site.mkdir()
    config = site / "site.toml"
    config.write_text(f"""[site]
state_dir = "state"
download_workers = 2

[[registry]]
name = "bench"
remotes = [{json.dumps(str(sim.path))}]
trust_root = "{trust_root}"

[[subscription]]
registry = "bench"
imagelists = ["*"]
""", encoding="utf-8")
    return Site(lists, sim, config, list_ids, build_seconds, with_images=image is not None)


def sync(site: Site) -> tuple[float, float]:
    """One `gitreg site sync` process; its wall and CPU time in seconds."""
    run = run_timed([*GITREG, "site", "sync", "--config", str(site.config)], env=ENV)
    if run.done.returncode != 0:
        raise RuntimeError(f"gitreg site sync ({site.lists} lists) exited "
                           f"{run.done.returncode}:\n{run.done.stdout}{run.done.stderr}")
    return run.wall, run.cpu


def publish_change(site: Site, signer: SSHSigner, images: ImageServer) -> None:
    """A new signed version of one list, whose only image is a new 1 KiB file."""
    from tests.registry_simulator import image_entry, new_id

    sim = site.sim
    # Always the same list: its new version replaces the previous image.
    list_id = site.list_ids[len(site.list_ids) // 2]
    site.changes += 1
    image_id = new_id()
    body = os.urandom(1024)
    entry = {**image_entry(image_id, title=f"bench image {site.changes}"),
             "hv:uri": images.serve(f"{image_id}.img", body), "hv:size": len(body),
             "sl:checksum:sha512": hashlib.sha512(body).hexdigest()}
    # The simulator's clock runs a second per commit; keep it near real time.
    sim.clock = max(sim.clock, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1))
    sim.publish(signer, {list_id: [entry]})  # type: ignore[list-item]
    site.newest_image = image_id


def cached_images(site: Site) -> list[str]:
    done = subprocess.run([*GITREG, "site", "images", "--config", str(site.config), "--json"],
                          capture_output=True, text=True, check=True, env=ENV)
    return sorted(row["uuid"] for row in json.loads(done.stdout))


def import_pygit2() -> tuple[float, float]:
    run = run_timed([sys.executable, "-c", "import pygit2"], env=ENV)
    run.done.check_returncode()
    return run.wall, run.cpu


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=100, help="lists in the small registry")
    parser.add_argument("--large", type=int, default=10_000, help="lists in the large one")
    parser.add_argument("--noop", type=int, default=1_000,
                        help="lists of the registries synced with nothing new")
    parser.add_argument("--repeat", type=int, default=11, help="timed runs of each kind")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from tests.registry_simulator import ssh_signer

    signer = ssh_signer("bench endorser")
    with tempfile.TemporaryDirectory(prefix="gitreg-site-bench-") as tmp:
        where = Path(tmp)
        ENV.update({k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
        ENV["PYTHONPYCACHEPREFIX"] = str(where / "pycache")
        import_pygit2()  # fills the caches; the initial syncs do the same for gitreg
        (where / "images").mkdir()
        images = ImageServer(where / "images")
        try:
            sites: list[Site] = []
            body = b"one image shared by every list\n" * 32
            shared = {"hv:uri": images.serve("shared.img", body), "hv:size": len(body),
                      "sl:checksum:sha512": hashlib.sha512(body).hexdigest()}
            for lists, with_images in ((args.small, False), (args.large, False),
                                       (args.noop, False), (args.noop, True)):
                say(f"building a {lists}-list registry ...")
                site = build(where, lists, signer, shared if with_images else None)
                site.initial_sync_seconds = sync(site)[0]
                say(f"  built in {site.build_seconds:.1f} s, initial sync "
                    f"{site.initial_sync_seconds:.1f} s")
                sites.append(site)
            small, large, empty, full = sites
            say("target 1: one list changed, small and large interleaved ...")
            for site in (small, large):  # warm the page cache and the state db once
                publish_change(site, signer, images)
                sync(site)
            for _ in range(args.repeat):
                for site in (small, large):
                    publish_change(site, signer, images)
                    site.times.add(sync(site))
            for site in (small, large):
                held = cached_images(site)
                if held != [site.newest_image]:
                    say(f"the {site.lists}-list site holds {held}, "
                        f"not the newest image {site.newest_image}")
                    return 2
            say("target 2: nothing new, interleaved with `python -c 'import pygit2'` ...")
            baseline = Samples()
            for site in (empty, full):
                sync(site)
            for _ in range(args.repeat):
                for site in (empty, full):
                    site.times.add(sync(site))
                baseline.add(import_pygit2())
            if len(cached_images(full)) != full.lists or cached_images(empty):
                say("a site synced with nothing new does not hold one image per list")
                return 2
        except RuntimeError as exc:
            say(str(exc))
            return 2
        finally:
            images.close()

    median = statistics.median
    change_ratio = median(large.times.wall) / median(small.times.wall)
    change_cpu = median(large.times.cpu) / median(small.times.cpu)
    noop_ratios = {site.lists_label: (median(site.times.wall) / median(baseline.wall),
                                      median(site.times.cpu) / median(baseline.cpu))
                   for site in (empty, full)}
    noop_ratio = max(wall for wall, _ in noop_ratios.values())
    change_verdict = "PASS" if change_ratio <= CHANGE_TARGET else "FAIL"
    noop_verdict = "PASS" if noop_ratio <= NOOP_TARGET else "FAIL"
    print(f"{'wall time of the process':<48} {'median':>11} {'min':>11} {'max':>11} "
          f"{'CPU median':>11}")
    rows = [(f"sync after one change, {small.lists_label}", small.times),
            (f"sync after one change, {large.lists_label}", large.times),
            (f"sync with nothing new, {empty.lists_label}", empty.times),
            (f"sync with nothing new, {full.lists_label}", full.times),
            ("python -c 'import pygit2'", baseline)]
    for label, t in rows:
        print(f"{label:<48} {ms(median(t.wall))} {ms(min(t.wall))} {ms(max(t.wall))} "
              f"{ms(median(t.cpu))}")
    print(f"target 1: {large.lists}/{small.lists} lists after one change: "
          f"{change_ratio:.2f}x (target <= {CHANGE_TARGET}x; CPU {change_cpu:.2f}x): "
          f"{change_verdict}")
    for label, (wall, cpu) in noop_ratios.items():
        print(f"target 2: nothing new, {label} / import pygit2: {wall:.2f}x "
              f"(target <= {NOOP_TARGET}x; CPU {cpu:.2f}x)")
    print(f"target 2: {noop_verdict}")
    info = machine()
    print(json.dumps(info))
    result = {
        "rows": [{"what": label, "median_ms": round(median(t.wall) * 1000, 1),
                  "min_ms": round(min(t.wall) * 1000, 1),
                  "max_ms": round(max(t.wall) * 1000, 1),
                  "cpu_median_ms": round(median(t.cpu) * 1000, 1), "runs": len(t.wall)}
                 for label, t in rows],
        "build_s": {s.lists_label: round(s.build_seconds, 2) for s in sites},
        "initial_sync_s": {s.lists_label: round(s.initial_sync_seconds, 2) for s in sites},
        "change_ratio": round(change_ratio, 3), "change_cpu_ratio": round(change_cpu, 3),
        "change_target": CHANGE_TARGET, "change_verdict": change_verdict,
        "noop_ratios": {label: {"wall": round(wall, 3), "cpu": round(cpu, 3)}
                        for label, (wall, cpu) in noop_ratios.items()},
        "noop_target": NOOP_TARGET, "noop_verdict": noop_verdict, "repeat": args.repeat,
        "machine": info,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if change_verdict == noop_verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
