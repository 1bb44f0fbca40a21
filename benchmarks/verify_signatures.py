"""Benchmark: in-process signature verification of imagelists vs `openssl smime -verify` (issue 2).

In ONE run, with keys generated at run time in a temporary directory:

  1. makes N distinct imagelists (canonical JSON, about 2.5 KB each, three images)
     and signs each with SSH Ed25519 (SSHSIG) and X.509 S/MIME (detached
     multipart/signed, RSA 2048 under a test CA, as vmcaster publishes), and a
     sample of them with OpenPGP (gpg, Ed25519);
  2. verifies them in-process, one list at a time, reading each file from disk
     as a site does:
       - SSH:     SSHPublicKey.verify
       - X.509:   verify_smime + check_binding (hv:dn/hv:ca), against a CAStore
                  read once from an IGTF-style CA directory
       - OpenPGP: OpenPGPPublicKey.verify (python-gnupg runs one gpg per signature)
  3. measures the baseline, how atrope and vmcatcher verify: one
     `openssl smime -verify -CAfile CA -no-CApath -no-CAstore` process per list.

The baseline (default 1,000 lists) and OpenPGP (default 1,000) run on samples
spread evenly over the N and are extrapolated per list; the output marks them.
The measurements are interleaved (a baseline list, then the next block of lists
for each in-process scheme) so that all see the same load on a shared machine.
Before timing, each verifier must accept list 0 and reject it with one byte
changed. Target: SSH and S/MIME at least 10x faster per list (mean wall time)
than the baseline; the medians and CPU times (children included) are shown too.

    .venv/bin/python benchmarks/verify_signatures.py                # N = 10,000, ~2 min
    .venv/bin/python benchmarks/verify_signatures.py --count 1000 --json result.json

Exit status: 0 if the target is met, 1 if not, 2 if a verifier gave a wrong answer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import cpu_seconds, machine, say

TARGET = 10.0
NAMESPACE = "gitreg-imagelist"


# --- the lists ---------------------------------------------------------------


def make_list(index: int, dn: str, ca: str) -> bytes:
    """One realistic list (three images), distinct per index, in canonical form."""
    from gitreg.model.strictjson import canonical_dumps

    ident = uuid.uuid5(uuid.NAMESPACE_URL, f"https://bench.example.org/lists/{index}")
    images = []
    for n in range(3):
        image_id = uuid.uuid5(ident, str(n))
        images.append({"hv:image": {
            "dc:description": f"Benchmark image {n} of list {index}",
            "dc:identifier": str(image_id),
            "dc:title": f"Bench OS {n}",
            "hv:format": "qcow2",
            "hv:hypervisor": "KVM",
            "hv:size": 2147483648 + index,
            "hv:uri": f"https://images.bench.example.org/{image_id}.qcow2",
            "hv:version": f"{index}.{n}",
            "sl:arch": "x86_64",
            "sl:checksum:sha512": f"{index:0128x}"[-128:],
            "sl:comments": "",
            "sl:os": "Linux",
            "sl:osname": "Debian",
            "sl:osversion": "12",
        }})
    return canonical_dumps({"hv:imagelist": {
        "dc:date:created": "2025-01-01T00:00:00Z",
        "dc:date:expires": "2499-12-31T00:00:00Z",
        "dc:description": f"Benchmark list {index}",
        "dc:identifier": str(ident),
        "dc:source": "https://bench.example.org/",
        "dc:title": f"Benchmark list {index}",
        "hv:endorser": {"hv:x509": {"dc:creator": "Benchmark Endorser", "hv:ca": ca,
                                    "hv:dn": dn, "hv:email": "bench@example.org"}},
        "hv:images": images,
        "hv:uri": f"https://bench.example.org/lists/{index}.json",
        "hv:version": str(index),
    }})


# --- keys, made at run time ------------------------------------------------------


@dataclass
class X509Material:
    ca_dir: Path
    ca_file: Path
    cert_pem: bytes
    key_pem: bytes
    dn: str
    ca_dn: str


def make_x509(where: Path) -> X509Material:
    """A root CA and an RSA 2048 endorser certificate (IGTF certificates are RSA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from gitreg.signing.x509 import certificate_dns

    now = datetime.now(UTC)

    def name(*cns: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
        return x509.Name([x509.NameAttribute(oid, value) for oid, value in cns])

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = name((NameOID.DOMAIN_COMPONENT, "org"), (NameOID.DOMAIN_COMPONENT, "example"),
                   (NameOID.COMMON_NAME, "Benchmark CA"))
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                            False, False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = name((NameOID.DOMAIN_COMPONENT, "org"), (NameOID.DOMAIN_COMPONENT, "example"),
                   (NameOID.ORGANIZATION_NAME, "Hosts"),
                   (NameOID.COMMON_NAME, "benchmark endorser"))
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False,
                                         False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    ca_dir = where / "certificates"
    ca_dir.mkdir(parents=True)
    (ca_dir / "benchmark-ca.pem").write_bytes(ca_pem)
    digest = subprocess.run(["openssl", "x509", "-noout", "-subject_hash", "-in",
                             str(ca_dir / "benchmark-ca.pem")], check=True,
                            capture_output=True, text=True).stdout.strip()
    (ca_dir / f"{digest}.0").symlink_to("benchmark-ca.pem")
    ca_file = where / "ca.pem"
    ca_file.write_bytes(ca_pem)
    dn, ca_dn = certificate_dns(cert)
    return X509Material(ca_dir, ca_file, cert.public_bytes(serialization.Encoding.PEM),
                        key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), dn, ca_dn)


def make_gpg_key(home: Path) -> str:
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "",
                    "--quick-gen-key", "Benchmark Endorser <bench@example.org>", "ed25519",
                    "sign", "never"], check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--with-colons",
                              "--list-secret-keys"], check=True, capture_output=True,
                             text=True).stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))


