"""The registry of signature schemes is the one place scheme knowledge lives:
each entry's armour, key-id shape and key class agree with its module."""

from __future__ import annotations

import pytest

from gitreg.errors import InvalidKeyError, SignatureError
from gitreg.model import policy as policy_model
from gitreg.signing import schemes
from gitreg.signing.interface import NAMESPACE_IMAGELIST, PublicKey, Signer
from gitreg.signing.openpgp import OpenPGPSigner
from gitreg.signing.x509 import X509Signer
from tests.fixtures.openpgp_keys import OpenPGPKeyring
from tests.fixtures.x509_pki import TestPKI
from tests.registry_simulator import ssh_signer

DATA = b'{"hv:imagelist": {}}\n'


def _signer(name: str, openpgp_keyring: OpenPGPKeyring, x509_pki: TestPKI) -> Signer:
    if name == "ssh":
        return ssh_signer("schemes")
    if name == "openpgp":
        return OpenPGPSigner(openpgp_keyring.fingerprints["alice"],
                             str(openpgp_keyring.gnupghome))
    return X509Signer(x509_pki.alice.cert_pem, x509_pki.alice.key_pem,
                      ca_certs_pem=[x509_pki.root.cert_pem, x509_pki.issuing.cert_pem])


@pytest.mark.parametrize("name", list(schemes.SCHEMES))
def test_each_registered_scheme_agrees_with_its_module(
        name: str, openpgp_keyring: OpenPGPKeyring, x509_pki: TestPKI) -> None:
    info = schemes.SCHEMES[name]
    signer = _signer(name, openpgp_keyring, x509_pki)
    key = signer.public_key()
    signature = signer.sign(DATA, namespace=NAMESPACE_IMAGELIST)
    assert schemes.detect_scheme(signature) == name == signer.scheme == key.scheme
    assert info.key_id_shape.fullmatch(key.key_id), key.key_id
    assert info.public_key_class() is type(key)
    loaded = schemes.key_from_policy(key.to_policy())
    assert isinstance(loaded, PublicKey) and loaded.key_id == key.key_id
    scheme, named = schemes.named_signer(signature)
    assert scheme == name
    # SSH and OpenPGP name their signer; a CMS signature names nobody cheaply.
    assert (named is not None and key.matches_named(named)) is (name != "x509")


def test_the_policy_checker_knows_exactly_the_registered_schemes() -> None:
    assert tuple(schemes.SCHEMES) == policy_model.SCHEMES


def test_unknown_scheme_and_armour_are_refused() -> None:
    with pytest.raises(InvalidKeyError, match="unknown scheme 'rot13'"):
        schemes.key_from_policy({"scheme": "rot13"})
    with pytest.raises(SignatureError, match="unrecognised signature format"):
        schemes.detect_scheme(b"-----BEGIN SOMETHING-----")
