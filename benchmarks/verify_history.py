"""Benchmark: `gitreg verify` of a 10,000-list history from scratch, per scheme (issue 3).

In ONE run, with keys generated at run time in a temporary directory:

  1. builds one registry per endorser scheme with ``tests/registry_simulator.py``
     (pygit2 objects; a root commit, a policy commit adding the endorser, then
     the lists, 1,000 per signed commit, each list with 1 to 5 images):
       - ssh:     lists and commits signed in-process with an Ed25519 SSHSigner;
       - x509:    lists signed with S/MIME/CMS (RSA 2048 under a run-time CA),
                  commits with the endorser's SSH key (X.509 never signs commits);
       - openpgp: lists and commits signed by gpg (an Ed25519 key in a
                  run-time GNUPGHOME), 4 gpg processes at a time;
  2. times the real CLI, `gitreg verify DIR --json`, on each (a fresh process, an
     empty in-memory cache: every commit, list and signature checked), and
     reports lists/s (wall) and CPU seconds (children included);
  3. measures the baseline in the same run: one `openssl smime -verify` process
     per list (how atrope and vmcatcher verify) over a sample of the X.509 lists
     and their .sig files, interleaved with the runs above.

OpenPGP runs one gpg process per signature, signing and verifying, so its
history is smaller by default (--openpgp-lists); the output says so.

    .venv/bin/python benchmarks/verify_history.py                        # ~2 min
    .venv/bin/python benchmarks/verify_history.py --openpgp-lists 10000  # + ~6 min
    .venv/bin/python benchmarks/verify_history.py --lists 1000 --json out.json
    .venv/bin/python benchmarks/verify_history.py --schemes ssh --lists 2000 --per-commit 0 --pools
    .venv/bin/python benchmarks/verify_history.py --schemes ssh --repeat 5   # median of 5 runs

Exit status: 0 if every history verified, 2 if one did not (or openssl refused a list).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import cpu_seconds, machine, run_timed, say

BATCH = 1000
NAMESPACE = "gitreg-imagelist"


@dataclass
class History:
    scheme: str
    path: Path
    lists: int
    build_seconds: float
    sample: list[tuple[bytes, bytes]]  # (list bytes, .sig bytes) for the openssl baseline


@dataclass
class Timing:
    what: str
    lists: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.lists / self.wall


def build_history(where: Path, scheme: str, lists: int, *, list_signer: object,
                  commit_signer: object, endorser_keys: Sequence[object],
                  endorser_fields: object | None, workers: int = 1,
                  sample_size: int = 0, per_commit: int = BATCH) -> History:
    """A registry whose one endorser published ``lists`` lists signed by ``list_signer``."""
    from gitreg.model.policy import Limits
    from gitreg.signing.interface import PublicKey, Signer
    from gitreg.verify import layout
    from tests.registry_simulator import ListEndorser, RegistrySimulator, new_id, ssh_signer

    assert isinstance(list_signer, Signer) and isinstance(commit_signer, Signer)
    assert all(isinstance(k, PublicKey) for k in endorser_keys)
    assert endorser_fields is None or isinstance(endorser_fields, ListEndorser)
    started = time.perf_counter()
    sim = RegistrySimulator.create(
        where / f"history-{scheme}.git", roots=[ssh_signer("root")],
        start=datetime.now(UTC) - timedelta(hours=2),
        limits=Limits(max_file_size=1 << 20, max_list_lifetime_days=365))
    sim.add_endorser("bench", list(endorser_keys), ["imagelists/*"])  # type: ignore[arg-type]
    ids = [new_id(f"{scheme}/list/{i}") for i in range(lists)]
    sample: list[tuple[bytes, bytes]] = []
    step = max(1, lists // sample_size) if sample_size else 0

    def signed(list_id: str) -> tuple[str, bytes, bytes]:
        # As real lists do, each carries 1 to 5 images (3 on average).
        count = 1 + int(list_id[:8], 16) % 5
        data = sim.list_version(list_id, version="1",
                                images=[new_id(f"{list_id}/image/{i}") for i in range(count)],
                                endorser=endorser_fields)
        return list_id, data, list_signer.sign(data, namespace=NAMESPACE)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, lists, per_commit):
            changes: dict[str, bytes | None] = {}
            for index, (list_id, data, signature) in enumerate(
                    pool.map(signed, ids[start:start + per_commit]), start=start):
                changes[layout.list_path(list_id)] = data
                changes[layout.sig_path(list_id)] = signature
                if step and index % step == 0 and len(sample) < sample_size:
                    sample.append((data, signature))
            sim.commit(changes, commit_signer, message=f"Publish lists {start}..")
    return History(scheme, sim.path, lists, time.perf_counter() - started, sample)


def time_verify(history: History) -> Timing:
    """`gitreg verify` from scratch, in its own process, as a mirror or site would run it."""
    run = run_timed([sys.executable, "-m", "gitreg", "verify", str(history.path), "--json"])
    report = json.loads(run.done.stdout) if run.done.stdout.strip() else {}
    if run.done.returncode != 0 or not report.get("valid"):
        raise RuntimeError(f"gitreg verify refused the {history.scheme} history:\n"
                           f"{run.done.stderr}")
    return Timing(f"gitreg verify ({history.scheme})", history.lists, run.wall, run.cpu)


# One whole process verifying a history with the pre-verification pool of
# ``mode``: how `gitreg verify` would run with each (it uses forked processes,
# gitreg/cli/verify_run.py).
_POOL_RUN = """
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from gitreg.gitstore.store import RegistryStore
from gitreg.verify.batch import Preverifier
from gitreg.model.dates import utcnow
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
path, mode = sys.argv[1:3]
context = VerifyContext.for_history(utcnow())
store = RegistryStore.open(path)
head = store.ref("refs/heads/main")
workers = os.cpu_count() or 1
if mode == "none":
    Verifier(store, MemoryCache(), context=context).verify_range(None, head)
