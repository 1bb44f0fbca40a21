"""The scheme registry: keys from policy entries and specs, and verify_any."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gitreg.errors import InvalidKeyError, SignatureError, UntrustedSignerError, UsageError
from gitreg.signing.interface import NAMESPACE_GIT, NAMESPACE_IMAGELIST, PublicKey
from gitreg.signing.keys import (
    load_public_key,
    load_signer,
    public_key_from_policy,
    select_key,
    verify_any,
)
from gitreg.signing.openpgp import OpenPGPPublicKey, OpenPGPSigner
from gitreg.signing.ssh import SSHPublicKey, SSHSigner
from tests.fixtures.openpgp_keys import OpenPGPKeyring
from tests.fixtures.ssh_keys import SSHKeyFiles

NOW = datetime.now(UTC)

DATA = b'{"hv:imagelist": {"dc:title": "keys"}}\n'


def ssh_key(files: SSHKeyFiles) -> SSHPublicKey:
    return SSHPublicKey.from_file(files.public)


def pgp_key(keyring: OpenPGPKeyring, name: str) -> OpenPGPPublicKey:
    return OpenPGPPublicKey.from_gnupghome(keyring.fingerprints[name], str(keyring.gnupghome))


def pgp_sign(keyring: OpenPGPKeyring, name: str, data: bytes = DATA) -> bytes:
    return OpenPGPSigner(keyring.fingerprints[name], str(keyring.gnupghome)).sign(
        data, namespace=NAMESPACE_IMAGELIST)


@pytest.fixture(scope="module")
def policy_keys(ssh_keys: dict[str, SSHKeyFiles],
                openpgp_keyring: OpenPGPKeyring) -> list[PublicKey]:
    """What a policy of alice and carol (SSH) and alice and bob (OpenPGP) allows."""
    return [ssh_key(ssh_keys["alice"]), ssh_key(ssh_keys["carol"]),
            pgp_key(openpgp_keyring, "alice"), pgp_key(openpgp_keyring, "bob")]


# --- policy entries ------------------------------------------------------------


def test_policy_entries_give_keys_of_their_scheme(policy_keys: list[PublicKey]) -> None:
    for key in policy_keys:
        again = public_key_from_policy(key.to_policy())
        assert type(again) is type(key)
        assert again.key_id == key.key_id
        # cached: the same material is parsed once per process
        assert public_key_from_policy(dict(key.to_policy())) is again


@pytest.mark.parametrize("entry", [
    {},
    {"scheme": "pgp", "fingerprint": "A" * 40},
    {"scheme": "ssh"},
    {"scheme": "ssh", "public_key": "ssh-ed25519 AAAA"},
    {"scheme": "openpgp", "fingerprint": "A" * 40},
    {"scheme": "ssh", "public_key": b"bytes are not JSON"},
    ["scheme", "ssh"],
])
def test_bad_policy_entries_are_invalid_keys(entry: object) -> None:
    with pytest.raises(InvalidKeyError):
        public_key_from_policy(entry)  # type: ignore[arg-type]


# --- specs ---------------------------------------------------------------------


def test_load_signer_from_an_ssh_key_path(ssh_carol: SSHKeyFiles) -> None:
    signer = load_signer(str(ssh_carol.private))
    assert isinstance(signer, SSHSigner)
    assert signer.key_id == ssh_key(ssh_carol).key_id
    assert load_signer(f"ssh:{ssh_carol.private}").key_id == signer.key_id


def test_load_signer_from_gpg(openpgp_keyring: OpenPGPKeyring,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GNUPGHOME", str(openpgp_keyring.gnupghome))
    fingerprint = openpgp_keyring.fingerprints["bob"]
    signer = load_signer(f"openpgp:{fingerprint.lower()}")
    assert isinstance(signer, OpenPGPSigner)
    assert signer.key_id == fingerprint
    signature = signer.sign(DATA, namespace=NAMESPACE_IMAGELIST)
    assert load_public_key(f"openpgp:{fingerprint}", at=NOW).verify(
        DATA, signature, namespace=NAMESPACE_IMAGELIST, at=NOW).key_id == fingerprint


@pytest.mark.parametrize("spec", ["openpgp:", "openpgp:XYZ", "openpgp:" + "A" * 39])
def test_malformed_openpgp_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError, match="key spec"):
        load_signer(spec)
    with pytest.raises(UsageError, match="key spec"):
        load_public_key(spec, at=NOW)


def test_missing_key_files_are_usage_errors_naming_the_spec(tmp_path: Path) -> None:
    missing = str(tmp_path / "id_nobody")
    with pytest.raises(UsageError, match="id_nobody") as caught:
        load_signer(missing)
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError, match="id_nobody"):
        load_public_key(missing + ".pub", at=NOW)
    with pytest.raises(UsageError, match="id_nobody"):
        load_public_key(missing, at=NOW)


def test_load_public_key_from_every_ssh_and_openpgp_form(ssh_alice: SSHKeyFiles,
                                                         openpgp_keyring: OpenPGPKeyring,
                                                         tmp_path: Path) -> None:
    expected = ssh_key(ssh_alice)
    assert load_public_key(str(ssh_alice.public), at=NOW) == expected
    # a private key file works too: the public key is derived from it
    assert load_public_key(str(ssh_alice.private), at=NOW) == expected
    alice_pgp = pgp_key(openpgp_keyring, "alice")
    armoured = tmp_path / "alice.asc"
    armoured.write_text(alice_pgp.armored, encoding="ascii")
    assert load_public_key(str(armoured), at=NOW) == alice_pgp


def test_files_that_hold_no_key_are_invalid_keys(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("just some notes\n", encoding="utf-8")
    with pytest.raises(InvalidKeyError, match=re.escape(str(garbage))):
        load_public_key(str(garbage), at=NOW)
    broken = tmp_path / "broken.asc"
    broken.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n", encoding="ascii")
    with pytest.raises(InvalidKeyError, match=re.escape(str(broken))):
        load_public_key(str(broken), at=NOW)


# --- verify_any ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "carol"])
def test_ssh_signer_is_picked_by_its_embedded_key(ssh_keys: dict[str, SSHKeyFiles],
                                                  policy_keys: list[PublicKey],
                                                  name: str) -> None:
    signature = SSHSigner.from_file(ssh_keys[name].private).sign(
        DATA, namespace=NAMESPACE_IMAGELIST)
    assert select_key(signature, policy_keys) == ssh_key(ssh_keys[name])
    verified = verify_any(DATA, signature, policy_keys, namespace=NAMESPACE_IMAGELIST, at=NOW)
    assert verified.key_id == ssh_key(ssh_keys[name]).key_id


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_openpgp_signer_is_picked_by_its_issuer(openpgp_keyring: OpenPGPKeyring,
                                                policy_keys: list[PublicKey],
                                                name: str) -> None:
    signature = pgp_sign(openpgp_keyring, name)
    # bob's issuer is his signing subkey, which still selects his primary key
    assert select_key(signature, policy_keys) == pgp_key(openpgp_keyring, name)
    verified = verify_any(DATA, signature, policy_keys, namespace=NAMESPACE_IMAGELIST, at=NOW)
    assert verified.key_id == openpgp_keyring.fingerprints[name]


def test_valid_ssh_signature_by_an_unlisted_key_is_untrusted(
        ssh_mallory: SSHKeyFiles, policy_keys: list[PublicKey]) -> None:
    mallory = SSHSigner.from_file(ssh_mallory.private)
    signature = mallory.sign(DATA, namespace=NAMESPACE_IMAGELIST)
    assert select_key(signature, policy_keys) is None
    with pytest.raises(UntrustedSignerError, match=re.escape(mallory.key_id)):
        verify_any(DATA, signature, policy_keys, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_bad_ssh_signature_by_an_unlisted_key_is_not_called_valid(
        ssh_mallory: SSHKeyFiles, policy_keys: list[PublicKey]) -> None:
    signature = SSHSigner.from_file(ssh_mallory.private).sign(DATA, namespace=NAMESPACE_IMAGELIST)
    with pytest.raises(SignatureError, match="not valid either") as caught:
        verify_any(DATA + b"x", signature, policy_keys, namespace=NAMESPACE_IMAGELIST, at=NOW)
    assert not isinstance(caught.value, UntrustedSignerError)


def test_listed_ssh_signer_with_wrong_data_or_namespace_fails(
        ssh_alice: SSHKeyFiles, policy_keys: list[PublicKey]) -> None:
    signature = SSHSigner.from_file(ssh_alice.private).sign(DATA, namespace=NAMESPACE_GIT)
    with pytest.raises(SignatureError, match="namespace"):
        verify_any(DATA, signature, policy_keys, namespace=NAMESPACE_IMAGELIST, at=NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_any(DATA[:-1], signature, policy_keys, namespace=NAMESPACE_GIT, at=NOW)


def test_openpgp_signature_by_an_unlisted_key_is_untrusted(
        openpgp_keyring: OpenPGPKeyring, policy_keys: list[PublicKey]) -> None:
    only_alice = [k for k in policy_keys if k.key_id != openpgp_keyring.fingerprints["bob"]]
    signature = pgp_sign(openpgp_keyring, "bob")
    with pytest.raises(UntrustedSignerError, match="not among"):
        verify_any(DATA, signature, only_alice, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_tampered_openpgp_data_fails_with_the_listed_key(
        openpgp_keyring: OpenPGPKeyring, policy_keys: list[PublicKey]) -> None:
    signature = pgp_sign(openpgp_keyring, "alice")
    with pytest.raises(SignatureError, match="does not match") as caught:
        verify_any(DATA.upper(), signature, policy_keys, namespace=NAMESPACE_IMAGELIST, at=NOW)
    assert not isinstance(caught.value, UntrustedSignerError)


def test_no_key_of_the_signature_scheme_means_untrusted(
        openpgp_keyring: OpenPGPKeyring, ssh_alice: SSHKeyFiles) -> None:
    signature = pgp_sign(openpgp_keyring, "alice")
    with pytest.raises(UntrustedSignerError):
        verify_any(DATA, signature, [ssh_key(ssh_alice)], namespace=NAMESPACE_IMAGELIST, at=NOW)
    with pytest.raises(UntrustedSignerError):
        verify_any(DATA, signature, [], namespace=NAMESPACE_IMAGELIST, at=NOW)


@pytest.mark.parametrize("signature", [b"", b"hello", b"-----BEGIN SSH SIGNATURE-----\n",
                                       b"-----BEGIN PGP SIGNATURE-----\n\n!!\n"])
def test_unrecognised_or_malformed_signatures_fail(policy_keys: list[PublicKey],
                                                   signature: bytes) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_any(DATA, signature, policy_keys, namespace=NAMESPACE_IMAGELIST, at=NOW)
    assert not isinstance(caught.value, UntrustedSignerError)


def test_ssh_verification_is_fast_enough_for_thousands_of_lists(
        ssh_keys: dict[str, SSHKeyFiles]) -> None:
    signer = SSHSigner.from_file(ssh_keys["alice"].private)
    keys = [public_key_from_policy(ssh_key(files).to_policy()) for files in ssh_keys.values()]
    lists = [DATA + str(i).encode() for i in range(500)]
    signatures = [signer.sign(data, namespace=NAMESPACE_IMAGELIST) for data in lists]
    start = time.perf_counter()
    for data, signature in zip(lists, signatures, strict=True):
        verify_any(data, signature, keys, namespace=NAMESPACE_IMAGELIST, at=NOW)
    elapsed = time.perf_counter() - start
    # One ssh-keygen process per list costs several ms; in-process must be far below.
    assert elapsed / len(lists) < 0.002, f"{elapsed / len(lists) * 1000:.2f} ms per list"


def test_ssh_keygen_signature_is_accepted_by_verify_any(ssh_carol: SSHKeyFiles,
                                                        policy_keys: list[PublicKey],
                                                        tmp_path: Path) -> None:
    message = tmp_path / "list.json"
    message.write_bytes(DATA)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", NAMESPACE_IMAGELIST, "-f",
                    str(ssh_carol.private), str(message)], check=True, capture_output=True)
    signature = message.with_suffix(".json.sig").read_bytes()
    assert verify_any(DATA, signature, policy_keys,
                      namespace=NAMESPACE_IMAGELIST, at=NOW).key_id == ssh_key(ssh_carol).key_id
