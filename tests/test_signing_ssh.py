"""SSHSIG signatures: in-process verify and sign, checked against the real ssh-keygen."""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gitreg.errors import InvalidKeyError, SignatureError, UsageError
from gitreg.signing.interface import NAMESPACE_GIT, NAMESPACE_IMAGELIST, detect_scheme
from gitreg.signing.ssh import (
    SSHPublicKey,
    SSHSignature,
    SSHSigner,
    parse_signature,
    signature_key_id,
)
from tests.fixtures.ssh_keys import SSHKeyFiles, write_allowed_signers

NOW = datetime.now(UTC)

DATA = b'{"hv:imagelist": {"dc:title": "test"}}\n'
BINARY = b"\xff\xfe\x00 not text \r\n\x80"


def keygen_sign(key: SSHKeyFiles, data: bytes, tmp_path: Path, namespace: str,
                *options: str) -> bytes:
    message = tmp_path / "message"
    message.write_bytes(data)
    extra = [arg for opt in options for arg in ("-O", opt)]
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", namespace, *extra,
                    "-f", str(key.private), str(message)], check=True, capture_output=True)
    signature = (tmp_path / "message.sig").read_bytes()
    (tmp_path / "message.sig").unlink()
    return signature


def keygen_verify(key: SSHKeyFiles, data: bytes, signature: bytes, tmp_path: Path,
                  namespace: str) -> subprocess.CompletedProcess[bytes]:
    allowed = write_allowed_signers(tmp_path / "allowed_signers", [key])
    sig = tmp_path / "check.sig"
    sig.write_bytes(signature)
    return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed),
                           "-I", key.principal, "-n", namespace, "-s", str(sig)],
                          input=data, capture_output=True, check=False)


def ssh_string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def armour(blob: bytes) -> bytes:
    body = base64.b64encode(blob)
    lines = [body[i:i + 70] for i in range(0, len(body), 70)]
    return b"\n".join([b"-----BEGIN SSH SIGNATURE-----", *lines,
                       b"-----END SSH SIGNATURE-----"]) + b"\n"


def build_blob(public_blob: bytes, namespace: bytes, hash_alg: bytes, inner: bytes, *,
               magic: bytes = b"SSHSIG", version: int = 1, reserved: bytes = b"",
               trailing: bytes = b"") -> bytes:
    return (magic + struct.pack(">I", version) + ssh_string(public_blob)
            + ssh_string(namespace) + ssh_string(reserved) + ssh_string(hash_alg)
            + ssh_string(inner) + trailing)


