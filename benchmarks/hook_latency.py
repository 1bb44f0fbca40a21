"""Benchmark: pre-receive hook latency of a one-list push, 100 vs 10,000 lists (issue 3).

In ONE run, with keys generated at run time in a temporary directory:

  1. builds two registries with ``tests/registry_simulator.py`` (pygit2
     objects, lists signed in-process with SSHSigner, 1,000 lists per commit):
     a small one (default 100 lists) and a large one (default 10,000);
  2. seeds a server repository from each with the real ``gitreg server init``
     (which verifies the seed and fills the hook's verification cache);
  3. warms each server the way a running server is warm: one push first;
  4. times pushes that change one list (a new image, hv:version + 1), each
     a ``git push`` with the git CLI to the local path, so receive-pack runs
     the installed hook. Small and large pushes are interleaved so both see
     the same machine load. Reported: the median wall time of the push and
     of the hook process alone (from git's trace2 events);
  5. prints both, the ratios large/small, and PASS/FAIL against <= 1.3x
     (cost follows the change, not the repository) for the hook's own
     latency (the verdict and exit status) and for the whole push, whose
     remainder is git's own work (pack, unpack, fsck, connectivity check).

    .venv/bin/python benchmarks/hook_latency.py                    # 100 vs 10,000, ~1 min
    .venv/bin/python benchmarks/hook_latency.py --repeat 21 --json hook.json

Exit status: 0 if the hook meets the target, 1 if not, 2 if a push was refused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import machine, run_timed, say

TARGET = 1.3
BATCH = 1000


@dataclass
class Registry:
    """One benchmark registry: its simulator (the endorser's side) and its server."""

    lists: int
    sim: object  # tests.registry_simulator.RegistrySimulator (imported late)
    server: Path
    list_ids: list[str]
    build_seconds: float
    seed_seconds: float
    pushes: list[float] = field(default_factory=list)
    hooks: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    next_list: int = 0


def build(where: Path, lists: int, signer: object) -> Registry:
    """A registry of ``lists`` one-image lists, all by one endorser, and its server."""
    from gitreg.model.policy import Limits
    from gitreg.signing.ssh import SSHSigner
    from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer

    assert isinstance(signer, SSHSigner)
    started = time.perf_counter()
    sim = RegistrySimulator.create(
        where / f"registry-{lists}.git", roots=[ssh_signer("root")],
        start=datetime.now(UTC) - timedelta(hours=1),
        limits=Limits(max_file_size=1 << 20, max_list_lifetime_days=365))
    sim.add_endorser("bench", [signer.public_key()], ["imagelists/*"])
    list_ids = [new_id(f"{lists}/list/{i}") for i in range(lists)]
    for start in range(0, lists, BATCH):
        chunk = list_ids[start:start + BATCH]
        # As real lists do, each carries 1 to 5 images (3 on average).
        sim.publish(signer, {list_id: [new_id(f"{list_id}/image/{i}")
                                       for i in range(1 + (start + n) % 5)]
                             for n, list_id in enumerate(chunk)})
    build_seconds = time.perf_counter() - started

    server = where / f"server-{lists}.git"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gitreg", "server", "init", str(server), "--from",
                    str(sim.path)], check=True, capture_output=True)
    seed_seconds = time.perf_counter() - started
    return Registry(lists, sim, server, list_ids, build_seconds, seed_seconds)


def hook_seconds(trace: Path) -> float:
    """The pre-receive hook's wall time, from git's trace2 event stream."""
    total = 0.0
    hooks: set[tuple[str, int]] = set()
    for line in trace.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        # child ids count per process: a child is its parent's session id and its id.
        key = (event.get("sid", ""), event.get("child_id", -1))
        if event.get("event") == "child_start" and event.get("hook_name") == "pre-receive":
            hooks.add(key)
        elif event.get("event") == "child_exit" and key in hooks:
            total += float(event["t_rel"])
    return total


