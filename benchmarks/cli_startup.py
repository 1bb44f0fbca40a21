"""What the CLI machinery (typer) costs `gitreg site sync`, the command cron runs.

A plain ``site sync`` command line skips typer (``gitreg/cli/site_sync.py``);
this measures whether it still has to, by timing whole processes, medians
of ``--repeat`` interleaved runs, with byte-code caches as an installed
package has them:

- ``python -c "import pygit2"`` (the baseline of the site sync target);
- ``gitreg --version`` (typer, no command module);
- ``gitreg site sync --help`` (typer and every command module);
- a sync with nothing new (20 lists, one remote) by the plain path, and the
  same sync through typer (an option given twice is not a plain line).

Usage (repository root)::

    .venv/bin/python benchmarks/cli_startup.py --repeat 21
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import machine, run_timed, say


def _site(where: Path) -> Path:
    from gitreg.model.policy import fingerprint
    from tests.registry_simulator import RegistrySimulator, new_id, ssh_signer
    from tests.site_registry import site_toml

    sim = RegistrySimulator.create(where / "registry.git")
    trust_root = fingerprint(sim.policy.canonical_bytes())  # the initial policy
    endorser = ssh_signer("bench endorser")
    sim.add_endorser("e", [endorser.public_key()], ["imagelists/*"])
    sim.publish(endorser, {new_id(): [] for _ in range(20)})
    config = where / "site.toml"
    config.write_text(site_toml([{"name": "r", "remotes": [sim.path], "trust_root": trust_root}]),
                      encoding="utf-8")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args(argv)
    gitreg = [sys.executable, "-m", "gitreg"]
    with tempfile.TemporaryDirectory(prefix="gitreg-cli-bench-") as tmp:
        where = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(where / "pycache")
        config = str(_site(where))
        cases = {
            'python -c "import pygit2"': [sys.executable, "-c", "import pygit2"],
            "gitreg --version": [*gitreg, "--version"],
            "gitreg site sync --help": [*gitreg, "site", "sync", "--help"],
            "site sync, nothing new, plain path": [*gitreg, "site", "sync", "--config", config],
            "site sync, nothing new, through typer": [*gitreg, "site", "sync", "--config",
                                                      "/nonexistent.toml", "--config", config],
        }
        for argv_ in cases.values():  # fills the byte-code caches, runs the first sync
            done = run_timed(argv_, env=env).done
            if done.returncode != 0:
                raise SystemExit(f"{argv_}: exit {done.returncode}: {done.stderr}")
        walls: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(args.repeat):
            say(f"round {round_ + 1}/{args.repeat}")
            for name, argv_ in cases.items():
                walls[name].append(run_timed(argv_, env=env).wall)
    base = statistics.median(walls['python -c "import pygit2"'])
    print("| process (median) | wall ms | / import pygit2 |")
    print("|---|---|---|")
    for name, samples in walls.items():
        median = statistics.median(samples)
        print(f"| {name} | {median * 1000:.1f} | {median / base:.2f}x |")
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
