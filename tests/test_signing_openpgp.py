"""OpenPGP signatures: python-gnupg with an allow-list, checked against the real gpg."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gitreg.errors import (
    InvalidKeyError,
    PolicyViolationError,
    SignatureError,
    UntrustedSignerError,
    UsageError,
)
from gitreg.signing.interface import NAMESPACE_IMAGELIST, detect_scheme
from gitreg.signing.openpgp import (
    OpenPGPPublicKey,
    OpenPGPSigner,
    signature_issuer,
    verify_with_allowlist,
)
from tests.fixtures.openpgp_keys import OpenPGPKeyring

NOW = datetime.now(UTC)

DATA = b'{"hv:imagelist": {"dc:title": "test"}}\n'
NOT_TEXT = b"\xff\xfe\x00"


def gpg_sign(keyring: OpenPGPKeyring, name: str, data: bytes, tmp_path: Path,
             *options: str, global_options: tuple[str, ...] = ()) -> bytes:
    message = tmp_path / f"message-{name}"
    message.write_bytes(data)
    signature = tmp_path / f"message-{name}.asc"
    signature.unlink(missing_ok=True)
    keyring.gpg(*global_options, "--armor", "--local-user", keyring.fingerprints[name],
                *options,
                "--output", signature, "--detach-sign", message)
    return signature.read_bytes()


def gpg_verify(keyring: OpenPGPKeyring, data: bytes, signature: bytes,
               tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    (tmp_path / "check.asc").write_bytes(signature)
    (tmp_path / "check.dat").write_bytes(data)
    return keyring.gpg("--status-fd", "1", "--verify", tmp_path / "check.asc",
                       tmp_path / "check.dat", check=False)


def policy_key(keyring: OpenPGPKeyring, name: str) -> OpenPGPPublicKey:
    return OpenPGPPublicKey.from_gnupghome(keyring.fingerprints[name], str(keyring.gnupghome))


def signer(keyring: OpenPGPKeyring, name: str) -> OpenPGPSigner:
    return OpenPGPSigner(keyring.fingerprints[name], str(keyring.gnupghome))


def user_keyring_is_empty() -> bool:
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"],
                             capture_output=True, text=True, check=False).stdout
    return "pub:" not in listing


# --- keys --------------------------------------------------------------------------


def test_key_exported_from_a_keyring_has_its_fingerprint(openpgp_keyring: OpenPGPKeyring) -> None:
    for name, fingerprint in openpgp_keyring.fingerprints.items():
        key = policy_key(openpgp_keyring, name)
        assert key.key_id == key.fingerprint == fingerprint
        assert key.armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    # bob signs with a subkey, which the key knows about
    assert len(policy_key(openpgp_keyring, "bob").subkey_fingerprints) == 1


def test_policy_entry_round_trips(openpgp_keyring: OpenPGPKeyring) -> None:
    key = policy_key(openpgp_keyring, "alice")
    entry = key.to_policy()
    assert entry == {"scheme": "openpgp", "fingerprint": key.fingerprint,
                     "public_key": key.armored}
    assert OpenPGPPublicKey.from_policy(entry) == key
    assert OpenPGPPublicKey.from_armored(key.armored) == key


def test_policy_entry_claiming_another_fingerprint_is_rejected(
        openpgp_keyring: OpenPGPKeyring) -> None:
    alice, bob = (policy_key(openpgp_keyring, n) for n in ("alice", "bob"))
    with pytest.raises(InvalidKeyError, match=f"has fingerprint {bob.fingerprint}"):
        OpenPGPPublicKey.from_policy({"scheme": "openpgp", "fingerprint": alice.fingerprint,
                                      "public_key": bob.armored})
    with pytest.raises(InvalidKeyError, match="is a subkey"):
        OpenPGPPublicKey(bob.subkey_fingerprints[0], bob.armored)


@pytest.mark.parametrize("fingerprint", ["", "ABCD", "Z" * 40, "0" * 64])
def test_malformed_fingerprints_are_rejected(openpgp_keyring: OpenPGPKeyring,
                                             fingerprint: str) -> None:
    armored = policy_key(openpgp_keyring, "alice").armored
    with pytest.raises(InvalidKeyError, match="fingerprint"):
        OpenPGPPublicKey(fingerprint, armored)


def test_malformed_armoured_keys_are_rejected(openpgp_keyring: OpenPGPKeyring) -> None:
    alice = policy_key(openpgp_keyring, "alice")
    lines = alice.armored.strip().splitlines()
    body_line = next(i for i, line in enumerate(lines) if len(line) == 64)
    garbled = list(lines)
    garbled[body_line] = garbled[body_line][:10] + ("A" if garbled[body_line][10] != "A"
                                                    else "B") + garbled[body_line][11:]
    variants = {
        "empty": "",
        "truncated": "\n".join(lines[: len(lines) // 2]),
        "checksum mismatch": "\n".join(garbled),
        "not base64": "\n".join([*lines[:body_line], "*** not base64 ***", *lines[body_line:]]),
        "signature armour": alice.armored.replace("PUBLIC KEY BLOCK", "SIGNATURE"),
    }
    for variant, armored in variants.items():
        with pytest.raises(InvalidKeyError):
            OpenPGPPublicKey(alice.fingerprint, armored)
            pytest.fail(f"{variant} was accepted")


def test_armoured_secret_key_is_refused(openpgp_keyring: OpenPGPKeyring) -> None:
    secret = openpgp_keyring.gpg("--armor", "--export-secret-keys",
                                 openpgp_keyring.fingerprints["alice"]).stdout.decode()
    assert "PRIVATE KEY BLOCK" in secret
    with pytest.raises(InvalidKeyError):
        OpenPGPPublicKey.from_armored(secret.replace("PRIVATE KEY BLOCK", "PUBLIC KEY BLOCK"))


def test_unknown_keys_are_usage_errors(openpgp_keyring: OpenPGPKeyring) -> None:
    unknown = "0123456789ABCDEF0123456789ABCDEF01234567"
    home = str(openpgp_keyring.gnupghome)
    with pytest.raises(UsageError, match=unknown):
        OpenPGPPublicKey.from_gnupghome(unknown, home)
    with pytest.raises(UsageError, match=unknown):
        OpenPGPSigner(unknown, home)
    # $GNUPGHOME (the test's empty one) is the default keyring
    with pytest.raises(UsageError, match="no OpenPGP secret key"):
        OpenPGPSigner(openpgp_keyring.fingerprints["alice"])


# --- interoperability with gpg ------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_gpg_signatures_verify_against_policy_keys(openpgp_keyring: OpenPGPKeyring,
                                                   tmp_path: Path, name: str) -> None:
    signature = gpg_sign(openpgp_keyring, name, DATA, tmp_path)
    assert detect_scheme(signature) == "openpgp"
    key = policy_key(openpgp_keyring, name)
    verified = key.verify(DATA, signature, namespace=NAMESPACE_IMAGELIST, at=NOW)
    assert verified.scheme == "openpgp"
    assert verified.key_id == openpgp_keyring.fingerprints[name]
    assert f"{name}@example.org" in verified.detail
    # the policy keyring is private: the user's (empty) keyring stays empty
    assert user_keyring_is_empty()


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_in_process_signatures_verify_with_gpg(openpgp_keyring: OpenPGPKeyring,
                                               tmp_path: Path, name: str) -> None:
    signature = signer(openpgp_keyring, name).sign(DATA, namespace=NAMESPACE_IMAGELIST)
    assert signature.startswith(b"-----BEGIN PGP SIGNATURE-----")
    result = gpg_verify(openpgp_keyring, DATA, signature, tmp_path)
    assert result.returncode == 0, result.stderr
    validsig = next(line for line in result.stdout.decode().splitlines()
                    if line.startswith("[GNUPG:] VALIDSIG"))
    assert validsig.split()[-1] == openpgp_keyring.fingerprints[name]
    assert gpg_verify(openpgp_keyring, DATA + b"\n", signature, tmp_path).returncode != 0


def test_bytes_that_are_not_text_are_signed_exactly(openpgp_keyring: OpenPGPKeyring,
                                                    tmp_path: Path) -> None:
    alice = signer(openpgp_keyring, "alice")
    signature = alice.sign(NOT_TEXT, namespace=NAMESPACE_IMAGELIST)
    assert gpg_verify(openpgp_keyring, NOT_TEXT, signature, tmp_path).returncode == 0
    key = alice.public_key()
    assert key.verify(NOT_TEXT, signature, namespace=NAMESPACE_IMAGELIST,
                      at=NOW).key_id == key.key_id
    # what python-gnupg would make of a str: the latin-1 / UTF-8 re-encodings must fail
    for other in (NOT_TEXT.decode("latin-1").encode("utf-8"), NOT_TEXT[:-1]):
        with pytest.raises(SignatureError, match="does not match"):
            key.verify(other, signature, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_issuer_names_the_signing_key(openpgp_keyring: OpenPGPKeyring, tmp_path: Path) -> None:
    alice, bob = (policy_key(openpgp_keyring, n) for n in ("alice", "bob"))
    assert signature_issuer(gpg_sign(openpgp_keyring, "alice", DATA, tmp_path)) == \
        alice.fingerprint
    bob_issuer = signature_issuer(gpg_sign(openpgp_keyring, "bob", DATA, tmp_path))
    assert bob_issuer == bob.subkey_fingerprints[0] != bob.fingerprint
    assert bob.matches_issuer(bob_issuer)
    assert bob.matches_issuer(bob_issuer[-16:])
    assert not alice.matches_issuer(bob_issuer)


# --- attacks -------------------------------------------------------------------------


@pytest.mark.parametrize("position", [0, 7, len(DATA) - 1])
def test_tampered_byte_is_rejected(openpgp_keyring: OpenPGPKeyring, tmp_path: Path,
                                   position: int) -> None:
    signature = gpg_sign(openpgp_keyring, "alice", DATA, tmp_path)
    tampered = bytearray(DATA)
    tampered[position] ^= 0x01
    key = policy_key(openpgp_keyring, "alice")
    with pytest.raises(SignatureError, match="does not match the data"):
        key.verify(bytes(tampered), signature, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_valid_signature_by_another_key_is_rejected(openpgp_keyring: OpenPGPKeyring,
                                                    tmp_path: Path) -> None:
    alice, bob = (policy_key(openpgp_keyring, n) for n in ("alice", "bob"))
    by_bob = gpg_sign(openpgp_keyring, "bob", DATA, tmp_path)
    # bob's key is in the process keyring too (and valid there), yet it is not alice
    bob.verify(DATA, by_bob, namespace=NAMESPACE_IMAGELIST, at=NOW)
    with pytest.raises(SignatureError, match=f"made by {bob.fingerprint}, not by "
                                             f"{alice.fingerprint}"):
        alice.verify(DATA, by_bob, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_allow_list_is_what_counts(openpgp_keyring: OpenPGPKeyring, tmp_path: Path) -> None:
    home = str(openpgp_keyring.gnupghome)
    fingerprints = openpgp_keyring.fingerprints
    by_bob = gpg_sign(openpgp_keyring, "bob", DATA, tmp_path)
    with pytest.raises(UntrustedSignerError, match=fingerprints["bob"]):
        verify_with_allowlist(DATA, by_bob, [fingerprints["alice"]], home)
    with pytest.raises(UntrustedSignerError):
        verify_with_allowlist(DATA, by_bob, [], home)
    verified = verify_with_allowlist(DATA, by_bob, [fingerprints["alice"],
                                                    fingerprints["bob"].lower()], home)
    assert verified.key_id == fingerprints["bob"]
    with pytest.raises(SignatureError, match="does not match"):
        verify_with_allowlist(DATA + b" ", by_bob, [fingerprints["bob"]], home)


def test_signature_that_is_not_one_binary_detached_signature_is_rejected(
        openpgp_keyring: OpenPGPKeyring, tmp_path: Path) -> None:
    fingerprints = openpgp_keyring.fingerprints
    key = policy_key(openpgp_keyring, "alice")
    good = gpg_sign(openpgp_keyring, "alice", DATA, tmp_path)
    lines = good.strip().splitlines()
    (tmp_path / "m").write_bytes(DATA)
    inline = openpgp_keyring.gpg("--armor", "--local-user", fingerprints["alice"], "--sign",
                                 "--output", "-", tmp_path / "m").stdout
    variants = {
        "text mode": (gpg_sign(openpgp_keyring, "alice", DATA, tmp_path, "--textmode"),
                      "type 0x01"),
        "sha1": (gpg_sign(openpgp_keyring, "alice", DATA, tmp_path, "--digest-algo", "SHA1"),
                 "hash algorithm 2"),
        "two signers": (gpg_sign(openpgp_keyring, "alice", DATA, tmp_path, "--local-user",
                                 fingerprints["bob"]), "exactly one"),
        "inline signed message": (inline, "BEGIN PGP SIGNATURE"),
        "truncated": (b"\n".join(lines[:-1]), "END PGP SIGNATURE"),
        "cut body": (b"\n".join([*lines[:3], lines[-1]]), None),
        "ssh armour": (b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
                       "BEGIN PGP SIGNATURE"),
        "not ascii": (good.replace(b"\n\n", b"\n\xff\n", 1), "ASCII"),
        "huge": (good + b" " * 70_000, "bytes"),
    }
    for variant, (signature, reason) in variants.items():
        with pytest.raises(SignatureError, match=reason):
            key.verify(DATA, signature, namespace=NAMESPACE_IMAGELIST, at=NOW)
            pytest.fail(f"{variant} was accepted")


def test_reencoded_armour_still_verifies(openpgp_keyring: OpenPGPKeyring,
                                         tmp_path: Path) -> None:
    # What counts is the packet, not how the armour wraps it (CRLF, no checksum, headers).
    good = gpg_sign(openpgp_keyring, "alice", DATA, tmp_path)
    lines = good.decode().strip().splitlines()
    body = [line for line in lines[1:-1] if line and not line.startswith("=")]
    packet = base64.b64decode("".join(body))
    rewrapped = ("-----BEGIN PGP SIGNATURE-----\r\nComment: rewrapped\r\n\r\n"
                 + base64.b64encode(packet).decode() + "\r\n-----END PGP SIGNATURE-----\r\n")
    key = policy_key(openpgp_keyring, "alice")
    assert key.verify(DATA, rewrapped.encode(), namespace=NAMESPACE_IMAGELIST, at=NOW).key_id == \
        key.key_id


def _fresh_keyring(tmp_path: Path, name: str, expire: str,
                   *options: str) -> tuple[OpenPGPKeyring, str]:
    home = tmp_path / f"gnupg-{name}"
    home.mkdir(mode=0o700)
    keyring = OpenPGPKeyring(home, {})
    keyring.gpg(*options, "--passphrase", "", "--quick-gen-key",
                f"{name} <{name}@example.org>", "ed25519", "sign", expire)
    listing = keyring.gpg("--with-colons", "--list-keys").stdout.decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr:"))
    return OpenPGPKeyring(home, {name: fingerprint}), fingerprint


def test_signature_by_a_revoked_key_is_rejected(tmp_path: Path) -> None:
    keyring, fingerprint = _fresh_keyring(tmp_path, "revoked", "never")
    signature = gpg_sign(keyring, "revoked", DATA, tmp_path)
    before = OpenPGPPublicKey.from_gnupghome(fingerprint, str(keyring.gnupghome))
    revocation = (keyring.gnupghome / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
    keyring.gpg("--import", input=revocation.replace(":-----BEGIN", "-----BEGIN").encode())
    after = OpenPGPPublicKey.from_gnupghome(fingerprint, str(keyring.gnupghome))
    assert after.armored != before.armored
    with pytest.raises(SignatureError, match="signing key was revoked"):
        after.verify(DATA, signature, namespace=NAMESPACE_IMAGELIST, at=NOW)
    subprocess.run(["gpgconf", "--homedir", str(keyring.gnupghome), "--kill", "all"],
                   check=False, capture_output=True)


@contextmanager
def _one_day_key(tmp_path: Path, name: str) -> Iterator[tuple[OpenPGPPublicKey, bytes]]:
    """A key valid for 2020-01-01 only, and its signature of DATA made at noon."""
    keyring, fingerprint = _fresh_keyring(tmp_path, name, "1d",
                                          "--faked-system-time", "20200101T000000!")
    signature = gpg_sign(keyring, name, DATA, tmp_path,
                         global_options=("--faked-system-time", "20200101T120000!"))
    try:
        yield OpenPGPPublicKey.from_gnupghome(fingerprint, str(keyring.gnupghome)), signature
    finally:
        subprocess.run(["gpgconf", "--homedir", str(keyring.gnupghome), "--kill", "all"],
                       check=False, capture_output=True)


def test_signature_by_an_expired_key_is_rejected(tmp_path: Path) -> None:
    with _one_day_key(tmp_path, "expired") as (key, signature):
        with pytest.raises(SignatureError, match="signing key has expired"):
            key.verify(DATA, signature, namespace=NAMESPACE_IMAGELIST, at=NOW)
        assert not key.timeless  # so the verdict cache never keeps its verdicts


def test_key_expiry_is_judged_at_the_reference_time(tmp_path: Path) -> None:
    """The same signature by a key valid for one day in 2020: good at a reference
    time inside that day, expired at one after it, whatever the machine's clock."""
    with _one_day_key(tmp_path, "dated") as (key, signature):
        verified = key.verify(DATA, signature, namespace=NAMESPACE_IMAGELIST,
                              at=datetime(2020, 1, 1, 18, tzinfo=UTC))
        assert verified.key_id == key.key_id
        with pytest.raises(SignatureError, match="signing key has expired"):
            key.verify(DATA, signature, namespace=NAMESPACE_IMAGELIST,
                       at=datetime(2020, 1, 3, tzinfo=UTC))


