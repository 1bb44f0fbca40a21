"""A/B: the trust-core benchmarks of this tree against a baseline checkout (issue 7).

"No speed lost" is a comparison of two versions of the code, so it is made in
ONE run on one machine: the baseline tree (a checkout of the older commit
with its own ``.venv``, e.g. ``git worktree add --detach ../base 1ec36f8 &&
make -C ../base dev``) and this tree run the same benchmark scripts (this
tree's, copied beside the baseline's, so both measure the same data) in turn,
round after round (base, new, base, new, ...), so both see the same machine
load. Per figure the median over the rounds is taken and the ratio
new / base printed; the target is <= 1.10 (within 10%).

    .venv/bin/python benchmarks/ab.py --base ../base                 # ~15 min
    .venv/bin/python benchmarks/ab.py --base ../base --rounds 5 --lists 10000

Figures: the hook's median latency and the push's CPU time of a one-list
push into the large registry (``hook_latency.py``); the wall and CPU time of
a cold ``gitreg verify`` of an SSH-signed and an X.509-signed history
(``verify_history.py``); the CPU time per list of in-process SSH and S/MIME
verification (``verify_signatures.py``). CPU times are the figures to judge
on a shared machine (wall times move with other jobs' load); both are shown.

Exit status: 0 if every CPU figure is within 10%, 1 if one is not, 2 if a
benchmark failed to run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import machine, say

TARGET = 1.10
HERE = Path(__file__).resolve().parents[1]

Figures = dict[str, float]


def _row(rows: list[dict[str, Any]], key: str, value: Any) -> dict[str, Any]:
    return next(r for r in rows if r.get(key) == value)


def _hook(data: dict[str, Any]) -> Figures:
    large = max(data["rows"], key=lambda r: r["lists"])
    return {"hook median, large registry (ms, wall)": large["hook_median_ms"],
            "push CPU, large registry (ms, cpu)": large["push_cpu_median_ms"]}


def _history(data: dict[str, Any]) -> Figures:
    out: Figures = {}
    for scheme in ("ssh", "x509"):
        row = _row(data["rows"], "what", f"gitreg verify ({scheme})")
        out[f"gitreg verify {scheme} (s, wall)"] = row["wall_s"]
        out[f"gitreg verify {scheme} (s, cpu)"] = row["cpu_s"]
    return out


def _signatures(data: dict[str, Any]) -> Figures:
    out: Figures = {}
    for scheme, label in (("SSH Ed25519", "ssh"), ("X.509 S/MIME", "smime")):
        row = next(r for r in data["rows"]
                   if r["scheme"] == scheme and "baseline" not in r["method"])
        out[f"verify one list {label} (ms, cpu)"] = row["per_list_cpu_ms_mean"]
    return out


# (script, arguments, figures, whether the baseline runs this tree's copy). Both
# trees run this tree's script where it drives the code only through the CLI and
# the simulator, so both measure the same data; verify_signatures.py calls
# PublicKey.verify, whose signature changed, so each tree runs its own (its data,
# 10,000 lists of three images, is the same in both).
def _benchmarks(lists: int, repeat: int
                ) -> list[tuple[str, list[str], Callable[..., Figures], bool]]:
    return [
        ("hook_latency.py", ["--small", "100", "--large", str(lists), "--repeat", str(repeat)],
         _hook, True),
        ("verify_history.py", ["--lists", str(lists), "--schemes", "ssh,x509",
                               "--openpgp-lists", "0", "--baseline", "50"], _history, True),
        ("verify_signatures.py", ["--count", str(lists), "--baseline-sample", "50",
                                  "--openpgp-count", "0"], _signatures, False),
    ]


def _run(tree: Path, script: str, args: list[str], out: Path) -> dict[str, Any]:
    python = tree / ".venv" / "bin" / "python"
    proc = subprocess.run([str(python), script, *args, "--json", str(out)],
                          cwd=tree, capture_output=True, text=True, check=False)
    if not out.exists():
        say(proc.stderr[-2000:])
        raise SystemExit(f"{tree}: {script} wrote no figures (exit {proc.returncode})")
    data: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", type=Path, required=True,
                        help="a checkout of the baseline commit with its own .venv")
    parser.add_argument("--rounds", type=int, default=3, help="base/new pairs per benchmark")
    parser.add_argument("--lists", type=int, default=10_000, help="lists in the large registry")
    parser.add_argument("--repeat", type=int, default=9, help="timed pushes per registry")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    base = args.base.resolve()
    if not (base / ".venv" / "bin" / "python").exists():
        parser.error(f"{base}: no .venv (run `make dev` there first)")
    commits = {name: subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, check=False).stdout.strip()
               for name, tree in (("base", base), ("new", HERE))}
    say(f"A/B {commits['base']} (base) vs {commits['new']} (new), {args.rounds} rounds, "
        f"{args.lists} lists; load {machine()['load']}")
    samples: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="gitreg-ab-") as tmp:
        out = Path(tmp) / "figures.json"
        for script, bench_args, pick, shared in _benchmarks(args.lists, args.repeat):
            # A copy beside the baseline's benchmarks imports the baseline's code.
            copy = base / "benchmarks" / (f"_ab_{script}" if shared else script)
            if shared:
                shutil.copyfile(HERE / "benchmarks" / script, copy)
            try:
                for round_ in range(args.rounds):
                    for name, tree, path in (("base", base, copy),
                                             ("new", HERE, HERE / "benchmarks" / script)):
                        say(f"  {script} round {round_ + 1}/{args.rounds}: {name}")
                        figures = pick(_run(tree, str(path), bench_args, out))
                        for figure, value in figures.items():
                            samples.setdefault(figure, {}).setdefault(name, []).append(value)
            finally:
                if shared:
                    copy.unlink(missing_ok=True)
    rows = []
    failed = False
    print(f"{'figure':45} {'base':>10} {'new':>10} {'new/base':>9}")
    for figure, by in samples.items():
        b, n = statistics.median(by["base"]), statistics.median(by["new"])
        ratio = n / b if b else float("inf")
        judged = figure.endswith("cpu)")
        failed |= judged and ratio > TARGET
        rows.append({"figure": figure, "base": b, "new": n, "ratio": round(ratio, 3),
                     "judged": judged, "samples": by})
        mark = ("FAIL" if ratio > TARGET else "ok") if judged else "(wall)"
        print(f"{figure:45} {b:10.3f} {n:10.3f} {ratio:8.3f}x {mark}")
    verdict = "FAIL" if failed else "PASS"
    print(f"{verdict}: every CPU figure of {commits['new']} within {TARGET:.2f}x of "
          f"{commits['base']}" if not failed else
          f"{verdict}: a CPU figure of {commits['new']} is over {TARGET:.2f}x {commits['base']}")
    if args.json:
        args.json.write_text(json.dumps({"commits": commits, "rounds": args.rounds,
                                         "lists": args.lists, "rows": rows,
                                         "verdict": verdict, "machine": machine()}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
