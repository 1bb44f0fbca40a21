"""Everything the README's CLI tour uses, made in one directory (``scripts/tour-fixture``).

    python -m tests.tour.fixture DIR [--serve PORT]

creates in DIR: the interop samples the tour checks (``hepixvmitrust/``,
``cloudkeeper/``, ``bad-json/``), a test CA in IGTF layout
(``certificates/ca.pem`` and its ``<hash>.0`` link), the endorser's
certificate and key (``endorser.pem``, ``endorser.key``, issued by that CA
to the list's ``hv:dn``), someone else's (``other.pem``, ``other.key``),
``list.json`` and ``list.signed`` (signed by ``gitreg export``), SSH keys
in ``DIR/.ssh`` (``root1``, ``root2``, ``alice``, ``alice-laptop``; the tour runs with
HOME=DIR), git's identity in ``DIR/.gitconfig`` (Alice Endorser) and an
image file ``alma9.qcow2``. With ``--serve`` it then serves
DIR over HTTP on 127.0.0.1:PORT until interrupted. Keys are throwaway and
made fresh on every run.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from cryptography.x509.oid import NameOID

from tests.fixtures.x509_pki import DAY, NOW, build_certificate, dn, new_key, write_identity

DATA = Path(__file__).resolve().parents[1] / "data"
LIST_UUID = "0d3c9a3e-6f2b-4c1e-9a55-2f8e7f0b1c01"
IMAGE_UUID = "5b8f2c1d-3e4a-4f6b-8c7d-9e0f1a2b3c4d"
CA_NAME = dn((NameOID.DOMAIN_COMPONENT, "org"), (NameOID.DOMAIN_COMPONENT, "example"),
             (NameOID.COMMON_NAME, "Example CA"))
ENDORSER_NAME = dn((NameOID.DOMAIN_COMPONENT, "org"), (NameOID.DOMAIN_COMPONENT, "example"),
                   (NameOID.ORGANIZATION_NAME, "Hosts"),
                   (NameOID.COMMON_NAME, "images.example.org"))
OTHER_NAME = dn((NameOID.COMMON_NAME, "someone else"))
IMAGE_BYTES = b"QFI\xfb" + b"\x00" * 65_532  # a stand-in for a qcow2 image


def _imagelist() -> dict[str, object]:
    import hashlib

    return {"hv:imagelist": {
        "dc:date:created": "2026-01-01T00:00:00Z",
        "dc:date:expires": "2499-12-31T00:00:00Z",
        "dc:description": "Images of the Example VO",
        "dc:identifier": LIST_UUID,
        "dc:source": "https://images.example.org/",
        "dc:title": "Example VO images",
        "hv:endorser": {"hv:x509": {
            "dc:creator": "Example Images",
            "hv:ca": "/DC=org/DC=example/CN=Example CA",
            "hv:dn": "/DC=org/DC=example/O=Hosts/CN=images.example.org",
            "hv:email": "images@example.org"}},
        "hv:images": [{"hv:image": {
            "dc:description": "AlmaLinux 9 base image",
            "dc:identifier": IMAGE_UUID,
            "dc:title": "AlmaLinux 9",
            "hv:format": "qcow2",
            "hv:hypervisor": "QEMU-KVM",
            "hv:size": len(IMAGE_BYTES),
            "hv:uri": "https://images.example.org/alma9.qcow2",
            "hv:version": "9.4",
            "sl:arch": "x86_64",
            "sl:checksum:sha512": hashlib.sha512(IMAGE_BYTES).hexdigest(),
            "sl:comments": "",
            "sl:os": "Linux",
            "sl:osversion": "9.4"}}],
        "hv:uri": f"https://images.example.org/{LIST_UUID}.signed",
        "hv:version": "1"}}


def _certificates(out: Path) -> None:
    ca_key = new_key()
    ca_cert = build_certificate(CA_NAME, ca_key, issuer=None, ca=True,
                                not_before=NOW - 10 * DAY, not_after=NOW + 3650 * DAY)
    ca = write_identity(out / ".ca", "ca", ca_cert, ca_key)
    certificates = out / "certificates"
    certificates.mkdir()
    (certificates / "ca.pem").write_bytes(ca.cert_pem)
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in",
                             str(certificates / "ca.pem")], capture_output=True, text=True,
                            check=True).stdout.strip()
    (certificates / f"{digest}.0").symlink_to("ca.pem")
    for name, subject, issuer in (("endorser", ENDORSER_NAME, ca), ("other", OTHER_NAME, None)):
        key = new_key()
        cert = build_certificate(subject, key, issuer=issuer, not_after=NOW + 3650 * DAY)
        identity = write_identity(out / ".ca", name, cert, key)
        shutil.copy(identity.cert_path, out / f"{name}.pem")
        shutil.copy(identity.key_path, out / f"{name}.key")
    shutil.rmtree(out / ".ca")


def _ssh_keys(out: Path) -> None:
    ssh = out / ".ssh"
    ssh.mkdir(mode=0o700)
    for name in ("root1", "root2", "alice", "alice-laptop"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"{name}@example.org", "-f", str(ssh / name)], check=True)


def prepare(out: Path) -> Path:
    """Create the tour's files in ``out`` (which must be empty or absent)."""
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SystemExit(f"{out}: not empty")
    for sample in ("hepixvmitrust", "cloudkeeper"):
        shutil.copytree(DATA / "interop" / sample, out / sample, symlinks=True)
    shutil.copytree(DATA / "bad-json", out / "bad-json")
    _certificates(out)
    _ssh_keys(out)
    (out / "alma9.qcow2").write_bytes(IMAGE_BYTES)
    (out / ".gitconfig").write_text("[user]\n\tname = Alice Endorser\n"
                                    "\temail = alice@example.org\n", encoding="utf-8")
    (out / "list.json").write_text(json.dumps(_imagelist(), indent=4, sort_keys=True) + "\n",
                                   encoding="utf-8")
    subprocess.run([sys.executable, "-m", "gitreg", "export", "list.json", "--cert",
                    "endorser.pem", "--key", "endorser.key", "-o", "list.signed"],
                   cwd=out, check=True, capture_output=True)
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """Serve ``directory`` on 127.0.0.1 (``port`` 0: any free port) in a thread."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--serve", type=int, metavar="PORT",
                        help="then serve DIR on http://127.0.0.1:PORT/ until interrupted")
    args = parser.parse_args(argv)
    prepare(args.directory)
    print(f"tour files in {args.directory} (run the tour there with HOME={args.directory})",
          file=sys.stderr)
    if args.serve is not None:
        server = serve(args.directory, args.serve)
        print(f"serving http://127.0.0.1:{server.server_address[1]}/", file=sys.stderr)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
