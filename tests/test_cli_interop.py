"""`gitreg import` and `gitreg export` as a user runs them, against the real openssl.

Exported lists must satisfy `openssl smime -verify` (vmcatcher's verifier);
imports are fail-closed: whatever is wrong, the output file is not written.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.env import RunCli
from tests.fixtures.image_server import ImageServer
from tests.fixtures.x509_pki import Identity, TestPKI
from tests.test_cli_check import endorsed_list, openssl_sign, write_list


def export(run_cli: RunCli, identity: Identity, content: Path, out: Path,
           signer: Identity | None = None) -> subprocess.CompletedProcess[str]:
    who = signer or identity
    return run_cli(["export", content, "--cert", who.cert_path, "--key", who.key_path,
                    "-o", out])


def canonical(doc: dict[str, object]) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=4) + "\n").encode()


@pytest.fixture
def alice_list(x509_pki: TestPKI, tmp_path: Path) -> Path:
    return write_list(tmp_path / "alice.json", endorsed_list(x509_pki.alice, images=2))


# --- export ----------------------------------------------------------------------


def test_exported_list_passes_openssl_smime_verify(run_cli: RunCli, x509_pki: TestPKI,
                                                   alice_list: Path, tmp_path: Path) -> None:
    signed = tmp_path / "alice.signed"
    result = export(run_cli, x509_pki.alice, alice_list, signed)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert signed.read_bytes().startswith(b"MIME-Version: 1.0\n")
    payload = tmp_path / "payload"
    # -no-CApath -no-CAstore: the CA file is the only trust (OpenSSL 3.0 knows both).
    verify = subprocess.run(["openssl", "smime", "-verify", "-in", str(signed), "-CAfile",
                             str(x509_pki.ca_file), "-no-CApath", "-no-CAstore",
                             "-out", str(payload)], capture_output=True, text=True,
                            check=False)
    assert verify.returncode == 0, verify.stderr
    assert "Verification successful" in verify.stderr
    expected = canonical(json.loads(alice_list.read_text(encoding="utf-8")))
    assert payload.read_bytes().replace(b"\r\n", b"\n") == expected


def test_openssl_rejects_an_export_under_a_ca_it_does_not_trust(
        run_cli: RunCli, x509_pki: TestPKI, alice_list: Path, tmp_path: Path) -> None:
    # The control for the test above: the same verify with only the rogue CA fails.
    signed = tmp_path / "alice.signed"
    assert export(run_cli, x509_pki.alice, alice_list, signed).returncode == 0
    verify = subprocess.run(["openssl", "smime", "-verify", "-in", str(signed), "-CAfile",
                             str(x509_pki.rogue_file), "-no-CApath", "-no-CAstore",
                             "-out", os.devnull], capture_output=True, check=False)
    assert verify.returncode != 0


def test_export_to_stdout_then_check_and_import(run_cli: RunCli, x509_pki: TestPKI,
                                                alice_list: Path, tmp_path: Path) -> None:
    result = run_cli(["export", alice_list, "--cert", x509_pki.alice.cert_path,
                      "--key", x509_pki.alice.key_path])
    assert result.returncode == 0, result.stderr
    signed = tmp_path / "from-stdout.signed"
    signed.write_text(result.stdout, encoding="utf-8")
    checked = run_cli(["check", "--ca-dir", x509_pki.ca_dir, signed])
    assert checked.returncode == 0, checked.stderr
    assert f"signed by {x509_pki.alice.dn}" in checked.stderr
    out = tmp_path / "imported.json"
    imported = run_cli(["import", signed, "--ca-dir", x509_pki.ca_dir, "-o", out])
    assert imported.returncode == 0, imported.stderr
    assert out.read_bytes() == canonical(json.loads(alice_list.read_text(encoding="utf-8")))


def test_export_refuses_a_certificate_that_is_not_the_endorser(
        run_cli: RunCli, x509_pki: TestPKI, alice_list: Path, tmp_path: Path) -> None:
    out = tmp_path / "bob.signed"
    result = export(run_cli, x509_pki.alice, alice_list, out, signer=x509_pki.bob)
    assert result.returncode == 1
    assert "refusing to sign" in result.stderr
    assert x509_pki.bob.dn in result.stderr
    assert x509_pki.alice.dn in result.stderr
    assert not out.exists()


def test_export_refuses_a_key_of_another_certificate(run_cli: RunCli, x509_pki: TestPKI,
                                                     alice_list: Path, tmp_path: Path) -> None:
    out = tmp_path / "mixed.signed"
    result = run_cli(["export", alice_list, "--cert", x509_pki.alice.cert_path,
                      "--key", x509_pki.bob.key_path, "-o", out])
    assert result.returncode == 2
    assert "does not belong to certificate" in result.stderr
    assert not out.exists()


def test_export_of_a_non_certificate_is_a_usage_error(run_cli: RunCli, x509_pki: TestPKI,
                                                      alice_list: Path) -> None:
    result = run_cli(["export", alice_list, "--cert", alice_list,
                      "--key", x509_pki.alice.key_path])
    assert result.returncode == 2
    assert "not a PEM certificate" in result.stderr
    assert "Traceback" not in result.stderr


# --- import: the good paths ------------------------------------------------------------


def test_import_of_an_openssl_signed_list_writes_canonical_json(
        run_cli: RunCli, x509_pki: TestPKI, alice_list: Path, tmp_path: Path) -> None:
    signed = openssl_sign(x509_pki.alice, alice_list, tmp_path / "alice.signed")
    out = tmp_path / "out.json"
    result = run_cli(["import", signed, "--ca-dir", x509_pki.ca_dir, "-o", out])
    assert result.returncode == 0, result.stderr
    assert f"written to {out}" in result.stderr
    assert out.read_bytes() == canonical(json.loads(alice_list.read_text(encoding="utf-8")))


def test_import_from_a_url(run_cli: RunCli, x509_pki: TestPKI, alice_list: Path,
                           tmp_path: Path, image_server: ImageServer) -> None:
    signed = openssl_sign(x509_pki.alice, alice_list, tmp_path / "alice.signed")
    url = image_server.serve("/lists/alice.signed", signed.read_bytes())
    result = run_cli(["import", url, "--ca-dir", x509_pki.ca_dir])
    assert result.returncode == 0, result.stderr
    assert result.stdout.encode() == canonical(
        json.loads(alice_list.read_text(encoding="utf-8")))
    assert len(image_server.hits("/lists/alice.signed")) == 1


def test_import_over_https_verifies_the_server(run_cli: RunCli, x509_pki: TestPKI,
                                               alice_list: Path, tmp_path: Path,
                                               https_image_server: ImageServer) -> None:
    signed = openssl_sign(x509_pki.alice, alice_list, tmp_path / "alice.signed")
    url = https_image_server.serve("/alice.signed", signed.read_bytes())
    out = tmp_path / "out.json"
    untrusted = run_cli(["import", url, "--ca-dir", x509_pki.ca_dir, "-o", out])
    assert untrusted.returncode == 3
    assert "TLS verification failed" in untrusted.stderr
    assert not out.exists()
    trusted = run_cli(["import", url, "--ca-dir", x509_pki.ca_dir, "-o", out],
                      env={"REQUESTS_CA_BUNDLE": str(https_image_server.ca_file)})
    assert trusted.returncode == 0, trusted.stderr
    assert out.exists()


# --- import: fail-closed -----------------------------------------------------------


def _signed_by(x509_pki: TestPKI, tmp_path: Path, case: str) -> Path:
    """A signed list that must not be imported, for each way it can be wrong."""
    alice = x509_pki.alice
    content = write_list(tmp_path / "content.json", endorsed_list(alice))
    signed = tmp_path / f"{case}.signed"
    if case == "tampered":
        openssl_sign(alice, content, signed)
        signed.write_bytes(signed.read_bytes().replace(b"an image", b"an 1mage", 1))
    elif case == "rogue":
        openssl_sign(x509_pki.mallory, content, signed)
    elif case == "revoked":
        write_list(content, endorsed_list(x509_pki.revoked))
        openssl_sign(x509_pki.revoked, content, signed)
    elif case == "not-endorser":
        openssl_sign(x509_pki.bob, content, signed)
    elif case == "expired-list":
        write_list(content, endorsed_list(alice, expires="2025-01-01T00:00:00Z"))
        openssl_sign(alice, content, signed)
    elif case == "unsigned":
        signed.write_bytes(content.read_bytes())
    elif case == "invalid-list":
        doc = endorsed_list(alice)
        del doc["hv:imagelist"]["dc:title"]
        write_list(content, doc)
        openssl_sign(alice, content, signed)
    else:
        raise AssertionError(case)
    return signed


FAIL_CLOSED = {
    "tampered": "message digest does not match",
    "rogue": "is not signed by the key of the CA",
    "revoked": "revoked",
    "not-endorser": "but the list names the endorser",
    "expired-list": "expired at 2025-01-01T00:00:00Z",
    "unsigned": "not an S/MIME-signed list",
    "invalid-list": "hv:imagelist.dc:title: missing required key",
}


@pytest.mark.parametrize("case", sorted(FAIL_CLOSED))
def test_import_fails_closed(run_cli: RunCli, x509_pki: TestPKI, tmp_path: Path,
                             case: str) -> None:
    signed = _signed_by(x509_pki, tmp_path, case)
    fresh = tmp_path / "fresh.json"
    existing = tmp_path / "existing.json"
    existing.write_bytes(b"previous content\n")
    for out in (fresh, existing):
        result = run_cli(["import", signed, "--ca-dir", x509_pki.ca_dir, "-o", out])
        assert result.returncode == 1, result.stderr
        assert FAIL_CLOSED[case] in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
    assert not fresh.exists()
    assert existing.read_bytes() == b"previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["content.json", signed.name, "existing.json"])


def test_import_no_verify_warns_loudly(run_cli: RunCli, x509_pki: TestPKI,
                                       tmp_path: Path) -> None:
    signed = _signed_by(x509_pki, tmp_path, "rogue")
    out = tmp_path / "out.json"
    result = run_cli(["import", signed, "--no-verify", "-o", out])
    assert result.returncode == 0, result.stderr
    assert "warning: --no-verify: the signature is NOT checked" in result.stderr
    assert "UNVERIFIED" in result.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["hv:imagelist"]["hv:endorser"][
        "hv:x509"]["hv:dn"] == x509_pki.alice.dn


def test_import_no_verify_still_rejects_an_expired_list(run_cli: RunCli, x509_pki: TestPKI,
                                                        tmp_path: Path) -> None:
    signed = _signed_by(x509_pki, tmp_path, "expired-list")
    out = tmp_path / "out.json"
    result = run_cli(["import", signed, "--no-verify", "-o", out])
    assert result.returncode == 1
    assert "expired" in result.stderr
    assert not out.exists()


def test_import_needs_a_ca_dir(run_cli: RunCli, alice_list: Path) -> None:
    result = run_cli(["import", alice_list])
    assert result.returncode == 2
    assert "--ca-dir is required" in result.stderr


def test_import_from_an_unreachable_url_exits_3(run_cli: RunCli, x509_pki: TestPKI,
                                                tmp_path: Path,
                                                image_server: ImageServer) -> None:
    out = tmp_path / "out.json"
    missing = run_cli(["import", image_server.url("/nothing.signed"), "--ca-dir",
                       x509_pki.ca_dir, "-o", out])
    assert missing.returncode == 3
    assert "HTTP 404" in missing.stderr
    image_server.stop()
    refused = run_cli(["import", image_server.url("/nothing.signed"), "--ca-dir",
                       x509_pki.ca_dir, "-o", out])
    assert refused.returncode == 3
    assert "cannot connect" in refused.stderr
    assert not out.exists()
