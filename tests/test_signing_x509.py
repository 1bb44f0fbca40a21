"""X.509 CMS signatures: DNs as openssl prints them, the CA store, verify_cms against
signatures made by the real openssl, and the endorser identity of the policy."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitreg.errors import (
    GitregError,
    InvalidKeyError,
    SignatureError,
    UntrustedSignerError,
    UsageError,
    WeakDigestError,
)
from gitreg.interop.smime import parse_smime
from gitreg.signing.interface import NAMESPACE_IMAGELIST, detect_scheme
from gitreg.signing.x509 import (
    CAStore,
    X509PublicKey,
    X509Signer,
    X509SignerInfo,
    check_binding,
    dn_openssl,
    sign_cms,
    verify_cms,
)
from gitreg.signing.x509.cms import _parse_signed_data_asn1
from gitreg.signing.x509.der import _PARSE_ERRORS, _read_signed_data
from tests.fixtures.x509_pki import (
    NOW,
    TestPKI,
    build_certificate,
    build_crl,
    new_key,
    openssl_dn,
    openssl_hash,
    write_identity,
)
from tests.tampering import tampered

DATA = b'{"hv:imagelist": {"dc:title": "a list"}}\n'
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


def openssl(*args: str | Path, input: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, args)], input=input, capture_output=True,
                          check=False, env=env)


def openssl_cms_sign(tmp_path: Path, signer: object, data: bytes, *extra: str | Path,
                     outform: str = "DER") -> bytes:
    """A detached CMS signature made by the real openssl."""
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    out = tmp_path / "sig.out"
    result = openssl("cms", "-sign", "-binary", "-in", src, "-signer",
                     signer.cert_path, "-inkey", signer.key_path,  # type: ignore[attr-defined]
                     "-outform", outform, "-out", out, *extra)
    assert result.returncode == 0, result.stderr.decode()
    return out.read_bytes()


@pytest.fixture(scope="module")
def store(x509_pki: TestPKI) -> CAStore:
    return CAStore.from_directory(x509_pki.ca_dir)


# --- DNs ----------------------------------------------------------------------


def test_dn_openssl_matches_openssl_for_the_session_certificates(x509_pki: TestPKI) -> None:
    for identity in (x509_pki.root, x509_pki.issuing, x509_pki.alice, x509_pki.bob):
        assert dn_openssl(identity.cert.subject) == identity.dn
        assert dn_openssl(identity.cert.issuer) == identity.ca_dn
    assert x509_pki.alice.dn == "/DC=org/DC=example/O=Hosts/CN=alice"


ODD_NAMES = [
    # '/' and '+' escaped, multi-valued RDN joined with '+', UTF-8 as \xHH.
    [x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                        "A/B+C=D, E")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "multi"),
                                     x509.NameAttribute(NameOID.USER_ID, "u1")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.LOCALITY_NAME, "Zürich")])],
    # BMP and universal strings: every byte, zeros included, as OpenSSL prints them.
    [x509.RelativeDistinguishedName([x509.NameAttribute(
        NameOID.STATE_OR_PROVINCE_NAME, "BMP é", _ASN1Type.BMPString)]),
     x509.RelativeDistinguishedName([x509.NameAttribute(
        NameOID.COMMON_NAME, "uni", _ASN1Type.UniversalString)])],
    # Unknown OIDs dotted, control characters escaped, less common short names.
    [x509.RelativeDistinguishedName([x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4.5"),
                                                        "odd")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                        "tab\there")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.c")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SERIAL_NUMBER, "42")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.GIVEN_NAME, "J")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SURNAME, "Doe")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.JURISDICTION_COUNTRY_NAME,
                                                        "DE")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER,
                                                        "VATDE-1")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH")]),
     x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "ch")])],
    # A backslash and a quote stay as they are.
    [x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        'back\\slash "q"')])],
]


@pytest.mark.parametrize("rdns", ODD_NAMES, ids=["escapes", "wide-strings", "oids", "quote"])
def test_dn_openssl_matches_openssl_compat_for_odd_names(rdns: list[x509.RelativeDistinguishedName],
                                                         tmp_path: Path) -> None:
    name = x509.Name(rdns)
    key = new_key()
    cert = build_certificate(name, key, issuer=None, ca=True)
    identity = write_identity(tmp_path, "odd", cert, key)
    assert dn_openssl(name) == openssl_dn(identity.cert_path, "-subject")


# --- The CA store ------------------------------------------------------------


def test_store_reads_the_igtf_directory_and_nothing_else(x509_pki: TestPKI,
                                                         store: CAStore) -> None:
    # .pem files and their <hash>.0 symlinks are one certificate each.
    assert {c.subject for c in store.certificates} == {x509_pki.root.cert.subject,
                                                       x509_pki.issuing.cert.subject}
    assert len(store.certificates) == 2
    assert store.anchors == (x509_pki.root.cert,)
    assert {c.issuer for c in store.crls} == {x509_pki.root.cert.subject,
                                              x509_pki.issuing.cert.subject}
    assert store.crls_of(x509_pki.issuing.cert) == [x509_pki.issuing_crl]


def test_store_from_directory_is_cached_until_a_file_changes(x509_pki: TestPKI,
                                                             tmp_path: Path) -> None:
    ca_dir = x509_pki.write_ca_dir(tmp_path / "ca", crls=[])
    first = CAStore.from_directory(ca_dir)
    assert CAStore.from_directory(ca_dir) is first
    assert first.crls == ()
    (ca_dir / "deadbeef.r0").write_bytes(
        x509_pki.issuing_crl.public_bytes(serialization.Encoding.PEM))
    second = CAStore.from_directory(ca_dir)
    assert second is not first
    assert second.crls == (x509_pki.issuing_crl,)


def test_store_rejects_a_corrupt_crl_file_by_name(x509_pki: TestPKI, tmp_path: Path) -> None:
    ca_dir = x509_pki.write_ca_dir(tmp_path / "ca")
    (ca_dir / "0badc0de.r0").write_bytes(b"\x30\x03garbage")
    with pytest.raises(InvalidKeyError, match=r"0badc0de\.r0"):
        CAStore.from_directory(ca_dir)


def test_store_of_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no-such-dir"):
        CAStore.from_directory(tmp_path / "no-such-dir")


def test_store_from_pem_is_cached_and_splits_anchors(x509_pki: TestPKI) -> None:
    pems = [x509_pki.root.cert_pem, x509_pki.issuing.cert_pem]
    store = CAStore.from_pem(pems)
    assert CAStore.from_pem(pems) is store
    assert store.anchors == (x509_pki.root.cert,)
    with pytest.raises(InvalidKeyError, match="CA certificate 0"):
        CAStore.from_pem([b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])


# --- verify_cms ---------------------------------------------------------------


def test_sign_cms_verifies_with_chain_and_names(x509_pki: TestPKI, store: CAStore) -> None:
    cms = sign_cms(DATA, x509_pki.alice.cert_pem, x509_pki.alice.key_pem)
    info = verify_cms(DATA, cms, store, at=NOW)
    assert info == X509SignerInfo(x509_pki.alice.dn, x509_pki.alice.ca_dn, x509_pki.alice.cert,
                                  (x509_pki.alice.cert, x509_pki.issuing.cert,
                                   x509_pki.root.cert), "sha256")


def test_sign_cms_is_accepted_by_openssl_cms_verify(x509_pki: TestPKI, tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "sig").write_bytes(sign_cms(DATA, x509_pki.bob.cert_pem, x509_pki.bob.key_pem))
    result = openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "sig",
                     "-content", tmp_path / "data", "-CAfile", x509_pki.ca_file,
                     "-no-CApath", "-no-CAstore", "-out", tmp_path / "out")
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "out").read_bytes() == DATA


@pytest.mark.parametrize("options", [
    [],
    ["-md", "sha512"],
    ["-md", "sha384", "-outform", "PEM"],
    ["-noattr"],
    ["-nocerts"],
], ids=["default", "sha512", "sha384-pem", "no-signed-attributes", "certificate-in-store"])
def test_openssl_cms_signatures_verify(x509_pki: TestPKI, tmp_path: Path,
                                       options: list[str]) -> None:
    outform = "PEM" if "PEM" in options else "DER"
    extra = [o for o in options if o not in ("-outform", "PEM")]
    signer = x509_pki.alice
    if "-nocerts" in options:
        # Without the certificate in the signature the signer must be in the store.
        signer = x509_pki.issuing
    cms = openssl_cms_sign(tmp_path, signer, DATA, *extra, outform=outform)
    store = CAStore.from_pem([x509_pki.root.cert_pem, x509_pki.issuing.cert_pem])
    if signer is x509_pki.issuing:
        with pytest.raises(UntrustedSignerError, match="keyUsage"):
            verify_cms(DATA, cms, store, at=NOW)
        return
    assert verify_cms(DATA, cms, store, at=NOW).subject_dn == signer.dn


def test_rsa_pkcs1_and_pss_signatures_by_openssl_verify(x509_pki: TestPKI, store: CAStore,
                                                        tmp_path: Path) -> None:
    plain = openssl_cms_sign(tmp_path, x509_pki.bob, DATA)
    assert verify_cms(DATA, plain, store, at=NOW).subject_dn == x509_pki.bob.dn
    pss = openssl_cms_sign(tmp_path, x509_pki.bob, DATA, "-keyopt",
                           "rsa_padding_mode:pss")
    assert b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a" in pss  # id-RSASSA-PSS
    assert verify_cms(DATA, pss, store, at=NOW).subject_dn == x509_pki.bob.dn
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cms(DATA, pss.replace(pss[-40:-30], bytes(10)), store, at=NOW)


def test_sha1_signature_is_rejected(x509_pki: TestPKI, store: CAStore, tmp_path: Path) -> None:
    cms = openssl_cms_sign(tmp_path, x509_pki.alice, DATA, "-md", "sha1")
    with pytest.raises(WeakDigestError, match="signature uses SHA-1, refused"):
        verify_cms(DATA, cms, store, at=NOW)


def test_tampered_data_is_a_bad_signature_not_an_untrusted_one(x509_pki: TestPKI,
                                                              store: CAStore) -> None:
    cms = sign_cms(DATA, x509_pki.alice.cert_pem, x509_pki.alice.key_pem)
    with pytest.raises(SignatureError, match="message digest does not match") as caught:
        verify_cms(DATA.replace(b"a list", b"A list"), cms, store, at=NOW)
    assert not isinstance(caught.value, UntrustedSignerError)
    assert x509_pki.alice.dn in caught.value.message


def test_tampered_signed_attributes_fail(x509_pki: TestPKI, store: CAStore,
                                         tmp_path: Path) -> None:
    cms = bytearray(openssl_cms_sign(tmp_path, x509_pki.alice, DATA))
    signing_time = bytes.fromhex("06092a864886f70d010905")  # signingTime OID
    at = cms.index(signing_time) + len(signing_time) + 6
    cms[at] ^= 0x01  # one digit of the signing time
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cms(DATA, bytes(cms), store, at=NOW)


def test_two_signers_are_rejected(x509_pki: TestPKI, store: CAStore, tmp_path: Path) -> None:
    cms = openssl_cms_sign(tmp_path, x509_pki.alice, DATA, "-signer", x509_pki.bob.cert_path,
                           "-inkey", x509_pki.bob.key_path)
    with pytest.raises(SignatureError, match="2 signers; exactly one"):
        verify_cms(DATA, cms, store, at=NOW)


def test_revoked_signer_is_rejected(x509_pki: TestPKI, store: CAStore) -> None:
    cms = sign_cms(DATA, x509_pki.revoked.cert_pem, x509_pki.revoked.key_pem)
    with pytest.raises(UntrustedSignerError, match="revoked by the CRL of") as caught:
        verify_cms(DATA, cms, store, at=NOW)
    assert caught.value.message.startswith(f"signer {x509_pki.revoked.dn}:")
    # The same signature is fine for a store that has no CRL: the CRL decided.
    no_crl = CAStore.from_pem([x509_pki.root.cert_pem, x509_pki.issuing.cert_pem])
    assert verify_cms(DATA, cms, no_crl, at=NOW).subject_dn == x509_pki.revoked.dn


def test_expired_signer_is_rejected(x509_pki: TestPKI, store: CAStore) -> None:
    cms = sign_cms(DATA, x509_pki.expired.cert_pem, x509_pki.expired.key_pem)
    with pytest.raises(UntrustedSignerError, match="expired at"):
        verify_cms(DATA, cms, store, at=NOW)
    # ... and was good while it was valid: today's CRL, which does not list it,
    # also tells that it was not revoked then.
    then = NOW - dt.timedelta(days=500)
    no_crl = CAStore.from_pem([x509_pki.root.cert_pem, x509_pki.issuing.cert_pem])
    assert verify_cms(DATA, cms, no_crl, at=then).subject_dn == x509_pki.expired.dn
    assert verify_cms(DATA, cms, store, at=then).subject_dn == x509_pki.expired.dn


def test_revocation_is_judged_at_the_reference_time(x509_pki: TestPKI, tmp_path: Path) -> None:
    hour = dt.timedelta(hours=1)
    crl = build_crl(x509_pki.issuing, [x509_pki.alice.cert], revoked_at=NOW - 6 * hour,
                    last_update=NOW - hour)
    store = CAStore.from_directory(x509_pki.write_ca_dir(
        tmp_path / "ca", crls=[(x509_pki.issuing, crl)]))
    cms = _alice_cms(x509_pki)
    identity = X509PublicKey(x509_pki.alice.dn, x509_pki.alice.ca_dn,
                             [x509_pki.root.cert_pem, x509_pki.issuing.cert_pem],
                             [crl.public_bytes(serialization.Encoding.PEM)])
    before = NOW - 7 * hour
    assert verify_cms(DATA, cms, store, at=before).subject_dn == x509_pki.alice.dn
    assert identity.verify(DATA, cms, namespace=NAMESPACE_IMAGELIST, at=before).key_id == \
        x509_pki.alice.dn
    for after in (NOW - 6 * hour, NOW):
        with pytest.raises(UntrustedSignerError, match=r"revoked by the CRL of .* since "):
            verify_cms(DATA, cms, store, at=after)
        with pytest.raises(UntrustedSignerError, match="revoked by the CRL of"):
            identity.verify(DATA, cms, namespace=NAMESPACE_IMAGELIST, at=after)


def test_key_compromise_invalidity_date_backdates_the_revocation(x509_pki: TestPKI,
                                                                 tmp_path: Path) -> None:
    hour = dt.timedelta(hours=1)
    crl = build_crl(x509_pki.issuing, [x509_pki.alice.cert], revoked_at=NOW - hour,
                    invalid_since=NOW - 10 * hour)
    store = CAStore.from_directory(x509_pki.write_ca_dir(
        tmp_path / "ca", crls=[(x509_pki.issuing, crl)]))
    cms = _alice_cms(x509_pki)
    assert verify_cms(DATA, cms, store, at=NOW - 11 * hour).subject_dn == x509_pki.alice.dn
    with pytest.raises(UntrustedSignerError, match="revoked by the CRL of"):
        verify_cms(DATA, cms, store, at=NOW - 6 * hour)


def test_validity_period_is_judged_at_the_reference_time(x509_pki: TestPKI,
                                                         store: CAStore) -> None:
    cms = _alice_cms(x509_pki)
    identity = X509PublicKey(x509_pki.alice.dn, x509_pki.alice.ca_dn,
                             [x509_pki.root.cert_pem, x509_pki.issuing.cert_pem])
    cert = x509_pki.alice.cert
    second = dt.timedelta(seconds=1)
    for inside in (cert.not_valid_before_utc, cert.not_valid_after_utc):
        assert identity.verify(DATA, cms, namespace=NAMESPACE_IMAGELIST,
                               at=inside).key_id == x509_pki.alice.dn
    with pytest.raises(UntrustedSignerError, match="not valid before"):
        identity.verify(DATA, cms, namespace=NAMESPACE_IMAGELIST,
                        at=cert.not_valid_before_utc - second)
    with pytest.raises(UntrustedSignerError, match="expired at"):
        identity.verify(DATA, cms, namespace=NAMESPACE_IMAGELIST,
                        at=cert.not_valid_after_utc + second)


def test_signature_before_validity_is_rejected(x509_pki: TestPKI, store: CAStore) -> None:
    cms = sign_cms(DATA, x509_pki.alice.cert_pem, x509_pki.alice.key_pem)
    with pytest.raises(UntrustedSignerError, match="not valid before"):
        verify_cms(DATA, cms, store, at=NOW - dt.timedelta(days=30))


def test_rogue_ca_with_the_same_names_is_rejected(x509_pki: TestPKI, store: CAStore) -> None:
    # mallory copies alice's DN, the rogue CA copies the issuing CA's DN: only
    # the signatures tell them apart.
    assert x509_pki.mallory.dn == x509_pki.alice.dn
    assert x509_pki.mallory.ca_dn == x509_pki.alice.ca_dn
    cms = sign_cms(DATA, x509_pki.mallory.cert_pem, x509_pki.mallory.key_pem)
    with pytest.raises(UntrustedSignerError, match="not signed by the key of the CA"):
        verify_cms(DATA, cms, store, at=NOW)
    # Carrying the rogue CA inside the signature does not make it an anchor.
    cms = sign_cms(DATA, x509_pki.mallory.cert_pem + x509_pki.rogue.cert_pem,
                   x509_pki.mallory.key_pem)
    with pytest.raises(UntrustedSignerError):
        verify_cms(DATA, cms, store, at=NOW)


def test_expired_crl_fails_and_says_which(x509_pki: TestPKI, tmp_path: Path) -> None:
    stale = build_crl(x509_pki.issuing, [], last_update=NOW - dt.timedelta(days=40),
                      next_update=NOW - dt.timedelta(days=10))
    ca_dir = x509_pki.write_ca_dir(tmp_path / "ca", crls=[(x509_pki.issuing, stale)])
    cms = sign_cms(DATA, x509_pki.alice.cert_pem, x509_pki.alice.key_pem)
    with pytest.raises(UntrustedSignerError, match=r"CRL of .*Issuing CA expired at .*\.r0"):
        verify_cms(DATA, cms, CAStore.from_directory(ca_dir), at=NOW)


def test_crl_not_signed_by_the_issuer_fails(x509_pki: TestPKI, tmp_path: Path) -> None:
    # The rogue CA has the issuing CA's name, so its CRL lands in the same slot.
    forged = build_crl(x509_pki.rogue, [])
    ca_dir = x509_pki.write_ca_dir(tmp_path / "ca", crls=[(x509_pki.issuing, forged)])
    cms = sign_cms(DATA, x509_pki.alice.cert_pem, x509_pki.alice.key_pem)
    with pytest.raises(UntrustedSignerError, match="not signed by its key"):
        verify_cms(DATA, cms, CAStore.from_directory(ca_dir), at=NOW)


def test_signer_without_smime_usage_is_rejected(x509_pki: TestPKI, store: CAStore,
                                                tmp_path: Path) -> None:
    server = x509_pki.issue("server", tmp_path, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    cms = sign_cms(DATA, server.cert_pem, server.key_pem)
    with pytest.raises(UntrustedSignerError, match="emailProtection"):
        verify_cms(DATA, cms, store, at=NOW)


def test_issuer_that_is_not_a_ca_is_rejected(x509_pki: TestPKI, store: CAStore,
                                             tmp_path: Path) -> None:
    under_alice = x509_pki.issue("sub", tmp_path, issuer=x509_pki.alice)
    cms = sign_cms(DATA, under_alice.cert_pem + x509_pki.alice.cert_pem, under_alice.key_pem)
    with pytest.raises(UntrustedSignerError, match="not a CA"):
        verify_cms(DATA, cms, store, at=NOW)


def test_path_length_constraint_is_enforced(x509_pki: TestPKI, store: CAStore,
                                            tmp_path: Path) -> None:
    sub_ca = x509_pki.issue("subca", tmp_path, ca=True)
    leaf = x509_pki.issue("deep", tmp_path, issuer=sub_ca)
    cms = sign_cms(DATA, leaf.cert_pem + sub_ca.cert_pem, leaf.key_pem)
    with pytest.raises(UntrustedSignerError, match="pathLenConstraint 0 exceeded"):
        verify_cms(DATA, cms, store, at=NOW)


def test_unknown_critical_extension_is_rejected(x509_pki: TestPKI, store: CAStore,
                                                tmp_path: Path) -> None:
    odd = x509_pki.issue("odd", tmp_path, extra=[(x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True)])
    cms = sign_cms(DATA, odd.cert_pem, odd.key_pem)
    with pytest.raises(UntrustedSignerError, match="unsupported critical extension"):
        verify_cms(DATA, cms, store, at=NOW)


def test_signer_certificate_missing_everywhere(x509_pki: TestPKI, store: CAStore,
                                               tmp_path: Path) -> None:
    cms = openssl_cms_sign(tmp_path, x509_pki.alice, DATA, "-nocerts")
    with pytest.raises(SignatureError, match="neither in the signature nor in the CA store"):
        verify_cms(DATA, cms, store, at=NOW)


@pytest.mark.parametrize("blob", [
    b"", b"\x30", b"\x30\x00", b"not a signature", b"\x30\x80" + b"\x00" * 10,
    b"-----BEGIN PKCS7-----\n!!!\n-----END PKCS7-----\n",
    b"-----BEGIN PKCS7-----\nMAA=\n",
    # ContentInfo of type data, not signed-data
    bytes.fromhex("300f06092a864886f70d010701a0020400"),
], ids=["empty", "one-byte", "empty-seq", "text", "indefinite", "bad-b64", "no-end",
        "data-type"])
def test_malformed_cms_is_a_signature_error(blob: bytes, store: CAStore) -> None:
    with pytest.raises(SignatureError):
        verify_cms(DATA, blob, store, at=NOW)


@FUZZ
@given(st.data())
def test_fuzzed_cms_raises_only_gitreg_errors(x509_pki: TestPKI, store: CAStore,
                                              data: st.DataObject) -> None:
    cms = tampered(data, _alice_cms(x509_pki), rounds=4, cut=64, insert=8, empty=b"\x30")
    with contextlib.suppress(GitregError):
        verify_cms(DATA, cms, store, at=NOW)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_signature_errors(store: CAStore, blob: bytes) -> None:
    with pytest.raises(SignatureError):
        verify_cms(DATA, blob, store, at=NOW)


_CMS_CACHE: dict[str, bytes] = {}


def _alice_cms(x509_pki: TestPKI) -> bytes:
    if "alice" not in _CMS_CACHE:
        _CMS_CACHE["alice"] = sign_cms(DATA, x509_pki.alice.cert_pem, x509_pki.alice.key_pem)
    return _CMS_CACHE["alice"]


def _bob_cms(x509_pki: TestPKI) -> bytes:
    if "bob" not in _CMS_CACHE:
        # RSA, with the root CA carried along: a second shape for the reader.
        _CMS_CACHE["bob"] = sign_cms(DATA, x509_pki.bob.cert_pem + x509_pki.root.cert_pem,
                                     x509_pki.bob.key_pem)
    return _CMS_CACHE["bob"]


# --- The direct DER reader of CMS ----------------------------------------------------


@pytest.mark.parametrize(("options", "direct"), [
    ([], True),
    (["-md", "sha512"], True),
    (["-noattr"], True),
    (["-keyid"], True),
    (["-nodetach"], True),
    (["-nosmimecap", "-md", "sha384"], True),
    (["-certfile", "ISSUING"], True),
    (["-stream"], False),                           # BER: indefinite lengths
    (["-nodetach", "-stream"], False),
    (["-keyopt", "rsa_padding_mode:pss"], False),   # PSS parameters
    (["-md", "sha1"], False),                       # an algorithm it does not name
], ids=["default", "sha512", "no-attributes", "key-id", "opaque", "sha384", "extra-cert",
        "ber", "opaque-ber", "pss", "sha1"])
def test_direct_cms_reader_agrees_with_asn1crypto(x509_pki: TestPKI, store: CAStore,
                                                  tmp_path: Path, options: list[str],
                                                  direct: bool) -> None:
    signer = x509_pki.bob if "rsa_padding_mode:pss" in options else x509_pki.alice
    options = [str(x509_pki.issuing.cert_path) if o == "ISSUING" else o for o in options]
    cms = openssl_cms_sign(tmp_path, signer, DATA, *options)
    general = _parse_signed_data_asn1(cms)
    if direct:
        assert _read_signed_data(cms) == general
    else:
        # Left to asn1crypto, so the verdict is the general reader's.
        with pytest.raises(ValueError):
            _read_signed_data(cms)
    if "sha1" in options:
        with pytest.raises(WeakDigestError, match="signature uses SHA-1, refused"):
            verify_cms(DATA, cms, store, at=NOW)
    else:
        assert verify_cms(DATA, cms, store, at=NOW).subject_dn == signer.dn


@pytest.mark.parametrize("name", ["imagelist01.signed", "imagelist02.signed",
                                  "imagelist_invalid.signed"])
def test_direct_cms_reader_reads_the_cloudkeeper_signatures(interop_dir: Path,
                                                            name: str) -> None:
    der = parse_smime((interop_dir / "cloudkeeper" / name).read_bytes()).signature_der
    assert _read_signed_data(der) == _parse_signed_data_asn1(der)


# Bytes that turn lengths long, indefinite or empty and tags into other types.
_DER_BYTES = st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x06, 0x24, 0x30, 0x31, 0x80, 0x81,
                              0x82, 0xA0, 0xA1, 0xFF])


@FUZZ
@given(st.data())
def test_direct_cms_reader_accepts_only_what_asn1crypto_reads_alike(
        x509_pki: TestPKI, data: st.DataObject) -> None:
    cms = tampered(data, data.draw(st.sampled_from([_alice_cms(x509_pki), _bob_cms(x509_pki)])),
                   rounds=3, cut=8, insert=4, empty=b"\x30", byte_values=_DER_BYTES)
    try:
        direct = _read_signed_data(cms)
    except _PARSE_ERRORS:
        return  # asn1crypto decides these
    assert _parse_signed_data_asn1(cms) == direct


# --- Caches: only work whose result cannot change is skipped ---------------------------


def test_cached_chain_is_checked_again_at_every_reference_time(x509_pki: TestPKI,
                                                               tmp_path: Path) -> None:
    store = CAStore.from_directory(x509_pki.write_ca_dir(tmp_path / "ca"))
    cms = _alice_cms(x509_pki)
    assert verify_cms(DATA, cms, store, at=NOW).subject_dn == x509_pki.alice.dn
    searches = dict(store._searches)
    assert len(searches) == 1
    alice = x509_pki.alice.cert
    second = dt.timedelta(seconds=1)
    with pytest.raises(UntrustedSignerError, match=f"{x509_pki.alice.dn} expired at"):
        verify_cms(DATA, cms, store, at=alice.not_valid_after_utc + second)
    with pytest.raises(UntrustedSignerError, match="is not valid before"):
        verify_cms(DATA, cms, store, at=alice.not_valid_before_utc - second)
    # Alice is still valid then, but the issuing CA's CRL (next update in 30 days) is not.
    with pytest.raises(UntrustedSignerError, match=r"CRL of .*Issuing CA expired at"):
        verify_cms(DATA, cms, store, at=NOW + dt.timedelta(days=31))
    # All from the one kept search, which the failures did not spoil.
    assert store._searches == searches
    assert verify_cms(DATA, cms, store, at=NOW).subject_dn == x509_pki.alice.dn


def test_cached_success_does_not_outlive_a_new_crl(x509_pki: TestPKI, tmp_path: Path) -> None:
    ca_dir = x509_pki.write_ca_dir(tmp_path / "ca", crls=[])
    cms = sign_cms(DATA, x509_pki.revoked.cert_pem, x509_pki.revoked.key_pem)
    assert verify_cms(DATA, cms, CAStore.from_directory(ca_dir), at=NOW).subject_dn == \
        x509_pki.revoked.dn
    # fetch-crl drops the issuing CA's CRL into the directory: a new store, new verdict.
    crl_path = ca_dir / f"{openssl_hash(ca_dir / 'issuing.pem')}.r0"
    crl_path.write_bytes(x509_pki.issuing_crl.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(UntrustedSignerError, match="revoked by the CRL of"):
        verify_cms(DATA, cms, CAStore.from_directory(ca_dir), at=NOW)
    # Each store judges by its own CRLs, in whichever order they are asked.
    with_crl = CAStore.from_pem([x509_pki.root.cert_pem, x509_pki.issuing.cert_pem],
                                [_pem_crl(x509_pki.issuing_crl)])
    without = CAStore.from_pem([x509_pki.root.cert_pem, x509_pki.issuing.cert_pem])
    assert verify_cms(DATA, cms, without, at=NOW).subject_dn == x509_pki.revoked.dn
    with pytest.raises(UntrustedSignerError, match="revoked"):
        verify_cms(DATA, cms, with_crl, at=NOW)
    assert verify_cms(DATA, cms, without, at=NOW).subject_dn == x509_pki.revoked.dn


def _pem_crl(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def test_cached_certificate_does_not_vouch_for_a_twin(x509_pki: TestPKI, tmp_path: Path) -> None:
    # A twin of alice's certificate: same subject, issuer name, serial and dates,
    # signed by the rogue CA (which bears the issuing CA's name). Only the
    # certificate's bytes tell it apart from the one verified before.
    store = CAStore.from_directory(x509_pki.write_ca_dir(tmp_path / "ca"))
    alice = x509_pki.alice.cert
    assert verify_cms(DATA, _alice_cms(x509_pki), store, at=NOW).subject_dn == x509_pki.alice.dn
    key = new_key()
    twin = (x509.CertificateBuilder().subject_name(alice.subject).issuer_name(alice.issuer)
            .public_key(key.public_key()).serial_number(alice.serial_number)
            .not_valid_before(alice.not_valid_before_utc)
            .not_valid_after(alice.not_valid_after_utc)
            .sign(x509_pki.rogue.key, hashes.SHA256()))
    identity = write_identity(tmp_path / "twin", "twin", twin, key)
    cms = sign_cms(DATA, identity.cert_pem, identity.key_pem)
    assert _read_signed_data(cms).signers[0].sid_serial == alice.serial_number
    with pytest.raises(UntrustedSignerError, match="not signed by the key of the CA"):
        verify_cms(DATA, cms, store, at=NOW)
    assert verify_cms(DATA, _alice_cms(x509_pki), store, at=NOW).subject_dn == x509_pki.alice.dn


# --- Binding, signer and identity ----------------------------------------------


def test_check_binding_quotes_both_pairs(x509_pki: TestPKI, store: CAStore) -> None:
    info = verify_cms(DATA, _alice_cms(x509_pki), store, at=NOW)
    check_binding(info, dn=x509_pki.alice.dn, ca=x509_pki.alice.ca_dn)
    with pytest.raises(UntrustedSignerError) as caught:
        check_binding(info, dn="/DC=org/CN=someone else", ca=x509_pki.alice.ca_dn,
                      source="list.json")
    message = caught.value.message
    assert message.startswith("list.json: ")
    assert x509_pki.alice.dn in message and "/DC=org/CN=someone else" in message
    with pytest.raises(UntrustedSignerError, match="hv:ca /DC=org/CN=Other CA"):
        check_binding(info, dn=x509_pki.alice.dn, ca="/DC=org/CN=Other CA")


def test_signer_signs_pem_that_openssl_and_the_identity_accept(x509_pki: TestPKI,
                                                               tmp_path: Path) -> None:
    signer = X509Signer.from_files(x509_pki.alice.cert_path, x509_pki.alice.key_path,
                                   ca_dir=x509_pki.ca_dir, at=NOW)
    assert signer.key_id == x509_pki.alice.dn
    signature = signer.sign(DATA, namespace=NAMESPACE_IMAGELIST)
    assert signature.startswith(b"-----BEGIN PKCS7-----\n")
    assert detect_scheme(signature) == "x509"
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "data.sig").write_bytes(signature)
    result = openssl("cms", "-verify", "-binary", "-inform", "PEM", "-in",
                     tmp_path / "data.sig", "-content", tmp_path / "data", "-CAfile",
                     x509_pki.ca_file, "-no-CApath", "-no-CAstore", "-out", "/dev/null")
    assert result.returncode == 0, result.stderr.decode()
    verified = signer.public_key().verify(DATA, signature, namespace=NAMESPACE_IMAGELIST, at=NOW)
    assert (verified.scheme, verified.key_id) == ("x509", x509_pki.alice.dn)


def test_identity_round_trips_through_the_policy(x509_pki: TestPKI) -> None:
    identity = X509PublicKey.from_certificate_file(x509_pki.alice.cert_path, x509_pki.ca_dir,
                                                   at=NOW)
    entry = identity.to_policy()
    assert entry["scheme"] == "x509"
    assert (entry["dn"], entry["ca_dn"]) == (x509_pki.alice.dn, x509_pki.alice.ca_dn)
    # The chain above alice and the CRLs of its issuers, nothing else.
    assert len(entry["ca_certificates"]) == 2
    assert len(entry["crls"]) == 2
    again = X509PublicKey.from_policy(entry)
    assert again == identity and again.to_policy() == entry
    assert again.key_id == x509_pki.alice.dn


def test_identity_rejects_other_signers(x509_pki: TestPKI) -> None:
    identity = X509PublicKey.from_certificate_file(x509_pki.alice.cert_path, x509_pki.ca_dir,
                                                   at=NOW)
    bob_sig = sign_cms(DATA, x509_pki.bob.cert_pem, x509_pki.bob.key_pem)
    with pytest.raises(UntrustedSignerError, match="hv:dn /DC=org/DC=example/O=Hosts/CN=alice"):
        identity.verify(DATA, bob_sig, namespace=NAMESPACE_IMAGELIST, at=NOW)
    mallory_sig = sign_cms(DATA, x509_pki.mallory.cert_pem, x509_pki.mallory.key_pem)
    with pytest.raises(UntrustedSignerError, match="not signed by the key"):
        identity.verify(DATA, mallory_sig, namespace=NAMESPACE_IMAGELIST, at=NOW)
    revoked_sig = sign_cms(DATA, x509_pki.revoked.cert_pem, x509_pki.revoked.key_pem)
    with pytest.raises(UntrustedSignerError, match="revoked"):
        identity.verify(DATA, revoked_sig, namespace=NAMESPACE_IMAGELIST, at=NOW)


def test_identity_from_a_file_with_its_chain(x509_pki: TestPKI, tmp_path: Path) -> None:
    bundle = tmp_path / "alice-chain.pem"
    bundle.write_bytes(x509_pki.alice.cert_pem + x509_pki.issuing.cert_pem
                       + x509_pki.root.cert_pem)
    identity = X509PublicKey.from_certificate_file(bundle, at=NOW)
    assert identity.key_id == x509_pki.alice.dn
    assert identity.verify(DATA, _alice_cms(x509_pki), namespace="x", at=NOW).key_id == \
        x509_pki.alice.dn
    with pytest.raises(UsageError, match="no CA certificates"):
        X509PublicKey.from_certificate_file(x509_pki.alice.cert_path, at=NOW)
    with pytest.raises(UntrustedSignerError):
        X509PublicKey.from_certificate_file(x509_pki.mallory.cert_path, x509_pki.ca_dir, at=NOW)


@pytest.mark.parametrize(("entry", "message"), [
    ({"scheme": "ssh"}, "not 'x509'"),
    ({"scheme": "x509", "dn": "/CN=a"}, "'dn' and 'ca_dn'"),
    ({"scheme": "x509", "dn": "/CN=a", "ca_dn": "/CN=b", "ca_certificates": "x"},
     "list of PEM strings"),
    ({"scheme": "x509", "dn": "CN=a", "ca_dn": "/CN=b", "ca_certificates": ["x"]},
     "slash form"),
    ({"scheme": "x509", "dn": "/CN=a", "ca_dn": "/CN=b", "ca_certificates": ["junk"]},
     "not a PEM certificate"),
    ({"scheme": "x509", "dn": "/CN=a", "ca_dn": "/CN=b", "ca_certificates": []},
     "no CA certificates"),
])
def test_bad_policy_entries_are_invalid_keys(entry: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidKeyError, match=message):
        X509PublicKey.from_policy(entry)


def test_identity_needs_a_trust_anchor(x509_pki: TestPKI) -> None:
    with pytest.raises(InvalidKeyError, match="no self-signed trust anchor"):
        X509PublicKey(x509_pki.alice.dn, x509_pki.alice.ca_dn, [x509_pki.issuing.cert_pem])


def test_signer_refuses_a_key_of_another_certificate(x509_pki: TestPKI) -> None:
    with pytest.raises(UsageError, match="does not belong to certificate"):
        X509Signer(x509_pki.alice.cert_pem, x509_pki.bob.key_pem)
    with pytest.raises(UsageError, match="not a PEM private key"):
        X509Signer(x509_pki.alice.cert_pem, b"junk")
    encrypted = x509_pki.alice.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(UsageError, match="private key"):
        X509Signer(x509_pki.alice.cert_pem, encrypted)
    with pytest.raises(UsageError, match="no CA certificates known"):
        X509Signer(x509_pki.alice.cert_pem, x509_pki.alice.key_pem).public_key()


def test_store_ignores_the_system_bundle(x509_pki: TestPKI, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Point every ambient OpenSSL location at the rogue CA: nothing changes.
    ambient = tmp_path / "ambient"
    ambient.mkdir()
    shutil.copy(x509_pki.rogue_file, ambient / "rogue.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(x509_pki.rogue_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(ambient))
    cms = sign_cms(DATA, x509_pki.mallory.cert_pem, x509_pki.mallory.key_pem)
    with pytest.raises(UntrustedSignerError):
        verify_cms(DATA, cms, CAStore.from_directory(x509_pki.ca_dir), at=NOW)


def test_an_embedded_certificate_claiming_x509_v4_is_a_malformed_signature(
        x509_pki: TestPKI, store: CAStore) -> None:
    """cryptography's InvalidVersion is no ValueError; it must not escape (found by fuzzing)."""
    alice = x509_pki.alice
    cms = sign_cms(b"list bytes", alice.cert_pem, alice.key_pem)
    cert_der = alice.cert.public_bytes(serialization.Encoding.DER)
    v3 = b"\xa0\x03\x02\x01\x02"
    assert v3 in cert_der and cert_der in cms
    v4 = cert_der.replace(v3, b"\xa0\x03\x02\x01\x03", 1)
    with pytest.raises(SignatureError) as caught:
        verify_cms(b"list bytes", cms.replace(cert_der, v4), store, at=NOW)
    assert "malformed" in caught.value.message
