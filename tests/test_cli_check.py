"""`gitreg check` as a user runs it: the bad-input corpus, --json, and signed lists.

Signed lists are made by the real `openssl smime -sign` with the session test
PKI (tests/fixtures/x509_pki.py); the CLI runs in a subprocess.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.env import RunCli
from tests.fixtures.x509_pki import Identity, TestPKI, openssl_hash

CORPUS = Path(__file__).parent / "data" / "bad-json"
EXPECTED: dict[str, list[list[str]]] = json.loads(
    (CORPUS / "expected.json").read_text(encoding="utf-8"))["files"]


def endorsed_list(identity: Identity | None = None, *, expires: str = "2499-12-31T00:00:00Z",
                  title: str = "Débian 12 ☁", images: int = 1) -> dict[str, Any]:
    """A valid list whose endorser is ``identity`` (its subject and issuer in slash form)."""
    doc: dict[str, Any] = json.loads((CORPUS / "base-valid.json").read_text(encoding="utf-8"))
    body = doc["hv:imagelist"]
    body["dc:date:expires"] = expires
    body["dc:title"] = title
    if identity is not None:
        body["hv:endorser"]["hv:x509"]["hv:dn"] = identity.dn
        body["hv:endorser"]["hv:x509"]["hv:ca"] = identity.ca_dn
    template = body["hv:images"][0]["hv:image"]
    body["hv:images"] = [{"hv:image": {**template, "dc:identifier":
                                       f"5b2a9e60-0a8e-4f43-8a3b-3b2f6f4c2d{i:02d}"}}
                         for i in range(images)]
    return doc


def write_list(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def openssl_sign(identity: Identity, content: Path, out: Path, *extra: str) -> Path:
    """Sign as vmcaster does: `openssl smime -sign`, detached multipart/signed."""
    subprocess.run(["openssl", "smime", "-sign", "-signer", str(identity.cert_path),
                    "-inkey", str(identity.key_path), "-in", str(content), "-out", str(out),
                    *extra], check=True, capture_output=True)
    return out


# --- the bad-input corpus --------------------------------------------------------


def test_corpus_control_file_is_valid(run_cli: RunCli) -> None:
    result = run_cli(["check", CORPUS / "base-valid.json"])
    assert result.returncode == 0, result.stderr
    assert "OK:" in result.stderr
    assert "0d3c9a3e-6f2b-4c1e-9a55-2f8e7f0b1c01" in result.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_is_rejected_with_its_key_path(run_cli: RunCli, name: str) -> None:
    result = run_cli(["check", CORPUS / name])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    lines = result.stderr.splitlines()
    for path, message in EXPECTED[name]:
        prefix = f"  {path}: " if path else "  "
        assert any(line.startswith(prefix) and message in line for line in lines), (
            f"{name}: no line for {path!r} ~ {message!r} in:\n{result.stderr}")


def test_every_problem_is_printed_and_json_carries_them(run_cli: RunCli) -> None:
    result = run_cli(["check", "--json", CORPUS / "wrong-types.json"])
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    got = [(p["path"], p["message"]) for p in report["problems"]]
    for path, message in EXPECTED["wrong-types.json"]:
        assert any(p == path and message in m for p, m in got), got
        assert path in result.stderr
    assert len(got) == len(EXPECTED["wrong-types.json"])
    assert f"({len(got)} problems)" in result.stderr


def test_ten_megabyte_file_is_rejected_by_size(run_cli: RunCli, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    padding = "x" * (10 * 1024 * 1024)
    big.write_text('{"hv:imagelist": {"dc:description": "' + padding + '"}}',
                   encoding="ascii")
    result = run_cli(["check", "--json", big])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["problems"] == [{"path": "", "message": report["problems"][0]["message"]}]
    assert f"file is {big.stat().st_size} bytes, over the limit of 1048576" in result.stderr


def test_max_size_is_configurable(run_cli: RunCli) -> None:
    result = run_cli(["check", "--max-size", "200", CORPUS / "base-valid.json"])
    assert result.returncode == 1
    assert "over the limit of 200" in result.stderr


def test_json_report_of_a_valid_list(run_cli: RunCli, tmp_path: Path) -> None:
    listed = write_list(tmp_path / "list.json", endorsed_list(images=2))
    result = run_cli(["check", "--json", listed])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["problems"] == []
    assert report["signed"] is False
    assert report["signature_verified"] is False
    assert report["imagelist"]["title"] == "Débian 12 ☁"
    assert [i["identifier"][-2:] for i in report["imagelist"]["images"]] == ["00", "01"]


def test_expired_list_is_reported_expired(run_cli: RunCli, tmp_path: Path) -> None:
    listed = write_list(tmp_path / "old.json",
                        endorsed_list(expires="2024-06-01T00:00:00Z"))
    result = run_cli(["check", "--json", listed])
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["expired"] is True
    assert report["problems"][0]["path"] == "hv:imagelist.dc:date:expires"
    assert "expired at 2024-06-01T00:00:00Z" in result.stderr


def test_legacy_list_without_wrapper_passes_with_a_warning(run_cli: RunCli,
                                                           tmp_path: Path) -> None:
    legacy = write_list(tmp_path / "legacy.json", endorsed_list()["hv:imagelist"])
    result = run_cli(["check", legacy])
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr
    assert "legacy form" in result.stderr


# --- signed lists ------------------------------------------------------------------


def test_openssl_signed_list_passes_check_with_ca_dir(run_cli: RunCli, x509_pki: TestPKI,
                                                      tmp_path: Path) -> None:
    alice = x509_pki.alice
    content = write_list(tmp_path / "list.json", endorsed_list(alice))
    signed = openssl_sign(alice, content, tmp_path / "list.signed")
    result = run_cli(["check", "--json", "--ca-dir", x509_pki.ca_dir, signed])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["signature_verified"] is True
    assert report["signer"] == {"dn": alice.dn, "ca": alice.ca_dn}
    assert report["imagelist"]["content"] == json.loads(content.read_text(encoding="utf-8"))
    assert f"signed by {alice.dn}" in result.stderr


@pytest.mark.parametrize("variant", [["-md", "sha512"], ["-text"], ["-nodetach"]],
                         ids=["sha512", "text-part", "opaque"])
def test_openssl_signing_variants_pass(run_cli: RunCli, x509_pki: TestPKI, tmp_path: Path,
                                       variant: list[str]) -> None:
    bob = x509_pki.bob  # RSA, issued by the root
    content = write_list(tmp_path / "list.json", endorsed_list(bob))
    signed = openssl_sign(bob, content, tmp_path / "list.signed", *variant)
    result = run_cli(["check", "--ca-dir", x509_pki.ca_dir, signed])
    assert result.returncode == 0, result.stderr
    assert f"signed by {bob.dn}" in result.stderr


def test_signed_list_without_ca_dir_is_checked_but_not_trusted(
        run_cli: RunCli, x509_pki: TestPKI, tmp_path: Path) -> None:
    content = write_list(tmp_path / "list.json", endorsed_list(x509_pki.alice))
    signed = openssl_sign(x509_pki.alice, content, tmp_path / "list.signed")
    result = run_cli(["check", "--json", signed])
    assert result.returncode == 0, result.stderr
    assert "signature not verified" in result.stderr
    report = json.loads(result.stdout)
    assert (report["signed"], report["signature_verified"]) == (True, False)


def test_tampered_signed_list_fails(run_cli: RunCli, x509_pki: TestPKI,
                                    tmp_path: Path) -> None:
    content = write_list(tmp_path / "list.json", endorsed_list(x509_pki.alice))
    signed = openssl_sign(x509_pki.alice, content, tmp_path / "list.signed")
    raw = signed.read_bytes()
    signed.write_bytes(raw.replace(b'"hv:size": 1024', b'"hv:size": 1025', 1))
    assert signed.read_bytes() != raw
    result = run_cli(["check", "--ca-dir", x509_pki.ca_dir, signed])
    assert result.returncode == 1
    assert "bad signature" in result.stderr
    assert "message digest does not match" in result.stderr


def test_unsigned_list_with_ca_dir_fails(run_cli: RunCli, x509_pki: TestPKI,
                                         tmp_path: Path) -> None:
    content = write_list(tmp_path / "list.json", endorsed_list(x509_pki.alice))
    result = run_cli(["check", "--ca-dir", x509_pki.ca_dir, content])
    assert result.returncode == 1
    assert "not signed" in result.stderr


def test_signer_who_is_not_the_endorser_is_rejected(run_cli: RunCli, x509_pki: TestPKI,
                                                    tmp_path: Path) -> None:
    # bob signs alice's list: a valid chain, the wrong endorser.
    content = write_list(tmp_path / "list.json", endorsed_list(x509_pki.alice))
    signed = openssl_sign(x509_pki.bob, content, tmp_path / "list.signed")
    result = run_cli(["check", "--ca-dir", x509_pki.ca_dir, signed])
    assert result.returncode == 1
    assert "hv:imagelist.hv:endorser.hv:x509: untrusted signer" in result.stderr
    assert x509_pki.bob.dn in result.stderr
    assert x509_pki.alice.dn in result.stderr


def _system_store(tmp_path: Path, *bundles: Path) -> dict[str, str]:
    """An environment whose OpenSSL default trust store is exactly ``bundles``."""
    cert_dir = tmp_path / "system-certs"
    cert_dir.mkdir()
    bundle = tmp_path / "system-bundle.pem"
    bundle.write_bytes(b"".join(b.read_bytes() for b in bundles))
    for index, source in enumerate(bundles):
        copy = cert_dir / f"ca{index}.pem"
        shutil.copyfile(source, copy)
        (cert_dir / f"{openssl_hash(copy)}.0").symlink_to(copy.name)
    return {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(cert_dir)}


def _openssl_default_store_accepts(signed: Path, env: dict[str, str]) -> bool:
    import os

    result = subprocess.run(["openssl", "smime", "-verify", "-in", str(signed),
                             "-out", os.devnull], env={**os.environ, **env},
                            capture_output=True, check=False)
    return result.returncode == 0


def test_rogue_ca_is_rejected_even_when_the_system_store_trusts_it(
        run_cli: RunCli, x509_pki: TestPKI, tmp_path: Path) -> None:
    # mallory has alice's DN under a rogue CA named like the issuing CA.
    mallory = x509_pki.mallory
    content = write_list(tmp_path / "list.json", endorsed_list(x509_pki.alice))
    signed = openssl_sign(mallory, content, tmp_path / "list.signed")
    env = _system_store(tmp_path, x509_pki.rogue_file)
    assert _openssl_default_store_accepts(signed, env)
    result = run_cli(["check", "--ca-dir", x509_pki.ca_dir, signed], env=env)
    assert result.returncode == 1
    assert "untrusted signer" in result.stderr
    assert "Traceback" not in result.stderr


def test_revoked_signer_is_rejected_even_when_the_system_store_trusts_it(
        run_cli: RunCli, x509_pki: TestPKI, tmp_path: Path) -> None:
    revoked = x509_pki.revoked
    content = write_list(tmp_path / "list.json", endorsed_list(revoked))
    signed = openssl_sign(revoked, content, tmp_path / "list.signed")
    env = _system_store(tmp_path, x509_pki.root.cert_path, x509_pki.issuing.cert_path)
    assert _openssl_default_store_accepts(signed, env)
    result = run_cli(["check", "--ca-dir", x509_pki.ca_dir, signed], env=env)
    assert result.returncode == 1
    assert "revoked" in result.stderr
    assert revoked.dn in result.stderr


def test_expired_signer_certificate_is_rejected(run_cli: RunCli, x509_pki: TestPKI,
                                                tmp_path: Path) -> None:
    expired = x509_pki.expired
    content = write_list(tmp_path / "list.json", endorsed_list(expired))
    signed = openssl_sign(expired, content, tmp_path / "list.signed")
    result = run_cli(["check", "--ca-dir", x509_pki.ca_dir, signed])
    assert result.returncode == 1
    assert "untrusted signer" in result.stderr
    assert "expired" in result.stderr
