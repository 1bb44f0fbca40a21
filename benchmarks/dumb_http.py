"""Benchmark: one new commit fetched from a dumb-HTTP mirror vs over smart HTTP (issue 8).

In ONE run, with keys generated at run time in a temporary directory:

  1. builds a 10,000-list registry (``benchmarks/site_sync.py``'s ``build``:
     lists of 1 to 5 images, real history: ten commits of lists, then a
     tenth of them get a second version in two more; packed with ``git
     repack -a -d`` as a server's gc leaves it) and serves it over smart
     HTTP with gitreg's own server (``gitreg.server.http``, git
     http-backend) on 127.0.0.1;
  2. makes a verifying mirror of it (``gitreg mirror init`` + ``gitreg
     mirror sync``, real CLI processes) under a directory that ``python3 -m
     http.server`` serves, so clients fetch it over git's dumb HTTP protocol;
  3. two fetch-only clients (bare repositories, the site's own fetch:
     ``gitreg.gitstore.remote.fetch``) and two sites (subscribed to the list
     that changes), one of each on the smart URL and on the dumb one, all
     synced once (not timed);
  4. each round publishes one new signed version of one list (one image
     replaced), runs ``gitreg mirror sync`` (timed apart), then times, in
     alternating order, the fetch of that one commit by each client and a
     whole ``gitreg site sync`` of each site. Target: the median dumb fetch
     is at most 2x the median smart fetch.

    .venv/bin/python benchmarks/dumb_http.py                 # a few minutes
    .venv/bin/python benchmarks/dumb_http.py --lists 2000 --repeat 5 --json out.json

Exit status: 0 if the target is met, 1 if not, 2 if a command failed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import machine, say
from benchmarks.site_sync import ENV, GITREG, build, publish_change, workplace

TARGET = 2.0


def run(argv: Sequence[str | Path]) -> float:
    """Run one process to its end; its wall time. Raises if it fails."""
    started = time.perf_counter()
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False,
                          env=ENV)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {done.returncode}:\n"
                           f"{done.stdout}{done.stderr}")
    return time.perf_counter() - started


def fetch(client: Path, url: str) -> float:
    """The site's own fetch of ``url`` into ``client``; its wall time."""
    from gitreg.gitstore.remote import fetch as site_fetch

    started = time.perf_counter()
    site_fetch(client, url, name="r0")
    return time.perf_counter() - started


def site_config(where: Path, name: str, url: str, trust_root: str, changing: str) -> Path:
    directory = where / name
    directory.mkdir()
    config = directory / "site.toml"
    config.write_text(f"""[site]
state_dir = "state"
download_workers = 2

[[registry]]
name = "bench"
remotes = [{json.dumps(url)}]
trust_root = "{trust_root}"

[[subscription]]
registry = "bench"
imagelists = [{json.dumps(changing)}]
""", encoding="utf-8")
    return config


def static_server(root: Path) -> tuple[subprocess.Popen[str], str]:
    """``python3 -m http.server`` on 127.0.0.1 serving ``root``: the process and its URL."""
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
         "--directory", str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    assert server.stdout is not None
    match = re.search(r"port (\d+)", server.stdout.readline())
    if match is None:
        server.kill()
        raise RuntimeError("python3 -m http.server did not start")
    return server, f"http://127.0.0.1:{match.group(1)}"


def objects(repository: Path) -> dict[str, int]:
    """Loose objects and packs of a repository (what a dumb-HTTP client walks)."""
    done = subprocess.run(["git", "-C", str(repository), "count-objects", "-v"],
                          capture_output=True, text=True, check=True)
    counts = dict(line.split(": ") for line in done.stdout.splitlines())
    return {"loose": int(counts["count"]), "packs": int(counts["packs"])}


def median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lists", type=int, default=10_000, help="lists in the registry")
    parser.add_argument("--repeat", type=int, default=9, help="timed rounds")
    parser.add_argument("--seed", type=int, default=9, help="seed of the image counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from gitreg.server.http import GitHTTPServer
    from tests.registry_simulator import ssh_signer

    signer = ssh_signer("bench endorser")
    with workplace("gitreg-dumb-http-") as (where, images, shared):
        www = where / "www"
        www.mkdir()
        static, static_url = static_server(www)
        smart_server = None
        try:
            say(f"building a {args.lists}-list registry ...")
            registry = build(where, args.lists, signer, shared, args.seed)
            say(f"  built in {registry.build_seconds:.1f} s ({registry.image_count} images)")
            smart_server = GitHTTPServer(registry.sim.path, "127.0.0.1", 0, log=None)
            smart_server.start()
            smart = smart_server.url
            mirror = www / "registry.git"
            run([*GITREG, "mirror", "init", mirror, "--from", smart, "--trust-root",
                 registry.trust_root])
            say(f"  first mirror sync: {run([*GITREG, 'mirror', 'sync', mirror]):.1f} s")
            dumb = f"{static_url}/registry.git"
            clients = {"smart": (where / "client-smart.git", smart),
                       "dumb": (where / "client-dumb.git", dumb)}
            sites = {}
            for kind, (client, url) in clients.items():
                subprocess.run(["git", "init", "-q", "--bare", str(client)], check=True)
                say(f"  initial fetch over {kind} HTTP: {fetch(client, url):.1f} s")
                sites[kind] = site_config(where, f"site-{kind}", url, registry.trust_root,
                                          registry.changing)
                say(f"  initial site sync over {kind} HTTP: "
                    f"{run([*GITREG, 'site', 'sync', '--config', sites[kind]]):.1f} s")
            times: dict[str, list[float]] = {"smart": [], "dumb": [], "sync-smart": [],
                                             "sync-dumb": [], "mirror-sync": []}
            for n in range(args.repeat):
                publish_change(registry, signer, images)
                times["mirror-sync"].append(run([*GITREG, "mirror", "sync", mirror]))
                order = ["smart", "dumb"] if n % 2 == 0 else ["dumb", "smart"]
                for kind in order:
                    client, url = clients[kind]
                    times[kind].append(fetch(client, url))
                for kind in order:
                    times[f"sync-{kind}"].append(
                        run([*GITREG, "site", "sync", "--config", sites[kind]]))
                say(f"  round {n + 1}: fetch smart {times['smart'][-1] * 1000:.0f} ms, "
                    f"dumb {times['dumb'][-1] * 1000:.0f} ms")
            mirror_objects = objects(mirror)
        finally:
            if smart_server is not None:
                smart_server.stop()
            static.terminate()
            static.wait(timeout=10)

    ratio = median(times["dumb"]) / median(times["smart"])
    sync_ratio = median(times["sync-dumb"]) / median(times["sync-smart"])
    result = {
        "lists": args.lists, "images": registry.image_count, "rounds": args.repeat,
        "median_ms": {k: round(median(v) * 1000, 1) for k, v in times.items()},
        "fetch_ratio_dumb_over_smart": round(ratio, 2),
        "site_sync_ratio_dumb_over_smart": round(sync_ratio, 2),
        "target": TARGET, "met": ratio <= TARGET, "mirror_objects": mirror_objects,
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        say(str(exc))
        sys.exit(2)