def test_a_key_without_expiry_has_timeless_verdicts(openpgp_keyring: OpenPGPKeyring) -> None:
    assert policy_key(openpgp_keyring, "alice").timeless


def test_gpg_missing_is_an_operational_error(openpgp_keyring: OpenPGPKeyring,
                                             monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    if shutil.which("gpg") is None:
        pytest.skip("gpg not installed")
    monkeypatch.setenv("PATH", str(tmp_path))
    from gitreg.errors import GitregError
    from gitreg.signing import openpgp

    with pytest.raises(GitregError, match="cannot run gpg"):
        openpgp._new_gpg(str(openpgp_keyring.gnupghome))


def test_verdicts_of_an_expiring_key_are_never_cached(tmp_path: Path) -> None:
    """A cached verdict would outlive the key: the trust core asks gpg each time."""
    from gitreg.publish.policy_edit import add_endorser, new_policy
    from gitreg.verify.cache import MemoryCache
    from gitreg.verify.signatures import check_signature

    with _one_day_key(tmp_path, "cached") as (key, signature):
        envelope = add_endorser(new_policy("00000000-0000-4000-8000-000000000000", [key], 1,
                                           datetime(2030, 1, 1, tzinfo=UTC)),
                                "dated", [key], allow=["imagelists/*"])
        cache = MemoryCache()

        def check(at: datetime) -> str:
            return check_signature(envelope.signed, allowed=[key.key_id], data_id="d" * 40,
                                   data=lambda: DATA, signature_id="s" * 40,
                                   signature=signature, namespace=NAMESPACE_IMAGELIST, at=at,
                                   cache=cache, rule="list-signature", commit="c" * 40,
                                   path="imagelists/x.json", what="imagelists/x.json")

        assert check(datetime(2020, 1, 1, 18, tzinfo=UTC)) == key.key_id
        with pytest.raises(PolicyViolationError, match="signing key has expired"):
            check(datetime(2020, 1, 3, tzinfo=UTC))