def rsa_signature(key_file: SSHKeyFiles, data: bytes, sig_alg: bytes,
                  hash_alg: bytes = b"sha512") -> bytes:
    """A hand-made SSHSIG by an RSA key with any signature algorithm (ssh-keygen
    only makes rsa-sha2-512)."""
    private = serialization.load_ssh_private_key(key_file.private.read_bytes(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    digest = hashlib.new(hash_alg.decode(), data).digest()
    signed = (b"SSHSIG" + ssh_string(NAMESPACE_IMAGELIST.encode()) + ssh_string(b"")
              + ssh_string(hash_alg) + ssh_string(digest))
    chosen = {b"rsa-sha2-512": hashes.SHA512(), b"rsa-sha2-256": hashes.SHA256(),
              b"ssh-rsa": hashes.SHA1()}[sig_alg]  # noqa: S303 - the legacy attack
    raw = private.sign(signed, padding.PKCS1v15(), chosen)
    public_blob = SSHPublicKey.from_file(key_file.public).blob
    return armour(build_blob(public_blob, NAMESPACE_IMAGELIST.encode(), hash_alg,
                             ssh_string(sig_alg) + ssh_string(raw)))


# --- key ids and key parsing ---------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "bob", "carol"])
def test_key_id_is_the_ssh_keygen_fingerprint(ssh_keys: dict[str, SSHKeyFiles],
                                              name: str) -> None:
    key = ssh_keys[name]
    printed = subprocess.run(["ssh-keygen", "-lf", str(key.public)], check=True,
                             capture_output=True, text=True).stdout.split()[1]
    assert SSHPublicKey.from_file(key.public).key_id == printed
    assert SSHSigner.from_file(key.private).key_id == printed
    assert printed.startswith("SHA256:")


def test_key_lines_in_every_openssh_form_give_the_same_key(ssh_alice: SSHKeyFiles) -> None:
    line = ssh_alice.public_line
    plain = SSHPublicKey.from_openssh(line)
    authorized = SSHPublicKey.from_openssh(f'restrict,command="echo a b" {line}')
    allowed = SSHPublicKey.from_openssh(f'alice@example.org namespaces="git" {line}')
    assert plain == authorized == allowed
    assert plain.comment == "alice@example.org"
    assert plain.openssh() == " ".join(line.split()[:2])
    assert plain.key_type == "ssh-ed25519"


def test_policy_entry_round_trips(ssh_alice: SSHKeyFiles, ssh_carol: SSHKeyFiles) -> None:
    for files in (ssh_alice, ssh_carol):
        key = SSHPublicKey.from_file(files.public)
        entry = key.to_policy()
        assert entry == {"scheme": "ssh", "public_key": key.openssh()}
        again = SSHPublicKey.from_policy(entry)
        assert again == key
        assert again.key_id == key.key_id


@pytest.mark.parametrize("line", [
    "",
    "not a key",
    "ssh-ed25519 ***notbase64***",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==",  # a 1-byte key
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA==",
])
def test_malformed_or_unsupported_key_lines_are_rejected(line: str) -> None:
    with pytest.raises(InvalidKeyError):
        SSHPublicKey.from_openssh(line)


def test_key_line_whose_type_lies_about_the_blob_is_rejected(ssh_alice: SSHKeyFiles) -> None:
    blob = ssh_alice.public_line.split()[1]
    with pytest.raises(InvalidKeyError, match="says ssh-rsa"):
        SSHPublicKey.from_openssh(f"ssh-rsa {blob}")


def test_policy_entry_of_another_scheme_is_rejected(ssh_alice: SSHKeyFiles) -> None:
    with pytest.raises(InvalidKeyError, match="scheme"):
        SSHPublicKey.from_policy({"scheme": "openpgp", "public_key": ssh_alice.public_line})
    with pytest.raises(InvalidKeyError, match="public_key"):
        SSHPublicKey.from_policy({"scheme": "ssh", "public_key": 42})


def test_short_rsa_keys_are_refused(tmp_path: Path) -> None:
    weak = tmp_path / "weak"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(weak)],
                   check=True, capture_output=True)
    with pytest.raises(InvalidKeyError, match="1024 bits"):
        SSHPublicKey.from_file(weak.with_suffix(".pub"))
    with pytest.raises(UsageError, match="1024 bits"):
        SSHSigner.from_file(weak)


def test_key_files_that_are_missing_or_wrong_are_usage_errors(tmp_path: Path,
                                                               ssh_alice: SSHKeyFiles) -> None:
    with pytest.raises(UsageError, match="nowhere"):
        SSHSigner.from_file(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="nowhere"):
        SSHPublicKey.from_file(tmp_path / "nowhere.pub")
    with pytest.raises(UsageError, match=re.escape(str(ssh_alice.public))):
        SSHSigner.from_file(ssh_alice.public)


def test_passphrase_protected_key_needs_its_passphrase(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(locked)],
                   check=True, capture_output=True)
    with pytest.raises(UsageError, match=re.escape(str(locked))):
        SSHSigner.from_file(locked)


# --- interoperability with ssh-keygen -----------------------------------------


@pytest.mark.parametrize("name", ["alice", "carol"])
@pytest.mark.parametrize("namespace", [NAMESPACE_IMAGELIST, NAMESPACE_GIT])
def test_ssh_keygen_signatures_verify_in_process(ssh_keys: dict[str, SSHKeyFiles],
                                                 tmp_path: Path, name: str,
                                                 namespace: str) -> None:
    files = ssh_keys[name]
    signature = keygen_sign(files, DATA, tmp_path, namespace)
    assert detect_scheme(signature) == "ssh"
    key = SSHPublicKey.from_file(files.public)
    verified = key.verify(DATA, signature, namespace=namespace, at=NOW)
    assert verified.scheme == "ssh"
    assert verified.key_id == key.key_id
    assert files.principal in verified.detail