def push_one_change(registry: Registry, signer: object,
                    trace: Path) -> tuple[float, float, float]:
    """Change the next list (one more image) and push main.

    Returns the push's wall time, the hook's wall time and the CPU time of
    every process of the push (git on both sides and the hook), in seconds.
    """
    from tests.registry_simulator import RegistrySimulator, new_id

    sim = registry.sim
    assert isinstance(sim, RegistrySimulator)
    list_id = registry.list_ids[registry.next_list % len(registry.list_ids)]
    registry.next_list += 1
    _version, images = sim.lists[list_id]
    sim.clock = max(sim.clock, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1))
    sim.publish(signer, {list_id: [*images, new_id()]})  # type: ignore[arg-type]
    trace.unlink(missing_ok=True)
    # A server's hook runs from compiled modules (pip writes .pyc files); the
    # first, warming push writes them here even if this shell forbids it.
    env = {key: value for key, value in os.environ.items()
           if key != "PYTHONDONTWRITEBYTECODE"}
    env["GIT_TRACE2_EVENT"] = str(trace)
    push = run_timed(["git", "-C", str(sim.path), "push", "--quiet", str(registry.server),
                      "refs/heads/main:refs/heads/main"], env=env)
    if push.done.returncode != 0:
        raise RuntimeError(f"push to {registry.server} refused:\n{push.done.stderr}")
    return push.wall, hook_seconds(trace), push.cpu


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=100, help="lists in the small registry")
    parser.add_argument("--large", type=int, default=10_000, help="lists in the large one")
    parser.add_argument("--repeat", type=int, default=15, help="timed pushes per registry")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from tests.registry_simulator import ssh_signer

    signer = ssh_signer("bench endorser")
    with tempfile.TemporaryDirectory(prefix="gitreg-hook-bench-") as tmp:
        where = Path(tmp)
        registries = []
        for lists in (args.small, args.large):
            say(f"building a {lists}-list registry and its server ...")
            registries.append(build(where, lists, signer))
            say(f"  built in {registries[-1].build_seconds:.1f} s, "
                f"`gitreg server init` in {registries[-1].seed_seconds:.1f} s")
        trace = where / "trace2.json"
        try:
            for registry in registries:
                push_one_change(registry, signer, trace)  # warm: a server is never cold
            for _ in range(args.repeat):
                for registry in registries:
                    pushed, hooked, cpu = push_one_change(registry, signer, trace)
                    registry.pushes.append(pushed)
                    registry.hooks.append(hooked)
                    registry.cpu.append(cpu)
        except RuntimeError as exc:
            say(str(exc))
            return 2

    small, large = registries
    rows = []
    for registry in registries:
        git_only = [p - h for p, h in zip(registry.pushes, registry.hooks, strict=True)]
        rows.append({
            "lists": registry.lists, "pushes": len(registry.pushes),
            "hook_median_ms": round(statistics.median(registry.hooks) * 1000, 1),
            "hook_min_ms": round(min(registry.hooks) * 1000, 1),
            "push_median_ms": round(statistics.median(registry.pushes) * 1000, 1),
            "push_min_ms": round(min(registry.pushes) * 1000, 1),
            "git_median_ms": round(statistics.median(git_only) * 1000, 1),
            "push_cpu_median_ms": round(statistics.median(registry.cpu) * 1000, 1),
            "build_s": round(registry.build_seconds, 2),
            "server_init_s": round(registry.seed_seconds, 2),
        })
    hook_ratio = statistics.median(large.hooks) / statistics.median(small.hooks)
    push_ratio = statistics.median(large.pushes) / statistics.median(small.pushes)
    verdict = "PASS" if hook_ratio <= TARGET else "FAIL"
    push_verdict = "PASS" if push_ratio <= TARGET else "FAIL"
    print(f"{'lists':>7} {'hook median':>12} {'hook min':>9} {'push median':>12} "
          f"{'push min':>9} {'git (push - hook)':>18} {'push CPU':>9} {'build':>7} "
          f"{'server init':>12}")
    for row in rows:
        print(f"{row['lists']:>7} {row['hook_median_ms']:>9.1f} ms {row['hook_min_ms']:>6.1f} ms"
              f" {row['push_median_ms']:>9.1f} ms {row['push_min_ms']:>6.1f} ms"
              f" {row['git_median_ms']:>15.1f} ms {row['push_cpu_median_ms']:>6.1f} ms"
              f" {row['build_s']:>5.1f} s {row['server_init_s']:>10.1f} s")
    print(f"hook latency {large.lists}/{small.lists} lists: {hook_ratio:.2f}x "
          f"(target <= {TARGET}x): {verdict}")
    print(f"whole push   {large.lists}/{small.lists} lists: {push_ratio:.2f}x "
          f"(target <= {TARGET}x): {push_verdict}"
          + ("  (git's own receive of the rewritten imagelists/ tree; see the git column)"
             if push_verdict == "FAIL" else ""))
    result = {"rows": rows, "hook_ratio": round(hook_ratio, 3), "verdict": verdict,
              "push_ratio": round(push_ratio, 3), "push_verdict": push_verdict,
              "target": TARGET, "repeat": args.repeat, "machine": machine()}
    print(json.dumps(result["machine"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