else:
    pool = (ThreadPoolExecutor(workers) if mode == "threads" else
            ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")))
    with pool:
        Verifier(store, MemoryCache(), context=context,
                 preverify=Preverifier(pool)).verify_range(None, head)
"""
POOL_MODES = ("none", "threads", "processes")


def time_pool(history: History, mode: str) -> Timing:
    """The verifier with pre-verification on ``mode`` (or none), as a whole process."""
    run = run_timed([sys.executable, "-c", _POOL_RUN, str(history.path), mode])
    if run.done.returncode != 0:
        raise RuntimeError(f"verifying the {history.scheme} history with {mode} failed:\n"
                           f"{run.done.stderr}")
    return Timing(f"Verifier, pre-verification: {mode} ({history.scheme})", history.lists,
                  run.wall, run.cpu)


def median_run(run: Callable[[], Timing], times: int) -> Timing:
    """The run of median wall time among ``times`` runs (one noisy run does not decide)."""
    runs = sorted((run() for _ in range(max(1, times))), key=lambda t: t.wall)
    return runs[len(runs) // 2]


def openssl_verify(where: Path, ca_file: Path) -> Callable[[bytes, bytes], None]:
    """One `openssl smime -verify` process per list and its detached .sig."""
    data_file, sig_file = where / "list.json", where / "list.json.sig"

    def verify(data: bytes, signature: bytes) -> None:
        data_file.write_bytes(data)
        sig_file.write_bytes(signature)
        done = subprocess.run(["openssl", "smime", "-verify", "-binary", "-inform", "PEM",
                               "-in", str(sig_file), "-content", str(data_file), "-CAfile",
                               str(ca_file), "-no-CApath", "-no-CAstore", "-out", os.devnull],
                              capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"openssl smime -verify refused a list: {done.stderr!r}")

    return verify


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lists", type=int, default=10_000,
                        help="lists in the SSH and X.509 histories (default 10000)")
    parser.add_argument("--openpgp-lists", type=int, default=1_000,
                        help="lists in the OpenPGP history (default 1000: one gpg per list)")
    parser.add_argument("--baseline", type=int, default=200,
                        help="X.509 lists verified by one openssl process each (default 200)")
    parser.add_argument("--schemes", default="ssh,x509,openpgp",
                        help="comma-separated subset of ssh,x509,openpgp")
    parser.add_argument("--per-commit", type=int, default=BATCH,
                        help=f"lists per signed commit (default {BATCH}; 0: all in one)")
    parser.add_argument("--pools", action="store_true",
                        help="also time the verifier without pre-verification, with a "
                             "thread pool and with a process pool (whole processes)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each whole process this many times and show the median "
                             "run (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    per_commit = args.per_commit or max(args.lists, args.openpgp_lists)
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]

    from benchmarks.verify_signatures import make_gpg_key, make_x509
    from gitreg.signing.openpgp import OpenPGPSigner
    from gitreg.signing.x509 import X509PublicKey, X509Signer
    from tests.registry_simulator import ListEndorser, imagelist_bytes, new_id, ssh_signer

    timings: list[Timing] = []
    histories: list[History] = []
    with tempfile.TemporaryDirectory(prefix="gitreg-verify-bench-") as tmp:
        where = Path(tmp)
        material = make_x509(where / "x509")
        try:
            for scheme in schemes:
                if scheme == "ssh":
                    signer = ssh_signer("bench endorser")
                    history = build_history(where, "ssh", args.lists, list_signer=signer,
                                            commit_signer=signer,
                                            endorser_keys=[signer.public_key()],
                                            endorser_fields=None, per_commit=per_commit)
                elif scheme == "x509":
                    x509_signer = X509Signer(material.cert_pem, material.key_pem,
                                             ca_certs_pem=[material.ca_file.read_bytes()])
                    commits = ssh_signer("bench endorser commits")
                    keys = [X509PublicKey(material.dn, material.ca_dn,
                                          [material.ca_file.read_bytes()]),
                            commits.public_key()]
                    history = build_history(
                        where, "x509", args.lists, list_signer=x509_signer,
                        commit_signer=commits, endorser_keys=keys,
                        endorser_fields=ListEndorser(dn=material.dn, ca=material.ca_dn),
                        sample_size=args.baseline, per_commit=per_commit)
                elif scheme == "openpgp":
                    home = where / "gnupg"
                    fingerprint = make_gpg_key(home)
                    gpg_signer = OpenPGPSigner(fingerprint, gnupghome=str(home))
                    history = build_history(where, "openpgp", args.openpgp_lists,
                                            list_signer=gpg_signer, commit_signer=gpg_signer,
                                            endorser_keys=[gpg_signer.public_key()],
                                            endorser_fields=None, workers=4,
                                            per_commit=per_commit)
                else:
                    parser.error(f"unknown scheme {scheme!r}")
                say(f"{scheme}: {history.lists} lists built in {history.build_seconds:.1f} s")
                histories.append(history)

            sample = next((h.sample for h in histories if h.sample), [])
            if not sample:
                # The baseline needs X.509 lists even when that scheme is not timed.
                x509_signer = X509Signer(material.cert_pem, material.key_pem)
                now = datetime.now(UTC)
                for _ in range(args.baseline):
                    data = imagelist_bytes(new_id(), version="1", images=[new_id()],
                                           created=now, expires=now + timedelta(days=20),
                                           endorser=ListEndorser(material.dn, material.ca_dn))
                    sample.append((data, x509_signer.sign(data, namespace=NAMESPACE)))
            baseline = openssl_verify(where, material.ca_file)
            halves = [sample[0::2], sample[1::2]]
            baseline_wall = baseline_cpu = 0.0
            # Baseline, histories, baseline: both see the machine in the same state.
            for index in range(len(histories) + 2):
                if index in (0, len(histories) + 1):
                    part = halves[0 if index == 0 else 1]
                    wall0, cpu0 = time.perf_counter(), cpu_seconds()
                    for data, signature in part:
                        baseline(data, signature)
                    baseline_wall += time.perf_counter() - wall0
                    baseline_cpu += cpu_seconds() - cpu0
                else:
                    history = histories[index - 1]
                    timing = median_run(lambda h=history: time_verify(h), args.repeat)
                    say(f"{timing.what}: {timing.wall:.2f} s")
                    timings.append(timing)
                    for mode in POOL_MODES if args.pools and history.scheme != "openpgp" else ():
                        timing = median_run(lambda h=history, m=mode: time_pool(h, m),
                                            args.repeat)
                        say(f"{timing.what}: {timing.wall:.2f} s")
                        timings.append(timing)
        except RuntimeError as exc:
            say(str(exc))
            return 2

    base = Timing("openssl smime -verify, one process per list", len(sample), baseline_wall,
                  baseline_cpu)
    rows = []
    print(f"{'verification':<46} {'lists':>7} {'wall s':>8} {'lists/s':>9} {'CPU s':>7} "
          f"{'vs openssl':>11}")
    for timing in [*timings, base]:
        speedup = timing.rate / base.rate
        rows.append({"what": timing.what, "lists": timing.lists,
                     "wall_s": round(timing.wall, 2), "lists_per_s": round(timing.rate, 1),
                     "cpu_s": round(timing.cpu, 2), "vs_openssl": round(speedup, 2)})
        print(f"{timing.what:<46} {timing.lists:>7} {timing.wall:>8.2f} {timing.rate:>9.1f} "
              f"{timing.cpu:>7.2f} {speedup:>10.1f}x")
    print("(gitreg verify counts every commit, tree, list parse and signature of the "
          "history; the baseline only one signature per list)")
    result = {"rows": rows, "machine": machine(),
              "build_s": {h.scheme: round(h.build_seconds, 1) for h in histories}}
    print(json.dumps(result["machine"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
