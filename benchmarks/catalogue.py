"""The catalogue's performance targets (issue 11) on a 10,000-list registry.

- ``gitreg search`` (a whole process, at an unchanged state) under 1 s;
- ``gitreg web build`` of the registry under 60 s, and a rebuild after one
  list changed under 5 s, re-rendering only what changed;
- the JSON search index under 5 MB gzip-compressed;
- ``GET /series/<name>/latest`` under 10 ms (median, local).

The registry is real: signed lists of 1 to 5 images (3 on average) with
series, architectures and Markdown, published in signed commits of 1,000
lists, then 500 of them updated in five more commits (history to show).
Baseline in the same run: a process that only runs ``import pygit2``.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import machine, run_timed, say

BATCH = 1000
ARCHES = ("x86_64", "aarch64", "ppc64le")
OSES = (("AlmaLinux", "9"), ("Ubuntu", "22.04"), ("Debian", "12"), ("Rocky", "9"))


def build_registry(where: Path, count: int, seed: int) -> tuple[Any, Any, list[str]]:
    from gitreg.model.dates import format_date
    from gitreg.model.policy import Limits
    from gitreg.model.strictjson import canonical_dumps
    from tests.registry_simulator import RegistrySimulator, image_entry, new_id, ssh_signer

    rng = random.Random(seed)
    sim = RegistrySimulator.create(
        where / "registry.git", roots=[ssh_signer("root")],
        start=datetime.now(UTC) - timedelta(hours=2),
        limits=Limits(max_file_size=1 << 20, max_list_lifetime_days=365))
    signer = ssh_signer("bench")
    sim.add_endorser("bench", [signer.public_key()], ["imagelists/*"])
    ids = [new_id(f"bench/list/{i}") for i in range(count)]
    versions: dict[str, int] = {}

    def list_bytes(list_id: str, number: int) -> bytes:
        images = []
        for k in range(rng.randint(1, 5)):
            os_name, os_version = rng.choice(OSES)
            body = image_entry(new_id(f"{list_id}/{k}/{versions.get(list_id, 0)}"),
                               title=f"{os_name} {os_version} image {number}-{k}",
                               version=f"{os_version}.{versions.get(list_id, 0)}.{k}")
            body.update({"sl:arch": rng.choice(ARCHES), "sl:osversion": f"{os_name} "
                         f"{os_version}", "gitreg:series": f"series-{number % 2000}",
                         "gitreg:description_md": f"# {os_name}\n\nBuilt **nightly**, "
                         f"see [notes](https://example.org/{number})."})
            images.append({"hv:image": body})
        created = sim.clock
        body = {
            "dc:identifier": list_id, "dc:title": f"Bench list {number}",
            "dc:description": "benchmark list", "dc:source": "bench",
            "hv:uri": f"https://lists.example.org/{list_id}.json",
            "hv:version": str(versions.get(list_id, 0) + 1),
            "dc:date:created": format_date(created),
            "dc:date:expires": format_date(created + timedelta(days=100)),
            "hv:endorser": {"hv:x509": {"hv:dn": "/CN=Bench", "hv:ca": "/CN=CA",
                                        "hv:email": "b@example.org", "dc:creator": "B"}},
            "hv:images": images}
        versions[list_id] = versions.get(list_id, 0) + 1
        return canonical_dumps({"hv:imagelist": body})

    for start in range(0, count, BATCH):
        changes: dict[str, bytes | None] = {}
        for number in range(start, min(start + BATCH, count)):
            changes.update(sim.signed_list(ids[number], list_bytes(ids[number], number), signer))
        sim.commit(changes, signer, message=f"Publish lists {start}..")
        say(f"  published {min(start + BATCH, count)} lists")
    for round_ in range(5):
        changes = {}
        for number in rng.sample(range(count), min(100, count)):
            changes.update(sim.signed_list(ids[number], list_bytes(ids[number], number), signer))
        sim.commit(changes, signer, message=f"Update round {round_}")
    return sim, signer, ids, list_bytes  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from gitreg.catalogue.sources import read_snapshot, snapshots
    from gitreg.catalogue.status import stamp
    from gitreg.catalogue.web.build import build_site
    from gitreg.catalogue.web.serve import Catalogue, make_handler

    results: dict[str, Any] = {"lists": args.lists, "seed": args.seed, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="gitreg-bench-catalogue-") as scratch:
        where = Path(scratch)
        say(f"building a registry of {args.lists} lists (seed {args.seed})")
        started = time.perf_counter()
        sim, signer, ids, list_bytes = build_registry(where, args.lists, args.seed)
        results["build_registry_s"] = time.perf_counter() - started

        started = time.perf_counter()
        [snap] = snapshots([sim.path])
        records = read_snapshot(snap)
        results["first_read_s"] = time.perf_counter() - started
        images = sum(len(r["images"]) for r in records["lists"].values())
        results["images"] = images
        results["cache_mb"] = (sim.path / "gitreg-catalogue.cache").stat().st_size / 1e6

        # As installed: with bytecode written (a run first writes it), which a
        # PYTHONDONTWRITEBYTECODE environment would otherwise recompile each time.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        search = [sys.executable, "-m", "gitreg", "search", "-r", str(sim.path), "--json",
                  "sl:arch=aarch64", "--latest"]
        run_timed(search, env=env)
        baseline = [run_timed([sys.executable, "-c", "import pygit2"], env=env)
                    for _ in range(5)]
        searches = [run_timed(search, env=env) for _ in range(5)]
        results["baseline_import_pygit2_s"] = statistics.median(r.wall for r in baseline)
        results["baseline_import_pygit2_cpu_s"] = statistics.median(r.cpu for r in baseline)
        results["search_process_s"] = statistics.median(r.wall for r in searches)
        results["search_process_cpu_s"] = statistics.median(r.cpu for r in searches)
        results["search_rows"] = json.loads(searches[0].done.stdout)["count"]

        out = where / "site"
        now = stamp(datetime.now(UTC))
        started = time.perf_counter()
        report = build_site([records], out, now=now)
        results["web_build_s"] = time.perf_counter() - started
        results["web_build_files"] = len(report.rendered)
        index = (out / "api" / "index.json").read_bytes()
        results["index_mb"] = len(index) / 1e6
        results["index_gzip_mb"] = len(gzip.compress(index, 6)) / 1e6

        number = 7
        sim.commit(sim.signed_list(ids[number], list_bytes(ids[number], number), signer),
                   signer, message="One change")
        # A rebuild as `gitreg web build` runs it: verify and read what changed,
        # at a later reference time (so every latest.json, which says when, is new).
        started = time.perf_counter()
        [snap] = snapshots([sim.path])
        changed = read_snapshot(snap)
        results["rebuild_read_s"] = time.perf_counter() - started
        report = build_site([changed], out, now=stamp(datetime.now(UTC) + timedelta(minutes=1)))
        results["rebuild_s"] = time.perf_counter() - started
        results["rebuild_files"] = len(report.rendered)
        results["rebuild_unchanged"] = report.unchanged

        from http.server import ThreadingHTTPServer

        catalogue = Catalogue([sim.path], where / "served")
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(catalogue))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.server_address[1]
        timings = []
        rng = random.Random(args.seed)
        try:
            for _ in range(args.requests):
                series = f"series-{rng.randrange(min(2000, args.lists))}"
                started = time.perf_counter()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", f"/series/{series}/latest")
                response = connection.getresponse()
                response.read()
                connection.close()
                timings.append(time.perf_counter() - started)
                assert response.status == 302, response.status
        finally:
            server.shutdown()
            server.server_close()
        results["latest_median_ms"] = statistics.median(timings) * 1000
        results["latest_p95_ms"] = sorted(timings)[int(len(timings) * 0.95)] * 1000

    checks = {
        "search < 1 s": results["search_process_s"] < 1.0,
        "web build < 60 s": results["web_build_s"] < 60,
        "rebuild < 5 s": results["rebuild_s"] < 5,
        "index < 5 MB gzip": results["index_gzip_mb"] < 5,
        "latest median < 10 ms": results["latest_median_ms"] < 10,
    }
    results["checks"] = checks
    for key, value in results.items():
        if key not in ("machine", "checks"):
            print(f"{key:28} {value:.3f}" if isinstance(value, float) else f"{key:28} {value}")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
