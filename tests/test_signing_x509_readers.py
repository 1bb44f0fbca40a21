"""The fast CMS reader (``x509.der``) and the asn1crypto reader (``x509.cms``)
give the same verdict on the same bytes: the fast one exists only for speed.

Property, over DER signatures mutated at random (hypothesis; its seed is
printed on failure and fixed under ``HYPOTHESIS_PROFILE=ci``): whenever the
fast reader accepts the bytes, the general reader accepts them too and reads
exactly the same SignedData; and ``verify_cms`` says the same (accepts, or
raises the same error with the same message) whichever reader it uses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitreg.errors import GitregError
from gitreg.signing.x509 import CAStore, sign_cms, verify_cms
from gitreg.signing.x509 import cms as cms_module
from gitreg.signing.x509.cms import _parse_signed_data_asn1
from gitreg.signing.x509.der import _PARSE_ERRORS, _read_signed_data
from tests.fixtures.x509_pki import NOW, TestPKI
from tests.tampering import tampered

DATA = b'{"hv:imagelist": {"dc:title": "readers"}}\n'
PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
_SIGNATURES: dict[str, bytes] = {}


def _signature(x509_pki: TestPKI, kind: str, tmp_path: Path) -> bytes:
    """A DER signature the fast reader reads: gitreg's own, or openssl's."""
    if kind not in _SIGNATURES:
        if kind == "gitreg":
            _SIGNATURES[kind] = cms_module._dearmour(
                sign_cms(DATA, x509_pki.alice.cert_pem, x509_pki.alice.key_pem))
        else:
            content = tmp_path / "content"
            content.write_bytes(DATA)
            _SIGNATURES[kind] = subprocess.run(
                ["openssl", "cms", "-sign", "-binary", "-outform", "DER", "-in", content,
                 "-signer", x509_pki.bob.cert_path, "-inkey", x509_pki.bob.key_path,
                 "-certfile", x509_pki.issuing.cert_path],
                capture_output=True, check=True).stdout
    return _SIGNATURES[kind]


def _verdict(cms: bytes, store: CAStore, *, general_only: bool) -> tuple[str, str]:
    def refuse(der: bytes) -> None:
        raise ValueError("the fast reader is switched off")

    with mock.patch.object(cms_module, "_read_signed_data",
                           refuse if general_only else _read_signed_data):
        try:
            return "accepted", verify_cms(DATA, cms, store, at=NOW).subject_dn
        except GitregError as exc:
            return type(exc).__name__, exc.message


@pytest.mark.parametrize("kind", ["gitreg", "openssl"])
def test_both_readers_read_the_unmutated_signatures_alike(
        x509_pki: TestPKI, store: CAStore, tmp_path: Path, kind: str) -> None:
    der = _signature(x509_pki, kind, tmp_path)
    assert _read_signed_data(der) == _parse_signed_data_asn1(der)
    assert _verdict(der, store, general_only=False)[0] == "accepted"
    assert _verdict(der, store, general_only=True) == _verdict(der, store, general_only=False)


@PROPERTY
@given(data=st.data(), kind=st.sampled_from(["gitreg", "openssl"]))
def test_mutated_der_gets_the_same_verdict_from_both_readers(
        x509_pki: TestPKI, store: CAStore, tmp_path: Path, data: st.DataObject,
        kind: str) -> None:
    mutated = tampered(data, _signature(x509_pki, kind, tmp_path), rounds=3, cut=32,
                       insert=4, empty=b"\x30")
    try:
        fast = _read_signed_data(mutated)
    except _PARSE_ERRORS:
        fast = None  # deferred: the general reader decides alone, by construction
    if fast is not None:
        assert _parse_signed_data_asn1(mutated) == fast
    assert _verdict(mutated, store, general_only=True) == \
        _verdict(mutated, store, general_only=False)


@pytest.fixture
def store(x509_pki: TestPKI) -> CAStore:
    return CAStore.from_directory(x509_pki.ca_dir)