# --- measuring --------------------------------------------------------------------


@dataclass
class Measure:
    """Wall-clock and CPU time (this process and its children) of each verification."""

    scheme: str
    method: str
    population: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def timed(self, verify_one: Callable[[int], None], index: int) -> None:
        w0, c0 = time.perf_counter(), cpu_seconds()
        verify_one(index)
        self.wall.append(time.perf_counter() - w0)
        self.cpu.append(cpu_seconds() - c0)

    @property
    def verified(self) -> int:
        return len(self.wall)

    @property
    def mean(self) -> float:
        return sum(self.wall) / self.verified

    @property
    def cpu_mean(self) -> float:
        return sum(self.cpu) / self.verified

    @property
    def sampled(self) -> bool:
        return self.verified < self.population

    def row(self, baseline: Measure | None) -> dict[str, object]:
        return {
            "scheme": self.scheme,
            "method": self.method,
            "lists_verified": self.verified,
            "lists_generated": self.population,
            "sampled": self.sampled,
            "seconds": round(sum(self.wall), 3),
            "lists_per_second": round(1 / self.mean, 1),
            "per_list_ms_mean": round(self.mean * 1e3, 4),
            "per_list_ms_median": round(statistics.median(self.wall) * 1e3, 4),
            "per_list_ms_p99": round(percentile(self.wall, 0.99) * 1e3, 4),
            "per_list_cpu_ms_mean": round(self.cpu_mean * 1e3, 4),
            "seconds_for_all_extrapolated": round(self.mean * self.population, 2),
            "speedup_vs_baseline": None if baseline is None
            else round(baseline.mean / self.mean, 1),
            "median_speedup_vs_baseline": None if baseline is None
            else round(statistics.median(baseline.wall) / statistics.median(self.wall), 1),
            "cpu_speedup_vs_baseline": None if baseline is None
            else round(baseline.cpu_mean / self.cpu_mean, 1),
        }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(count: int, sample: int) -> list[int]:
    """``sample`` indices spread evenly over ``range(count)``."""
    if sample >= count:
        return list(range(count))
    return [i * count // sample for i in range(sample)]


# --- the run ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000,
                        help="lists per scheme (default 10000)")
    parser.add_argument("--baseline-sample", type=int, default=1000,
                        help="lists verified by one openssl process each (default 1000)")
    parser.add_argument("--openpgp-count", type=int, default=1000,
                        help="OpenPGP lists signed and verified, gpg being one process "
                             "per signature (default 1000; 0 skips OpenPGP)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.count < 1 or args.baseline_sample < 1 or args.openpgp_count < 0:
        parser.error("--count and --baseline-sample must be positive")

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gitreg.errors import GitregError
    from gitreg.interop.smime import sign_smime, verify_smime
    from gitreg.signing.openpgp import OpenPGPSigner
    from gitreg.signing.ssh import SSHSigner
    from gitreg.signing.x509 import CAStore, X509Signer, check_binding

    info = machine()
    now = datetime.now(UTC)
    tmp = Path(tempfile.mkdtemp(prefix="gitreg-bench-"))
    n = args.count
    try:
        say(f"working in {tmp}; making keys")
        x509m = make_x509(tmp / "x509-keys")
        x509_signer = X509Signer(x509m.cert_pem, x509m.key_pem)
        ssh = SSHSigner(Ed25519PrivateKey.generate(), "benchmark")
        ssh_key = ssh.public_key()

        say(f"writing and signing {n} lists (SSH, S/MIME) ...")
        t0 = time.perf_counter()
        for scheme in ("ssh", "x509"):
            (tmp / scheme).mkdir()
        for i in range(n):
            body = make_list(i, x509m.dn, x509m.ca_dn)
            (tmp / "ssh" / f"{i:05d}.json").write_bytes(body)
            (tmp / "ssh" / f"{i:05d}.json.sig").write_bytes(ssh.sign(body, namespace=NAMESPACE))
            (tmp / "x509" / f"{i:05d}.signed").write_bytes(sign_smime(body, x509_signer))
        say(f"  done in {time.perf_counter() - t0:.1f} s")

        pgp_n = min(args.openpgp_count, n)
        pgp_key = None
        if pgp_n:
            say(f"signing {pgp_n} lists with gpg ...")
            t0 = time.perf_counter()
            home = tmp / "gnupg"
            pgp = OpenPGPSigner(make_gpg_key(home), str(home))
            pgp_key = pgp.public_key()
            (tmp / "openpgp").mkdir()
            for i in spread(n, pgp_n):
                body = (tmp / "ssh" / f"{i:05d}.json").read_bytes()
                (tmp / "openpgp" / f"{i:05d}.json.sig").write_bytes(
                    pgp.sign(body, namespace=NAMESPACE))
            say(f"  done in {time.perf_counter() - t0:.1f} s")

        # --- verification ----------------------------------------------------------
        def verify_ssh(i: int) -> None:
            path = tmp / "ssh" / f"{i:05d}.json"
            ssh_key.verify(path.read_bytes(), (tmp / "ssh" / f"{i:05d}.json.sig").read_bytes(),
                           namespace=NAMESPACE, at=now)

        # Loaded once, as a sync verifying many lists holds its trust store; every
        # openssl process of the baseline reads its CA file again.
        store = CAStore.from_directory(x509m.ca_dir)

        def verify_x509(i: int) -> None:
            message = (tmp / "x509" / f"{i:05d}.signed").read_bytes()
            _, signer = verify_smime(message, store, at=now)
            check_binding(signer, dn=x509m.dn, ca=x509m.ca_dn)

        def verify_pgp(i: int) -> None:
            assert pgp_key is not None
            pgp_key.verify((tmp / "ssh" / f"{i:05d}.json").read_bytes(),
                           (tmp / "openpgp" / f"{i:05d}.json.sig").read_bytes(),
                           namespace=NAMESPACE, at=now)

        baseline_cmd = ["openssl", "smime", "-verify", "-CAfile", str(x509m.ca_file),
                        "-no-CApath", "-no-CAstore", "-out", os.devnull, "-in"]

        def verify_openssl(i: int) -> None:
            result = subprocess.run([*baseline_cmd, str(tmp / "x509" / f"{i:05d}.signed")],
                                    capture_output=True, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"openssl rejected list {i}: {result.stderr!r}")

        # Wrong answers void the run: each verifier must reject a tampered list.
        say("checking that every verifier rejects a tampered list ...")
        wrong = tampering_checks(tmp, verify_ssh=verify_ssh, verify_x509=verify_x509,
                                 verify_pgp=verify_pgp if pgp_n else None,
                                 verify_openssl=verify_openssl, gitreg_error=GitregError)
        if wrong:
            for line in wrong:
                say(f"WRONG ANSWER: {line}")
            return 2

        # Interleaved: after each baseline list, the in-process verifiers take the
        # block of lists up to the next one, so all see the same machine load.
        sample = spread(n, min(args.baseline_sample, n))
        pgp_sample = set(spread(n, pgp_n)) if pgp_n else set()
        ssh_m = Measure("SSH Ed25519", "in-process SSHPublicKey.verify", n)
        x509_m = Measure("X.509 S/MIME", "in-process verify_smime + check_binding", n)
        pgp_m = Measure("OpenPGP Ed25519", "gpg via OpenPGPPublicKey.verify", n)
        baseline = Measure("X.509 S/MIME", "one `openssl smime -verify` process per list "
                           "(baseline)", n)
        say(f"verifying {n} SSH and {n} S/MIME lists in-process, {len(pgp_sample)} OpenPGP "
            f"lists with gpg and {len(sample)} with one openssl process each, interleaved ...")
        bounds = [*sample, n]
        for block, first in enumerate(sample):
            baseline.timed(verify_openssl, first)
            # One scheme at a time over the block, as a sync verifies its lists.
            chunk = range(first, bounds[block + 1])
            for i in chunk:
                ssh_m.timed(verify_ssh, i)
            for i in chunk:
                x509_m.timed(verify_x509, i)
            for i in chunk:
                if i in pgp_sample:
                    pgp_m.timed(verify_pgp, i)
        measures = [ssh_m, x509_m] + ([pgp_m] if pgp_sample else [])

        rows = [m.row(baseline) for m in measures] + [baseline.row(None)]
        targets = {m.scheme: m.row(baseline)["speedup_vs_baseline"] for m in measures
                   if m.scheme in ("SSH Ed25519", "X.509 S/MIME")}
        passed = all(isinstance(v, float) and v >= TARGET for v in targets.values())
        report(rows, targets, passed=passed, info=info, n=n, baseline_cmd=baseline_cmd)
        if args.json:
            args.json.write_text(json.dumps({
                "machine": info, "count": n, "rows": rows, "target": TARGET,
                "passed": passed, "baseline_command": " ".join(baseline_cmd) + " FILE",
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }, indent=2) + "\n", encoding="utf-8")
        return 0 if passed else 1
    finally:
        pgp_home = tmp / "gnupg"
        if pgp_home.exists():
            subprocess.run(["gpgconf", "--homedir", str(pgp_home), "--kill", "gpg-agent"],
                           capture_output=True, check=False)
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def tampering_checks(tmp: Path, *, verify_ssh: Callable[[int], None],
                     verify_x509: Callable[[int], None],
                     verify_pgp: Callable[[int], None] | None,
                     verify_openssl: Callable[[int], None],
                     gitreg_error: type[Exception]) -> list[str]:
    """Verify list 0 as signed (must pass), then with one byte changed (must fail)."""
    wrong = []
    checks: list[tuple[str, Callable[[int], None], list[Path], type[Exception]]] = [
        ("SSH", verify_ssh, [tmp / "ssh" / "00000.json"], gitreg_error),
        ("S/MIME", verify_x509, [tmp / "x509" / "00000.signed"], gitreg_error),
        ("openssl", verify_openssl, [tmp / "x509" / "00000.signed"], RuntimeError),
    ]
    if verify_pgp is not None:
        checks.append(("OpenPGP", verify_pgp, [tmp / "ssh" / "00000.json"], gitreg_error))
    for label, verify, paths, expected in checks:
        try:
            verify(0)
        except Exception as exc:  # noqa: BLE001 (any failure here is a wrong answer)
            wrong.append(f"{label} rejected an untouched list: {exc}")
            continue
        for path in paths:
            original = path.read_bytes()
            path.write_bytes(original.replace(b"Benchmark list 0", b"Benchmark list O", 1))
            try:
                verify(0)
                wrong.append(f"{label} accepted a tampered list")
            except expected:
                pass
            finally:
                path.write_bytes(original)
    return wrong


def report(rows: list[dict[str, object]], targets: dict[str, object], *, passed: bool,
           info: dict[str, str], n: int, baseline_cmd: list[str]) -> None:
    print(f"Signature verification of {n} imagelists per scheme, one list at a time")
    print(f"machine: {info['cores']} CPUs, {info['cpu']}; Python {info['python']}, "
          f"cryptography {info['cryptography']}, {info['openssl']}, {info['gpg']}")
    print()
    header = (f"{'scheme':<16} {'verified':>9} {'lists/s':>9} {'ms/list':>8} "
              f"{'median':>7} {'p99':>7} {'cpu ms':>7} {'all N s':>8} "
              f"{'speedup':>8} {'(median)':>8} {'(cpu)':>6}  method")
    print(header)
    print("-" * len(header))
    for row in rows:
        verified = f"{row['lists_verified']}{'*' if row['sampled'] else ''}"

        def times(key: str, row: dict[str, object] = row) -> str:
            value = row[key]
            return "" if value is None else f"{value}x"

        print(f"{row['scheme']:<16} {verified:>9} {row['lists_per_second']:>9} "
              f"{row['per_list_ms_mean']:>8.3f} {row['per_list_ms_median']:>7.3f} "
              f"{row['per_list_ms_p99']:>7.3f} {row['per_list_cpu_ms_mean']:>7.3f} "
              f"{row['seconds_for_all_extrapolated']:>8} "
              f"{times('speedup_vs_baseline'):>8} {times('median_speedup_vs_baseline'):>8} "
              f"{times('cpu_speedup_vs_baseline'):>6}  {row['method']}")
    print()
    print("* sampled: lists spread evenly over the N; 'all N s' extrapolates the mean "
          "per-list time to N lists.")
    print("speedup = baseline mean wall time per list / this mean (the target); "
          "(median) and (cpu) compare medians and CPU time (with child processes).")
    print(f"baseline command: {' '.join(baseline_cmd)} FILE")
    for scheme, speedup in targets.items():
        verdict = "PASS" if isinstance(speedup, float) and speedup >= TARGET else "FAIL"
        print(f"{verdict}: {scheme} is {speedup}x faster than the baseline "
              f"(target >= {TARGET:g}x)")
    print("RESULT:", "PASS" if passed else "FAIL")


if __name__ == "__main__":
    sys.exit(main())