def test_ssh_keygen_sha256_hash_signatures_verify(ssh_carol: SSHKeyFiles,
                                                  tmp_path: Path) -> None:
    signature = keygen_sign(ssh_carol, BINARY, tmp_path, NAMESPACE_IMAGELIST, "hashalg=sha256")
    assert parse_signature(signature).hash_algorithm == "sha256"
    key = SSHPublicKey.from_file(ssh_carol.public)
    assert key.verify(BINARY, signature, namespace=NAMESPACE_IMAGELIST, at=NOW).key_id == key.key_id


@pytest.mark.parametrize("name", ["alice", "carol"])
@pytest.mark.parametrize("namespace", [NAMESPACE_IMAGELIST, NAMESPACE_GIT])
def test_in_process_signatures_verify_with_ssh_keygen(ssh_keys: dict[str, SSHKeyFiles],
                                                      tmp_path: Path, name: str,
                                                      namespace: str) -> None:
    files = ssh_keys[name]
    signature = SSHSigner.from_file(files.private).sign(DATA, namespace=namespace)
    result = keygen_verify(files, DATA, signature, tmp_path, namespace)
    assert result.returncode == 0, result.stderr
    assert b"Good" in result.stdout
    # Ed25519 and PKCS#1 v1.5 are deterministic: the armour is ssh-keygen's, byte for byte.
    assert signature == keygen_sign(files, DATA, tmp_path, namespace)


