"""What gitreg says about signing inputs a user gets wrong, and about legacy
signatures and certificates (issue 9): a public key where a private key is
needed, SHA-1 signed S/MIME lists, certificates with non-positive serials."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gitreg.errors import SignatureError, UntrustedSignerError, UsageError, WeakDigestError
from gitreg.interop.smime import parse_smime
from gitreg.signing.interface import NAMESPACE_IMAGELIST
from gitreg.signing.keys import load_signer
from gitreg.signing.x509 import CAStore, X509PublicKey, serial_problem, verify_cms
from tests.conftest import INTEROP
from tests.fixtures.env import RunCli
from tests.fixtures.openpgp_keys import OpenPGPKeyring
from tests.fixtures.ssh_keys import SSHKeyFiles
from tests.fixtures.x509_pki import NOW, TestPKI

CORPUS = INTEROP / "real-world"
SHA1_LIST = CORPUS / "derived" / "ck03-resigned-sha1.signed"
SHA256_LIST = CORPUS / "derived" / "ck03-resigned-sha256.signed"
DERIVED_CA = CORPUS / "derived" / "ca"
GRIDKA_LIST = CORPUS / "hepixvmitrust" / "readme-md-2015.signed"
DATA = b'{"hv:imagelist": {"dc:title": "a list"}}\n'
LIBRARY_TEXTS = ("MalformedFraming", "cryptography.io", "Traceback")


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


# --- a public key where a private key is needed ----------------------------------


def test_public_key_as_root_key_says_a_private_key_is_needed(
        run_cli: RunCli, ssh_alice: SSHKeyFiles, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    result = run_cli(["init", registry, "--name", "test", "--root-key", ssh_alice.public])
    assert result.returncode == 2, result.stderr
    assert f"{ssh_alice.public} is an SSH public key; signing needs a private key" \
        in result.stderr
    assert "without .pub" in result.stderr
    assert not any(text in result.stderr for text in LIBRARY_TEXTS)
    assert not registry.exists() or not any(registry.iterdir())


@pytest.mark.parametrize("form", ["ssh", "openpgp", "certificate", "pem"])
def test_every_public_form_given_as_signing_key_is_named(
        form: str, tmp_path: Path, ssh_alice: SSHKeyFiles, openpgp_keyring: OpenPGPKeyring,
        x509_pki: TestPKI) -> None:
    path = tmp_path / "given.key"
    if form == "ssh":
        path.write_bytes(ssh_alice.public.read_bytes())
        expected = "is an SSH public key"
    elif form == "openpgp":
        path.write_bytes(openpgp_keyring.gpg("--armor", "--export",
                                             openpgp_keyring.fingerprints["alice"]).stdout)
        expected = "is an OpenPGP public key"
    elif form == "certificate":
        path.write_bytes(x509_pki.alice.cert_pem)
        expected = "is an X.509 certificate"
    else:
        path.write_bytes(x509_pki.alice.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        expected = "is a public key"
    with pytest.raises(UsageError, match=f"{expected}; signing needs a private key") as caught:
        load_signer(str(path))
    assert caught.value.hint
    assert not any(text in caught.value.message for text in LIBRARY_TEXTS)


def test_garbage_as_signing_key_does_not_pass_library_text_on(tmp_path: Path) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64 at all\n")
    with pytest.raises(UsageError, match="not an OpenSSH or PEM private key") as caught:
        load_signer(str(path))
    assert not any(text in caught.value.message for text in LIBRARY_TEXTS)


# --- SHA-1 signed S/MIME lists ------------------------------------------------------


def _sha1_cms(x509_pki: TestPKI, tmp_path: Path) -> bytes:
    content = tmp_path / "content"
    content.write_bytes(DATA)
    return subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-md", "sha1", "-outform", "DER",
         "-in", content, "-signer", x509_pki.alice.cert_path, "-inkey", x509_pki.alice.key_path],
        capture_output=True, check=True).stdout


def test_sha1_cms_is_refused_as_sha1_unless_allowed(x509_pki: TestPKI, tmp_path: Path) -> None:
    store = CAStore.from_directory(x509_pki.ca_dir)
    cms = _sha1_cms(x509_pki, tmp_path)
    with pytest.raises(WeakDigestError, match="signature uses SHA-1, refused") as caught:
        verify_cms(DATA, cms, store, at=NOW)
    assert "--allow-sha1" in (caught.value.hint or "")
    info = verify_cms(DATA, cms, store, at=NOW, allow_sha1=True)
    assert (info.subject_dn, info.digest) == (x509_pki.alice.dn, "sha1")
    # Allowing SHA-1 accepts a SHA-1 signature, never a wrong one.
    with pytest.raises(SignatureError) as wrong:
        verify_cms(DATA + b" ", cms, store, at=NOW, allow_sha1=True)
    assert not isinstance(wrong.value, WeakDigestError)
    # Registry keys never accept SHA-1: only migration commands take the option.
    identity = X509PublicKey.from_certificate_file(x509_pki.alice.cert_path, x509_pki.ca_dir,
                                                   at=NOW)
    with pytest.raises(WeakDigestError):
        identity.verify(DATA, cms, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_check_says_sha1_refused_and_allow_sha1_warns(run_cli: RunCli) -> None:
    refused = run_cli(["check", "--ca-dir", DERIVED_CA, SHA1_LIST])
    assert refused.returncode == 1, refused.stderr
    assert "signature uses SHA-1, refused" in refused.stderr
    assert "bad signature" not in refused.stderr
    allowed = run_cli(["check", "--ca-dir", DERIVED_CA, "--allow-sha1", SHA1_LIST])
    assert allowed.returncode == 0, allowed.stderr
    assert "warning:" in allowed.stderr and "SHA-1 signatures can be forged" in allowed.stderr
    assert "OK:" in allowed.stderr
    # A SHA-256 list gets no SHA-1 warning from the option.
    modern = run_cli(["check", "--ca-dir", DERIVED_CA, "--allow-sha1", SHA256_LIST])
    assert modern.returncode == 0 and "SHA-1" not in modern.stderr


def test_import_refuses_sha1_and_writes_nothing_unless_allowed(run_cli: RunCli,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out" / "list.json"
    out.parent.mkdir()
    refused = run_cli(["import", "--ca-dir", DERIVED_CA, "-o", out, SHA1_LIST])
    assert refused.returncode == 1, refused.stderr
    assert "signature uses SHA-1, refused" in refused.stderr
    assert "--allow-sha1" in refused.stderr  # the hint says how to migrate
    assert _tree(out.parent) == {}
    allowed = run_cli(["import", "--ca-dir", DERIVED_CA, "--allow-sha1", "-o", out, SHA1_LIST])
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: --allow-sha1" in allowed.stderr
    payload = parse_smime(SHA1_LIST.read_bytes()).payload
    assert b"76fdee70-8119-5d33-eeee-3c57e1c60df1" in payload
    assert b"76fdee70-8119-5d33-eeee-3c57e1c60df1" in out.read_bytes()


# --- certificates with a non-positive serial (real GridKa-CA certificates) ----------


def _gridka_certificate_pem(tmp_path: Path) -> bytes:
    der = tmp_path / "signature.der"
    der.write_bytes(parse_smime(GRIDKA_LIST.read_bytes()).signature_der)
    return subprocess.run(["openssl", "pkcs7", "-inform", "DER", "-in", der, "-print_certs"],
                          capture_output=True, check=True).stdout


def _der_of(pem: bytes) -> bytes:
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def test_serial_problem_reads_the_der(x509_pki: TestPKI, tmp_path: Path) -> None:
    good = x509_pki.alice.cert.public_bytes(serialization.Encoding.DER)
    assert serial_problem(good) is None
    gridka = _gridka_certificate_pem(tmp_path)
    assert "authority key identifier" in (serial_problem(_der_of(gridka)) or "")
    # The certificate's own serial: zero and negative are refused (signature
    # broken by the edit, which this check does not look at).
    serial = x509_pki.alice.cert.serial_number.to_bytes(
        (x509_pki.alice.cert.serial_number.bit_length() + 8) // 8, "big")
    assert good.count(serial) == 1
    for bad in (b"\x80" + serial[1:], bytes(len(serial))):
        problem = serial_problem(good.replace(serial, bad))
        assert problem is not None and "serial number is not a positive" in problem


@pytest.mark.parametrize("warnings", ["default", "error"])
def test_gridka_signed_list_is_refused_the_same_with_every_cryptography(
        run_cli: RunCli, warnings: str) -> None:
    # "error" turns cryptography's deprecation warning into the exception a
    # future cryptography raises: gitreg decides before it, so nothing changes.
    env = {"PYTHONWARNINGS": f"{warnings}::Warning"}
    result = run_cli(["check", "--ca-dir", DERIVED_CA, GRIDKA_LIST], env=env)
    assert result.returncode == 1, result.stderr
    assert ("untrusted signer: CMS signature: certificate 0 (/C=DE/O=GermanGrid/OU=DESY/"
            "CN=Owen Synge) is refused: its authority key identifier names a serial number "
            "that is not positive") in result.stderr
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr


def test_ca_directory_with_such_a_certificate_still_verifies_the_others(
        x509_pki: TestPKI, tmp_path: Path) -> None:
    ca_dir = x509_pki.write_ca_dir(tmp_path / "ca")
    (ca_dir / "0badc0de.0").write_bytes(_gridka_certificate_pem(tmp_path))
    store = CAStore.from_directory(ca_dir)
    assert len(store.refused) == 1 and "0badc0de.0" in store.refused[0]
    cms = subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-md", "sha256", "-outform", "DER",
         "-in", "/dev/stdin", "-signer", x509_pki.alice.cert_path,
         "-inkey", x509_pki.alice.key_path], input=DATA, capture_output=True,
        check=True).stdout
    assert verify_cms(DATA, cms, store, at=NOW).subject_dn == x509_pki.alice.dn
    # A chain that fails names what was left out, so the operator can see why.
    stranger = CAStore.from_directory(ca_dir)
    other = subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-md", "sha256", "-outform", "DER",
         "-in", "/dev/stdin", "-signer", x509_pki.mallory.cert_path,
         "-inkey", x509_pki.mallory.key_path], input=DATA, capture_output=True,
        check=True).stdout
    with pytest.raises(UntrustedSignerError, match=r"left out of the CA store: .*0badc0de.0"):
        verify_cms(DATA, other, stranger, at=NOW + dt.timedelta(seconds=1))