def test_binary_data_is_signed_exactly(ssh_alice: SSHKeyFiles, tmp_path: Path) -> None:
    signer = SSHSigner.from_file(ssh_alice.private)
    signature = signer.sign(BINARY, namespace=NAMESPACE_IMAGELIST)
    assert keygen_verify(ssh_alice, BINARY, signature, tmp_path,
                         NAMESPACE_IMAGELIST).returncode == 0
    signer.public_key().verify(BINARY, signature, namespace=NAMESPACE_IMAGELIST, at=NOW)
    with pytest.raises(SignatureError):
        signer.public_key().verify(BINARY.replace(b"\r\n", b"\n"), signature,
                                   namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_ssh_keygen_rejects_a_tampered_in_process_signature(ssh_alice: SSHKeyFiles,
                                                            tmp_path: Path) -> None:
    signature = SSHSigner.from_file(ssh_alice.private).sign(DATA, namespace=NAMESPACE_IMAGELIST)
    result = keygen_verify(ssh_alice, DATA + b" ", signature, tmp_path, NAMESPACE_IMAGELIST)
    assert result.returncode != 0


# --- what a signature says ---------------------------------------------------


def test_parse_signature_exposes_the_signed_fields(ssh_carol: SSHKeyFiles,
                                                   tmp_path: Path) -> None:
    signature = keygen_sign(ssh_carol, DATA, tmp_path, NAMESPACE_IMAGELIST)
    parsed = parse_signature(signature)
    key = SSHPublicKey.from_file(ssh_carol.public)
    assert isinstance(parsed, SSHSignature)
    assert parsed.public_key == key.blob
    assert parsed.namespace == NAMESPACE_IMAGELIST
    assert parsed.hash_algorithm == "sha512"
    assert parsed.signature_algorithm == "rsa-sha2-512"
    assert len(parsed.signature) == 3072 // 8
    assert signature_key_id(signature) == key.key_id


def test_rsa_sha2_256_signatures_verify(ssh_carol: SSHKeyFiles) -> None:
    key = SSHPublicKey.from_file(ssh_carol.public)
    for hash_alg in (b"sha512", b"sha256"):
        signature = rsa_signature(ssh_carol, DATA, b"rsa-sha2-256", hash_alg)
        assert key.verify(DATA, signature, namespace=NAMESPACE_IMAGELIST,
                          at=NOW).key_id == key.key_id


def test_legacy_ssh_rsa_sha1_signatures_are_rejected(ssh_carol: SSHKeyFiles) -> None:
    signature = rsa_signature(ssh_carol, DATA, b"ssh-rsa")
    key = SSHPublicKey.from_file(ssh_carol.public)
    with pytest.raises(SignatureError, match="legacy ssh-rsa"):
        key.verify(DATA, signature, namespace=NAMESPACE_IMAGELIST, at=NOW)


# --- attacks -------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice_signature(ssh_keys: dict[str, SSHKeyFiles]) -> bytes:
    signer = SSHSigner.from_file(ssh_keys["alice"].private)
    return signer.sign(DATA, namespace=NAMESPACE_IMAGELIST)


@pytest.mark.parametrize("position", [0, 10, len(DATA) - 1])
def test_tampered_data_byte_is_rejected(ssh_alice: SSHKeyFiles, alice_signature: bytes,
                                        position: int) -> None:
    tampered = bytearray(DATA)
    tampered[position] ^= 0x01
    key = SSHPublicKey.from_file(ssh_alice.public)
    with pytest.raises(SignatureError, match="does not match the data"):
        key.verify(bytes(tampered), alice_signature, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_tampered_signature_value_is_rejected(ssh_alice: SSHKeyFiles,
                                              alice_signature: bytes) -> None:
    parsed = parse_signature(alice_signature)
    raw = bytearray(parsed.signature)
    raw[5] ^= 0x80
    forged = armour(build_blob(parsed.public_key, b"gitreg-imagelist", b"sha512",
                               ssh_string(b"ssh-ed25519") + ssh_string(bytes(raw))))
    key = SSHPublicKey.from_file(ssh_alice.public)
    with pytest.raises(SignatureError, match="does not match"):
        key.verify(DATA, forged, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_signature_for_another_namespace_is_rejected(ssh_alice: SSHKeyFiles,
                                                     tmp_path: Path) -> None:
    commit_signature = keygen_sign(ssh_alice, DATA, tmp_path, NAMESPACE_GIT)
    key = SSHPublicKey.from_file(ssh_alice.public)
    with pytest.raises(SignatureError, match="namespace 'git'"):
        key.verify(DATA, commit_signature, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_relabelled_namespace_is_rejected(ssh_alice: SSHKeyFiles, tmp_path: Path) -> None:
    # Rewriting the namespace field of a "git" signature must not make it an imagelist one.
    parsed = parse_signature(keygen_sign(ssh_alice, DATA, tmp_path, NAMESPACE_GIT))
    relabelled = armour(build_blob(parsed.public_key, b"gitreg-imagelist", b"sha512",
                                   ssh_string(b"ssh-ed25519") + ssh_string(parsed.signature)))
    key = SSHPublicKey.from_file(ssh_alice.public)
    with pytest.raises(SignatureError, match="does not match"):
        key.verify(DATA, relabelled, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_signature_by_another_key_is_rejected(ssh_bob: SSHKeyFiles,
                                              ssh_mallory: SSHKeyFiles) -> None:
    signature = SSHSigner.from_file(ssh_mallory.private).sign(DATA, namespace=NAMESPACE_IMAGELIST)
    bob = SSHPublicKey.from_file(ssh_bob.public)
    mallory_id = SSHPublicKey.from_file(ssh_mallory.public).key_id
    with pytest.raises(SignatureError, match="made by key") as caught:
        bob.verify(DATA, signature, namespace=NAMESPACE_IMAGELIST, at=NOW)
    assert mallory_id in caught.value.message
    assert bob.key_id in caught.value.message


def test_embedded_key_swapped_for_the_trusted_one_is_rejected(ssh_bob: SSHKeyFiles,
                                                              ssh_mallory: SSHKeyFiles) -> None:
    # Mallory signs, then claims in the blob that bob's key made the signature.
    parsed = parse_signature(SSHSigner.from_file(ssh_mallory.private)
                             .sign(DATA, namespace=NAMESPACE_IMAGELIST))
    bob = SSHPublicKey.from_file(ssh_bob.public)
    claimed = armour(build_blob(bob.blob, b"gitreg-imagelist", b"sha512",
                                ssh_string(b"ssh-ed25519") + ssh_string(parsed.signature)))
    with pytest.raises(SignatureError, match="does not match"):
        bob.verify(DATA, claimed, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_signature_algorithm_not_fitting_the_key_is_rejected(ssh_alice: SSHKeyFiles,
                                                             alice_signature: bytes) -> None:
    parsed = parse_signature(alice_signature)
    mislabelled = armour(build_blob(parsed.public_key, b"gitreg-imagelist", b"sha512",
                                    ssh_string(b"rsa-sha2-512") + ssh_string(parsed.signature)))
    with pytest.raises(SignatureError, match="does not fit an Ed25519 key"):
        SSHPublicKey.from_file(ssh_alice.public).verify(DATA, mislabelled,
                                                        namespace=NAMESPACE_IMAGELIST, at=NOW)


def _malformed_variants(signature: bytes) -> dict[str, bytes]:
    parsed = parse_signature(signature)
    inner = ssh_string(b"ssh-ed25519") + ssh_string(parsed.signature)
    ns = b"gitreg-imagelist"
    lines = signature.splitlines(keepends=True)
    return {
        "empty": b"",
        "no armour": base64.b64encode(b"SSHSIG"),
        "missing end line": b"".join(lines[:-1]),
        "truncated body": b"".join([lines[0], lines[1], lines[-1]]),
        "garbled body": signature.replace(lines[2][:4], b"*!?#", 1),
        "bad base64 padding": b"".join([lines[0], b"QUJD=\n", lines[-1]]),
        "pgp armour": b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
        "wrong magic": armour(build_blob(parsed.public_key, ns, b"sha512", inner,
                                         magic=b"SSHSIX")),
        "version 2": armour(build_blob(parsed.public_key, ns, b"sha512", inner, version=2)),
        "reserved used": armour(build_blob(parsed.public_key, ns, b"sha512", inner,
                                           reserved=b"x")),
        "md5 hash": armour(build_blob(parsed.public_key, ns, b"md5", inner)),
        "empty namespace": armour(build_blob(parsed.public_key, b"", b"sha512", inner)),
        "trailing data": armour(build_blob(parsed.public_key, ns, b"sha512", inner,
                                           trailing=b"\0")),
        "inner trailing data": armour(build_blob(parsed.public_key, ns, b"sha512",
                                                 inner + b"\0")),
        "huge": signature + b" " * 70_000,
    }


MALFORMED = ["empty", "no armour", "missing end line", "truncated body", "garbled body",
             "bad base64 padding", "pgp armour", "wrong magic", "version 2", "reserved used",
             "md5 hash", "empty namespace", "trailing data", "inner trailing data", "huge"]


@pytest.mark.parametrize("variant", MALFORMED)
def test_malformed_armour_is_rejected(ssh_alice: SSHKeyFiles, alice_signature: bytes,
                                      variant: str) -> None:
    bad = _malformed_variants(alice_signature)[variant]
    key = SSHPublicKey.from_file(ssh_alice.public)
    with pytest.raises(SignatureError):
        key.verify(DATA, bad, namespace=NAMESPACE_IMAGELIST, at=NOW)
    with pytest.raises(SignatureError):
        signature_key_id(bad)


def test_armour_with_crlf_line_ends_still_verifies(ssh_alice: SSHKeyFiles,
                                                   alice_signature: bytes) -> None:
    key = SSHPublicKey.from_file(ssh_alice.public)
    crlf = alice_signature.replace(b"\n", b"\r\n")
    assert key.verify(DATA, crlf, namespace=NAMESPACE_IMAGELIST, at=NOW).key_id == key.key_id


_FUZZ_SIGNER = SSHSigner(Ed25519PrivateKey.generate())
_FUZZ_SIGNATURE = _FUZZ_SIGNER.sign(DATA, namespace=NAMESPACE_IMAGELIST)


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(min_value=0, max_value=400), flip=st.integers(min_value=0, max_value=255),
       junk=st.binary(max_size=40))
def test_fuzzed_signatures_only_ever_raise_signature_error(cut: int, flip: int,
                                                           junk: bytes) -> None:
    signature = bytearray(_FUZZ_SIGNATURE)
    signature[cut % len(signature)] ^= flip
    candidate = bytes(signature[:cut + 30]) + junk
    try:
        _FUZZ_SIGNER.public_key().verify(DATA, candidate, namespace=NAMESPACE_IMAGELIST, at=NOW)
    except SignatureError:
        return
    # Only a mutation that leaves the decoded signature as it was may still verify
    # (whitespace, line ends, unused base64 bits).
    assert parse_signature(candidate) == parse_signature(_FUZZ_SIGNATURE)
