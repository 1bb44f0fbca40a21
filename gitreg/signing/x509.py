"""X.509 signatures: detached CMS (the signature inside S/MIME), in-process.

This is how the HEPiX tools sign lists: vmcaster and AppDB sign with an IGTF
grid certificate, vmcatcher trusts a list when the signature chains to its
CA directory (``/etc/grid-security/certificates``: ``*.pem``, ``<hash>.0``,
CRLs ``<hash>.r0``) and the signer is the list's endorser (``hv:dn`` and
``hv:ca`` in OpenSSL slash form).

Verification never spawns openssl and never looks at the system CA bundle:
the CMS structure is parsed with asn1crypto, signatures are checked with
cryptography, and the chain is built against a ``CAStore`` only. Stores are
cached and keep the results of certificate-signature checks, so verifying many
lists signed under the same CA costs one CMS signature check each.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID

from gitreg.errors import (
    InvalidKeyError,
    SignatureError,
    UntrustedSignerError,
    UsageError,
    WeakDigestError,
)
from gitreg.signing.interface import (
    NAMESPACE_IMAGELIST,
    PublicKey,
    Signer,
    VerifiedSignature,
)

# What asn1crypto raises for malformed input, and cryptography for bad keys.
# cryptography's InvalidVersion (a certificate claiming X.509 v4+) is no ValueError.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError,
                 OverflowError, UnicodeDecodeError, binascii.Error, x509.InvalidVersion,
                 x509.DuplicateExtension)

# --- Distinguished names in OpenSSL slash form -------------------------------

# OpenSSL 3.0 short names (OBJ_nid2sn) of the attribute types a DN can carry;
# X509_NAME_oneline prints any other type as its dotted OID.
_OPENSSL_SHORT_NAMES: Mapping[str, str] = {
    "2.5.4.3": "CN", "2.5.4.4": "SN", "2.5.4.5": "serialNumber", "2.5.4.6": "C",
    "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "street", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.12": "title", "2.5.4.13": "description",
    "2.5.4.14": "searchGuide", "2.5.4.15": "businessCategory",
    "2.5.4.16": "postalAddress", "2.5.4.17": "postalCode", "2.5.4.18": "postOfficeBox",
    "2.5.4.19": "physicalDeliveryOfficeName", "2.5.4.20": "telephoneNumber",
    "2.5.4.21": "telexNumber", "2.5.4.22": "teletexTerminalIdentifier",
    "2.5.4.23": "facsimileTelephoneNumber", "2.5.4.24": "x121Address",
    "2.5.4.25": "internationaliSDNNumber", "2.5.4.26": "registeredAddress",
    "2.5.4.27": "destinationIndicator", "2.5.4.28": "preferredDeliveryMethod",
    "2.5.4.29": "presentationAddress", "2.5.4.30": "supportedApplicationContext",
    "2.5.4.31": "member", "2.5.4.32": "owner", "2.5.4.33": "roleOccupant",
    "2.5.4.34": "seeAlso", "2.5.4.35": "userPassword", "2.5.4.36": "userCertificate",
    "2.5.4.37": "cACertificate", "2.5.4.38": "authorityRevocationList",
    "2.5.4.39": "certificateRevocationList", "2.5.4.40": "crossCertificatePair",
    "2.5.4.41": "name", "2.5.4.42": "GN", "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier", "2.5.4.45": "x500UniqueIdentifier",
    "2.5.4.46": "dnQualifier", "2.5.4.47": "enhancedSearchGuide",
    "2.5.4.48": "protocolInformation", "2.5.4.49": "distinguishedName",
    "2.5.4.50": "uniqueMember", "2.5.4.51": "houseIdentifier",
    "2.5.4.52": "supportedAlgorithms", "2.5.4.53": "deltaRevocationList",
    "2.5.4.54": "dmdName", "2.5.4.65": "pseudonym", "2.5.4.72": "role",
    "2.5.4.97": "organizationIdentifier", "2.5.4.98": "c3", "2.5.4.99": "n3",
    "2.5.4.100": "dnsName",
    "0.9.2342.19200300.100.1.1": "UID", "0.9.2342.19200300.100.1.2": "textEncodedORAddress",
    "0.9.2342.19200300.100.1.3": "mail", "0.9.2342.19200300.100.1.4": "info",
    "0.9.2342.19200300.100.1.5": "favouriteDrink", "0.9.2342.19200300.100.1.6": "roomNumber",
    "0.9.2342.19200300.100.1.7": "photo", "0.9.2342.19200300.100.1.8": "userClass",
    "0.9.2342.19200300.100.1.9": "host", "0.9.2342.19200300.100.1.10": "manager",
    "0.9.2342.19200300.100.1.11": "documentIdentifier",
    "0.9.2342.19200300.100.1.12": "documentTitle",
    "0.9.2342.19200300.100.1.13": "documentVersion",
    "0.9.2342.19200300.100.1.14": "documentAuthor",
    "0.9.2342.19200300.100.1.15": "documentLocation",
    "0.9.2342.19200300.100.1.20": "homeTelephoneNumber",
    "0.9.2342.19200300.100.1.21": "secretary", "0.9.2342.19200300.100.1.22": "otherMailbox",
    "0.9.2342.19200300.100.1.23": "lastModifiedTime",
    "0.9.2342.19200300.100.1.24": "lastModifiedBy", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.26": "aRecord", "0.9.2342.19200300.100.1.27": "pilotAttributeType27",
    "0.9.2342.19200300.100.1.28": "mXRecord", "0.9.2342.19200300.100.1.29": "nSRecord",
    "0.9.2342.19200300.100.1.30": "sOARecord", "0.9.2342.19200300.100.1.31": "cNAMERecord",
    "0.9.2342.19200300.100.1.37": "associatedDomain",
    "0.9.2342.19200300.100.1.38": "associatedName",
    "0.9.2342.19200300.100.1.39": "homePostalAddress",
    "0.9.2342.19200300.100.1.40": "personalTitle",
    "0.9.2342.19200300.100.1.41": "mobileTelephoneNumber",
    "0.9.2342.19200300.100.1.42": "pagerTelephoneNumber",
    "0.9.2342.19200300.100.1.43": "friendlyCountryName", "0.9.2342.19200300.100.1.44": "uid",
    "0.9.2342.19200300.100.1.45": "organizationalStatus",
    "0.9.2342.19200300.100.1.46": "janetMailbox",
    "0.9.2342.19200300.100.1.47": "mailPreferenceOption",
    "0.9.2342.19200300.100.1.48": "buildingName", "0.9.2342.19200300.100.1.49": "dSAQuality",
    "0.9.2342.19200300.100.1.50": "singleLevelQuality",
    "0.9.2342.19200300.100.1.51": "subtreeMinimumQuality",
    "0.9.2342.19200300.100.1.52": "subtreeMaximumQuality",
    "0.9.2342.19200300.100.1.53": "personalSignature",
    "0.9.2342.19200300.100.1.54": "dITRedirect", "0.9.2342.19200300.100.1.55": "audio",
    "0.9.2342.19200300.100.1.56": "documentPublisher",
    "1.2.840.113549.1.9.1": "emailAddress", "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.8": "unstructuredAddress",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL", "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
    "1.2.643.3.131.1.1": "INN", "1.2.643.100.1": "OGRN", "1.2.643.100.3": "SNILS",
    "1.2.643.100.5": "OGRNIP",
}

_TAG_SEQUENCE = 0x30
_TAG_SET = 0x31
_TAG_OID = 0x06
_TAG_GENERAL_STRING = 0x1B
# Printable ASCII other than the two characters OpenSSL escapes: such values
# (nearly all of them) are copied as they are.
_PLAIN_VALUE = re.compile(rb"[ -*,-.0-~]*")


def _read_tlv(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at ``pos``."""
    if pos + 2 > len(buf):
        raise ValueError("truncated DER element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not used in names")
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(buf):
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos:pos + count], "big")
        pos += count
    end = pos + length
    if end > len(buf):
        raise ValueError("truncated DER element")
    return tag, pos, end


@lru_cache(maxsize=512)
def _oid_dotted(body: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or body[-1] & 0x80:
        raise ValueError("malformed object identifier")
    top = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (top, arcs[0] - 40 * top, *arcs[1:]))


def _escape_value(raw: bytes, tag: int) -> str:
    """An attribute value the way X509_NAME_oneline prints it."""
    if tag != _TAG_GENERAL_STRING and _PLAIN_VALUE.fullmatch(raw):
        return raw.decode("ascii")
    keep = (True, True, True, True)
    if tag == _TAG_GENERAL_STRING and len(raw) % 4 == 0:
        # OpenSSL's guess at a 4-byte universal string: print only its low bytes.
        nonzero = [any(raw[j] for j in range(i, len(raw), 4)) for i in range(4)]
        if not (nonzero[0] or nonzero[1] or nonzero[2]):
            keep = (False, False, False, True)
    out: list[str] = []
    for j, byte in enumerate(raw):
        if not keep[j & 3]:
            continue
        if byte < 0x20 or byte > 0x7E:
            out.append(f"\\x{byte:02X}")
        elif byte in b"/+":
            out.append("\\" + chr(byte))
        else:
            out.append(chr(byte))
    return "".join(out)


@lru_cache(maxsize=4096)
def _dn_from_der(der: bytes) -> str:
    """OpenSSL slash form of a DER-encoded Name (X509_NAME_oneline, OpenSSL 3)."""
    tag, pos, end = _read_tlv(der, 0)
    if tag != _TAG_SEQUENCE or end != len(der):
        raise ValueError("a Name is a DER SEQUENCE")
    out: list[str] = []
    while pos < end:
        tag, rdn_pos, rdn_end = _read_tlv(der, pos)
        if tag != _TAG_SET or rdn_end > end:
            raise ValueError("a relative distinguished name is a DER SET")
        separator = "/"
        while rdn_pos < rdn_end:
            tag, atv_pos, atv_end = _read_tlv(der, rdn_pos)
            if tag != _TAG_SEQUENCE or atv_end > rdn_end:
                raise ValueError("an attribute is a DER SEQUENCE")
            tag, oid_pos, oid_end = _read_tlv(der, atv_pos)
            if tag != _TAG_OID:
                raise ValueError("an attribute type is an OBJECT IDENTIFIER")
            oid = _oid_dotted(der[oid_pos:oid_end])
            value_tag, value_pos, value_end = _read_tlv(der, oid_end)
            if value_end != atv_end:
                raise ValueError("trailing data in an attribute")
            name = _OPENSSL_SHORT_NAMES.get(oid, oid)
            value = _escape_value(der[value_pos:value_end], value_tag)
            # Multi-valued RDNs are joined with '+', as OpenSSL 3 prints them.
            out.append(f"{separator}{name}={value}")
            separator = "+"
            rdn_pos = atv_end
        pos = rdn_end
    return "".join(out)


def dn_openssl(name: x509.Name) -> str:
    """A DN in OpenSSL slash form, ``/DC=org/DC=example/O=Hosts/CN=alice``.

    The form vmcatcher compares ``hv:dn`` and ``hv:ca`` against (what
    ``openssl x509 -noout -subject -nameopt compat`` prints): attributes in DER
    order, OpenSSL short names, ``/`` and ``+`` escaped, bytes outside
    printable ASCII as ``\\xHH``.
    """
    return _dn_from_der(name.public_bytes())


def _raw_names(cert_der: bytes) -> tuple[bytes, bytes]:
    """The issuer and subject Names of a DER certificate, exactly as encoded."""
    _, pos, _ = _read_tlv(cert_der, 0)           # Certificate
    _, pos, _ = _read_tlv(cert_der, pos)         # TBSCertificate
    tag, _, end = _read_tlv(cert_der, pos)
    if tag == 0xA0:  # [0] version
        pos = end
    for _ in range(2):  # serialNumber, signature algorithm
        _, _, pos = _read_tlv(cert_der, pos)
    _, _, issuer_end = _read_tlv(cert_der, pos)
    issuer = cert_der[pos:issuer_end]
    _, _, validity_end = _read_tlv(cert_der, issuer_end)
    _, _, subject_end = _read_tlv(cert_der, validity_end)
    return issuer, cert_der[validity_end:subject_end]


# id-ce-authorityKeyIdentifier (2.5.29.35), as its DER OID body.
_OID_AKI_BODY = bytes([0x55, 0x1D, 0x23])


class RefusedCertificateError(ValueError):
    """A certificate gitreg refuses before ``cryptography`` reads it (see ``serial_problem``)."""


def _positive(integer: bytes) -> bool:
    return bool(integer) and not integer[0] & 0x80 and any(integer)


def serial_problem(cert_der: bytes) -> str | None:
    """Why a certificate's serial number (or the one its authority key
    identifier names) is not positive, or None.

    RFC 5280 forbids such serials; some real IGTF certificates (GridKa-CA)
    carry one in the authority key identifier. ``cryptography`` warns on them
    today and will refuse them: gitreg refuses them itself, from the DER, so
    the verdict is the same with every ``cryptography`` version.
    """
    try:
        _, pos, _ = _read_tlv(cert_der, 0)           # Certificate
        _, pos, tbs_end = _read_tlv(cert_der, pos)   # TBSCertificate
        tag, body, end = _read_tlv(cert_der, pos)
        if tag == 0xA0:  # [0] version
            tag, body, end = _read_tlv(cert_der, end)
        if tag != 0x02 or not _positive(cert_der[body:end]):
            return "its serial number is not a positive integer (RFC 5280 forbids that)"
        pos = end
        extensions = None
        while pos < tbs_end:
            tag, body, pos = _read_tlv(cert_der, pos)
            if tag == 0xA3:  # [3] extensions
                extensions = body
        if extensions is None:
            return None
        _, pos, ext_end = _read_tlv(cert_der, extensions)
        while pos < ext_end:
            _, field, pos = _read_tlv(cert_der, pos)
            _, oid_start, oid_end = _read_tlv(cert_der, field)
            if cert_der[oid_start:oid_end] != _OID_AKI_BODY:
                continue
            tag, value, value_end = _read_tlv(cert_der, oid_end)
            if tag == 0x01:  # critical BOOLEAN
                tag, value, value_end = _read_tlv(cert_der, value_end)
            _, inner, inner_end = _read_tlv(cert_der, value)   # AuthorityKeyIdentifier
            while inner < inner_end:
                tag, body, inner = _read_tlv(cert_der, inner)
                if tag == 0x82 and not _positive(cert_der[body:inner]):
                    return ("its authority key identifier names a serial number that is "
                            "not positive (RFC 5280 forbids that)")
    except ValueError:
        return None  # not this check's to judge: cryptography reports malformed DER
    return None


def _checked_certificate(der: bytes) -> x509.Certificate:
    problem = serial_problem(der)
    if problem is not None:
        raise RefusedCertificateError(problem)
    return x509.load_der_x509_certificate(der)


def _dns_of_der(cert: x509.Certificate, der: bytes) -> tuple[str, str]:
    try:
        issuer, subject = _raw_names(der)
        return _dn_from_der(subject), _dn_from_der(issuer)
    except ValueError:
        # Only for names our reader refuses; cryptography re-encodes them.
        return dn_openssl(cert.subject), dn_openssl(cert.issuer)


def certificate_dns(cert: x509.Certificate) -> tuple[str, str]:
    """(subject, issuer) of ``cert`` in OpenSSL slash form."""
    return _dns_of_der(cert, cert.public_bytes(serialization.Encoding.DER))


# --- Reading certificates and CRLs --------------------------------------------

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)-----END \1-----", re.DOTALL)
_PEM_CERTIFICATE = b"CERTIFICATE"
_PEM_CRL = b"X509 CRL"


def _pem_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(label, DER) of every PEM block; base64 errors raise ValueError."""
    blocks = []
    for match in _PEM_BLOCK.finditer(data):
        body = re.sub(rb"\s+", b"", match.group(2))
        blocks.append((match.group(1), base64.b64decode(body, validate=True)))
    return blocks


def _load_material(data: bytes, *, crl_file: bool,
                   ) -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
    """Certificates and CRLs of one file: PEM (any number of blocks) or one DER object."""
    certs: list[x509.Certificate] = []
    crls: list[x509.CertificateRevocationList] = []
    if b"-----BEGIN" in data:
        for label, der in _pem_blocks(data):
            if label == _PEM_CERTIFICATE:
                certs.append(_checked_certificate(der))
            elif label == _PEM_CRL:
                crls.append(x509.load_der_x509_crl(der))
        if not certs and not crls:
            raise ValueError("no CERTIFICATE or X509 CRL PEM block")
    elif crl_file:
        crls.append(x509.load_der_x509_crl(data))
    else:
        certs.append(_checked_certificate(data))
    return certs, crls


def _pem(cert: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# --- The CA store --------------------------------------------------------------


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, eq=False)
class _Authority:
    """A certificate with what chain building looks up, computed once."""

    cert: x509.Certificate
    der: bytes
    dn: str
    issuer_dn: str
    anchor: bool = False

    @classmethod
    def of(cls, cert: x509.Certificate, der: bytes | None = None) -> _Authority:
        der = der if der is not None else _der(cert)
        subject_dn, issuer_dn = _dns_of_der(cert, der)
        return cls(cert, der, subject_dn, issuer_dn)

    # What each verification asks of a certificate, read once: these depend on
    # its bytes alone (cached_property writes past the frozen dataclass).

    @cached_property
    def serial(self) -> int:
        return int(self.cert.serial_number)

    @cached_property
    def raw_issuer(self) -> bytes:
        return _raw_names(self.der)[0]

    @cached_property
    def not_before(self) -> datetime:
        return self.cert.not_valid_before_utc

    @cached_property
    def not_after(self) -> datetime:
        return self.cert.not_valid_after_utc

    @cached_property
    def signing_problem(self) -> str | None:
        return _signing_usage_problem(self.cert)

    @cached_property
    def critical_problem(self) -> str | None:
        return _unhandled_critical_extension(self.cert)


# A step of a chain search: a problem met, or a path up to a trust anchor.
_SearchEvent = str | tuple[_Authority, ...]


@lru_cache(maxsize=1024)
def _authority_of_der(der: bytes) -> _Authority:
    """A certificate carried in CMS signatures, parsed once per distinct DER.

    Keyed on the exact bytes, so a certificate differing in any bit (a rogue
    copy of a name, another serial) is parsed and judged on its own.
    """
    return _Authority.of(_checked_certificate(der), der)


@dataclass(frozen=True, eq=False)
class _Revocations:
    crl: x509.CertificateRevocationList
    der: bytes
    issuer_dn: str
    # serial -> when the certificate stopped being valid (revocation date, or the
    # earlier invalidity date a CA gives for a key compromise).
    revoked: Mapping[int, datetime]
    source: str
    last_update: datetime
    next_update: datetime | None


def _revocation_times(crl: x509.CertificateRevocationList) -> dict[int, datetime]:
    times: dict[int, datetime] = {}
    for entry in crl:
        moment = entry.revocation_date_utc
        try:
            invalid = entry.extensions.get_extension_for_class(x509.InvalidityDate).value
        except x509.ExtensionNotFound:
            pass
        else:
            moment = min(moment, invalid.invalidity_date_utc)
        times[entry.serial_number] = min(moment, times.get(entry.serial_number, moment))
    return times


def _self_signed(cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(cert)
    except (*_PARSE_ERRORS, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True)
class X509SignerInfo:
    """Who made a valid CMS signature, as vmcatcher names them."""

    subject_dn: str
    issuer_dn: str
    certificate: x509.Certificate
    # Signer first, trust anchor last.
    chain: tuple[x509.Certificate, ...] = ()
    # The message digest the signer used ("sha256", ...; "sha1" only when allowed).
    digest: str = ""


# Extensions we either enforce or may safely ignore when marked critical.
_UNDERSTOOD_CRITICAL = (
    x509.BasicConstraints, x509.KeyUsage, x509.ExtendedKeyUsage,
    x509.SubjectAlternativeName, x509.IssuerAlternativeName, x509.CertificatePolicies,
    x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier, x509.CRLDistributionPoints,
    x509.AuthorityInformationAccess,
)
_MAX_CHAIN = 10
# Chain searches a store keeps (see CAStore._searches); each is a few references.
_MAX_SEARCHES = 4096


class CAStore:
    """Trust anchors, intermediate CAs and CRLs: the only roots a signature may reach.

    Self-signed certificates are trust anchors; the others are trusted
    intermediates (as in an OpenSSL ``-CApath`` directory). A CRL, when the
    store holds one for an issuer, is enforced: a listed serial is rejected
    and a CRL past its nextUpdate fails verification.
    """

    def __init__(self, certificates: Iterable[x509.Certificate],
                 crls: Iterable[x509.CertificateRevocationList] = (), *,
                 source: str = "", crl_sources: Sequence[str] = (),
                 refused: Sequence[str] = ()) -> None:
        self.source = source
        # CA files left out (``RefusedCertificateError``): named when a chain fails.
        self.refused = tuple(refused)
        seen: set[bytes] = set()
        self._authorities: list[_Authority] = []
        self._by_subject: dict[str, list[_Authority]] = {}
        for cert in certificates:
            der = _der(cert)
            if der in seen:
                continue
            seen.add(der)
            authority = _Authority.of(cert, der)
            if authority.dn == authority.issuer_dn and _self_signed(cert):
                authority = _Authority(cert, der, authority.dn, authority.issuer_dn, True)
            self._authorities.append(authority)
            self._by_subject.setdefault(authority.dn, []).append(authority)
        self._anchor_ders = frozenset(a.der for a in self._authorities if a.anchor)
        self._crls: dict[str, list[_Revocations]] = {}
        crl_list = list(crls)
        seen_crls: set[bytes] = set()
        for index, crl in enumerate(crl_list):
            der = crl.public_bytes(serialization.Encoding.DER)
            if der in seen_crls:
                continue
            seen_crls.add(der)
            issuer_dn = _dn_from_der(crl.issuer.public_bytes())
            where = crl_sources[index] if index < len(crl_sources) else f"CRL of {issuer_dn}"
            entry = _Revocations(crl, der, issuer_dn,
                                 _revocation_times(crl), where,
                                 crl.last_update_utc, crl.next_update_utc)
            self._crls.setdefault(issuer_dn, []).append(entry)
        # Results of certificate/CRL signature checks: they depend only on the
        # bytes involved, so each is computed once per store.
        self._signed_by: dict[tuple[bytes, bytes], bool] = {}
        # Chain searches by (signer DER, DERs of the certificates carried with
        # it): what _paths finds depends on those bytes and on this store's fixed
        # contents only, never on the time, so it is kept; validity dates and
        # CRLs are checked on every verification (_path_problem).
        self._searches: dict[tuple[bytes, tuple[bytes, ...]], tuple[_SearchEvent, ...]] = {}
        self._searches_lock = threading.Lock()

    # -- construction ----------------------------------------------------------

    @classmethod
    def from_pem(cls, certs: Sequence[bytes | str],
                 crls: Sequence[bytes | str] = ()) -> CAStore:
        """A store from PEM material (as carried in a registry policy); cached."""
        return _store_from_pem(tuple(c.encode() if isinstance(c, str) else c for c in certs),
                               tuple(c.encode() if isinstance(c, str) else c for c in crls))

    @classmethod
    def from_directory(cls, path: str | Path) -> CAStore:
        """A store from an IGTF / ``-CApath`` directory; cached until a file changes.

        Reads ``*.pem`` and ``<hash>.N`` certificates and ``<hash>.rN`` CRLs
        (PEM or DER) and nothing else: no ``.signing_policy``, no system bundle.
        """
        directory = Path(path)
        try:
            entries = sorted(p for p in directory.iterdir() if _ca_file_kind(p.name))
            stamp = tuple((p.name, *_stat_key(p)) for p in entries)
        except OSError as exc:
            raise UsageError(f"cannot read CA directory {directory}: {exc}") from exc
        key = str(directory.resolve())
        with _DIRECTORY_LOCK:
            cached = _DIRECTORY_CACHE.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        store = _load_directory(directory, entries)
        with _DIRECTORY_LOCK:
            _DIRECTORY_CACHE[key] = (stamp, store)
        return store

    # -- contents --------------------------------------------------------------

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        return tuple(a.cert for a in self._authorities)

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        return tuple(a.cert for a in self._authorities if a.anchor)

    @property
    def crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        return tuple(r.crl for entries in self._crls.values() for r in entries)

    def crls_of(self, issuer: x509.Certificate) -> list[x509.CertificateRevocationList]:
        """The CRLs in the store that ``issuer`` signed."""
        authority = _Authority.of(issuer)
        return [r.crl for r in self._crls.get(authority.dn, ())
                if self._crl_signed_by(r, issuer, authority.der)]

    def __repr__(self) -> str:
        return (f"CAStore({self.source or 'in memory'}: {len(self._anchor_ders)} anchors, "
                f"{len(self._authorities) - len(self._anchor_ders)} intermediates, "
                f"{sum(len(v) for v in self._crls.values())} CRLs)")

    # -- signature checks (cached) ---------------------------------------------

    def _link_signed(self, child: x509.Certificate, child_der: bytes,
                     issuer: x509.Certificate, issuer_der: bytes) -> bool:
        key = (child_der, issuer_der)
        result = self._signed_by.get(key)
        if result is None:
            try:
                child.verify_directly_issued_by(issuer)
                result = True
            except (*_PARSE_ERRORS, InvalidSignature, UnsupportedAlgorithm):
                result = False
            self._signed_by[key] = result
        return result

    def _crl_signed_by(self, entry: _Revocations, issuer: x509.Certificate,
                       issuer_der: bytes) -> bool:
        key = (entry.der, issuer_der)
        result = self._signed_by.get(key)
        if result is None:
            try:
                public_key: Any = issuer.public_key()
                result = bool(entry.crl.is_signature_valid(public_key))
            except (*_PARSE_ERRORS, UnsupportedAlgorithm):
                result = False
            self._signed_by[key] = result
        return result

    # -- chain validation ------------------------------------------------------

    def verify_certificate(self, cert: x509.Certificate, *,
                           untrusted: Sequence[x509.Certificate] = (),
                           at: datetime) -> tuple[x509.Certificate, ...]:
        """Validate a signing certificate up to a trust anchor of this store.

        ``untrusted`` are extra certificates (those a CMS signature carries)
        that may serve as intermediates but never as anchors. Returns the
        chain, signer first. Raises UntrustedSignerError naming the signer
        and every reason the chain failed.
        """
        try:
            return tuple(a.cert for a in self._verify_chain(
                _Authority.of(cert), [_Authority.of(c) for c in untrusted], _utc(at)))
        except _PARSE_ERRORS as exc:
            raise UntrustedSignerError(f"malformed certificate in the chain of "
                                       f"{cert.serial_number:#x}: {exc}") from exc

    def _verify_chain(self, leaf: _Authority, untrusted: Sequence[_Authority],
                      when: datetime) -> list[_Authority]:
        leaf_problem = leaf.signing_problem
        if leaf_problem:
            raise UntrustedSignerError(f"signer {leaf.dn}: {leaf_problem}")
        problems: list[str] = []
        # Structure first (who signed whom, up to an anchor), then time and
        # revocation along each such path: the first path passing both wins.
        for event in self._chain_search(leaf, untrusted):
            if isinstance(event, str):
                problems.append(event)
                continue
            problem = self._path_problem(event, when)
            if problem is None:
                return list(event)
            problems.append(problem)
        reasons = "; ".join(dict.fromkeys(problems)) or "no path to a trust anchor"
        where = f" (CA store {self.source})" if self.source else ""
        if self.refused:
            where += f"; left out of the CA store: {'; '.join(self.refused)}"
        raise UntrustedSignerError(f"signer {leaf.dn}: {reasons}{where}")

    def _chain_search(self, leaf: _Authority, untrusted: Sequence[_Authority],
                      ) -> tuple[_SearchEvent, ...]:
        """What _paths reports, in its order: structural problems and candidate
        paths (all of them; _verify_chain stops at the first one valid then)."""
        key = (leaf.der, tuple(a.der for a in untrusted))
        found = self._searches.get(key)
        if found is not None:
            return found
        extra: dict[str, list[_Authority]] = {}
        for other in untrusted:
            extra.setdefault(other.dn, []).append(other)
        events: list[_SearchEvent] = []
        # _paths appends its problems to ``events`` before yielding each path,
        # so one list keeps both in the order the search met them.
        for path in self._paths([leaf], extra, events):
            events.append(tuple(path))
        result = tuple(events)
        with self._searches_lock:
            if len(self._searches) >= _MAX_SEARCHES:
                # Oldest first: a sync meets the same few endorsers again and again.
                del self._searches[next(iter(self._searches))]
            self._searches[key] = result
        return result

    def _paths(self, path: list[_Authority], extra: Mapping[str, list[_Authority]],
               problems: list[_SearchEvent]) -> Iterator[list[_Authority]]:
        """Every chain from ``path`` up to an anchor whose links are CA-signed."""
        current = path[-1]
        critical = current.critical_problem
        if critical:
            problems.append(f"certificate {current.dn} has an unsupported critical "
                            f"extension {critical}")
            return
        if current.der in self._anchor_ders:
            yield path
            return
        if len(path) >= _MAX_CHAIN:
            problems.append(f"chain longer than {_MAX_CHAIN} certificates")
            return
        issuer_dn = current.issuer_dn
        in_path = {a.der for a in path}
        candidates = [c for c in (*self._by_subject.get(issuer_dn, ()),
                                  *extra.get(issuer_dn, ()))
                      if c.der not in in_path]
        if not candidates:
            if issuer_dn == current.dn:
                problems.append(f"self-signed certificate {current.dn} is not a trust "
                                "anchor of the CA store")
            else:
                problems.append(f"issuer {issuer_dn} of {current.dn} is not in the CA store")
            return
        tried: set[bytes] = set()
        for candidate in candidates:
            if candidate.der in tried:
                continue
            tried.add(candidate.der)
            if not self._link_signed(current.cert, current.der, candidate.cert,
                                     candidate.der):
                problems.append(f"certificate {current.dn} is not signed by the key of "
                                f"the CA {candidate.dn} in the CA store")
                continue
            ca_problem = _issuer_problem(candidate.cert, len(path) - 1)
            if ca_problem:
                problems.append(f"issuer {candidate.dn}: {ca_problem}")
                continue
            yield from self._paths([*path, candidate], extra, problems)

    def _path_problem(self, path: Sequence[_Authority], when: datetime) -> str | None:
        """Why a structurally sound chain fails at ``when``: validity or a CRL."""
        for authority in path:
            if when < authority.not_before:
                return (f"certificate {authority.dn} is not valid before "
                        f"{_when(authority.not_before)}")
            if when > authority.not_after:
                return (f"certificate {authority.dn} expired at "
                        f"{_when(authority.not_after)}")
        for child, issuer in pairwise(path):
            problem = self._revocation_problem(child, issuer, when)
            if problem:
                return problem
        return None

    def _revocation_problem(self, cert: _Authority, issuer: _Authority,
                            when: datetime) -> str | None:
        entries = self._crls.get(issuer.dn)
        if not entries:
            return None
        signed = [r for r in entries if self._crl_signed_by(r, issuer.cert, issuer.der)]
        if not signed:
            return (f"the CRL of {issuer.dn} in the CA store is not signed by its key "
                    f"({entries[0].source})")
        for entry in signed:
            following = entry.next_update
            if following is not None and when > following:
                return (f"the CRL of {issuer.dn} expired at {_when(following)} "
                        f"({entry.source}); refresh it (fetch-crl)")
            # A CRL issued after ``when`` still tells the state at ``when``:
            # revocation is permanent, and dated.
            revoked_at = entry.revoked.get(cert.serial)
            if revoked_at is not None and when >= revoked_at:
                return (f"certificate {cert.dn} (serial {cert.serial:#x}) is revoked by "
                        f"the CRL of {issuer.dn} since {_when(revoked_at)}")
        return None


def _extension(cert: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _unhandled_critical_extension(cert: x509.Certificate) -> str | None:
    for ext in cert.extensions:
        if ext.critical and not isinstance(ext.value, _UNDERSTOOD_CRITICAL):
            name: str = getattr(ext.oid, "_name", None) or ext.oid.dotted_string
            return name
    return None


def _signing_usage_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` may not sign documents (keyUsage, extendedKeyUsage), as OpenSSL's
    S/MIME signing purpose decides."""
    try:
        usage = _extension(cert, x509.KeyUsage)
        extended = _extension(cert, x509.ExtendedKeyUsage)
    except _PARSE_ERRORS as exc:
        return f"malformed certificate extensions: {exc}"
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        return "keyUsage allows neither digitalSignature nor nonRepudiation"
    if extended is not None and not ({ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                      ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
                                     & set(extended)):
        return "extendedKeyUsage does not include emailProtection (S/MIME signing)"
    return None


def _issuer_problem(issuer: x509.Certificate, below: int) -> str | None:
    """Why ``issuer`` may not issue certificates; ``below`` = intermediates under it."""
    try:
        constraints = _extension(issuer, x509.BasicConstraints)
        usage = _extension(issuer, x509.KeyUsage)
    except _PARSE_ERRORS as exc:
        return f"malformed certificate extensions: {exc}"
    if constraints is None:
        # OpenSSL's X509_check_ca: a v1 root, or a keyCertSign key usage.
        v1_root = issuer.version == x509.Version.v1 and issuer.issuer == issuer.subject
        if not v1_root and not (usage is not None and usage.key_cert_sign):
            return "not a CA (no basicConstraints)"
    elif not constraints.ca:
        return "not a CA (basicConstraints CA:FALSE)"
    elif constraints.path_length is not None and below > constraints.path_length:
        return f"pathLenConstraint {constraints.path_length} exceeded"
    if usage is not None and not usage.key_cert_sign:
        return "keyUsage does not allow keyCertSign"
    return None


# Store caches: verifying 10,000 lists must not re-read the CA directory or
# re-parse the anchors each time.
_DIRECTORY_CACHE: dict[str, tuple[tuple[tuple[object, ...], ...], CAStore]] = {}
_DIRECTORY_LOCK = threading.Lock()
_HASHED_CERT = re.compile(r"[0-9a-f]{8}\.[0-9]+")
_HASHED_CRL = re.compile(r"[0-9a-f]{8}\.r[0-9]+")


def _ca_file_kind(name: str) -> str | None:
    if _HASHED_CRL.fullmatch(name):
        return "crl"
    if _HASHED_CERT.fullmatch(name) or name.endswith(".pem"):
        return "cert"
    return None


def _stat_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


def _load_directory(directory: Path, entries: Sequence[Path]) -> CAStore:
    from gitreg.errors import Problem

    certs: list[x509.Certificate] = []
    crls: list[x509.CertificateRevocationList] = []
    crl_sources: list[str] = []
    problems: list[Problem] = []
    refused: list[str] = []
    for path in entries:
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read CA file {path}: {exc}") from exc
        try:
            found_certs, found_crls = _load_material(data, crl_file=_ca_file_kind(
                path.name) == "crl")
        except RefusedCertificateError as exc:
            # One such CA must not disable the other hundred of an IGTF directory:
            # it is left out, and a chain that needs it says why.
            refused.append(f"{path}: {exc}")
            continue
        except _PARSE_ERRORS as exc:
            problems.append(Problem("", f"not a certificate or CRL: {exc}", str(path)))
            continue
        certs.extend(found_certs)
        crls.extend(found_crls)
        crl_sources.extend(str(path) for _ in found_crls)
    if problems:
        details = "; ".join(str(p) for p in problems)
        raise InvalidKeyError(f"CA directory {directory}: {details}")
    try:
        return CAStore(certs, crls, source=str(directory), crl_sources=crl_sources,
                       refused=refused)
    except _PARSE_ERRORS as exc:
        raise InvalidKeyError(f"CA directory {directory}: unreadable names: {exc}") from exc


@lru_cache(maxsize=256)
def _store_from_pem(certs: tuple[bytes, ...], crls: tuple[bytes, ...]) -> CAStore:
    loaded_certs: list[x509.Certificate] = []
    loaded_crls: list[x509.CertificateRevocationList] = []
    for index, blob in enumerate(certs):
        try:
            found, _ = _load_material(blob, crl_file=False)
        except _PARSE_ERRORS as exc:
            raise InvalidKeyError(f"CA certificate {index}: not a PEM certificate ({exc})"
                                  ) from exc
        loaded_certs.extend(found)
    for index, blob in enumerate(crls):
        try:
            _, found_crls = _load_material(blob, crl_file=True)
        except _PARSE_ERRORS as exc:
            raise InvalidKeyError(f"CRL {index}: not a PEM CRL ({exc})") from exc
        loaded_crls.extend(found_crls)
    try:
        return CAStore(loaded_certs, loaded_crls, source="policy CA certificates")
    except _PARSE_ERRORS as exc:
        raise InvalidKeyError(f"CA certificates: unreadable names: {exc}") from exc


# --- CMS SignedData --------------------------------------------------------------

_OID_DATA = "1.2.840.113549.1.7.1"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_DIGESTS: Mapping[str, tuple[Callable[[bytes], Any], type[hashes.HashAlgorithm]]] = {
    "sha256": (hashlib.sha256, hashes.SHA256),
    "sha384": (hashlib.sha384, hashes.SHA384),
    "sha512": (hashlib.sha512, hashes.SHA512),
}
# Accepted only when the caller allows it (migrating legacy lists): SHA-1
# collisions are practical, so a SHA-1 signature proves little.
_WITH_SHA1: Mapping[str, tuple[Callable[[bytes], Any], type[hashes.HashAlgorithm]]] = {
    **_DIGESTS, "sha1": (hashlib.sha1, hashes.SHA1),
}
_RSA_PKCS1 = {"rsassa_pkcs1v15", "sha1_rsa", "sha256_rsa", "sha384_rsa", "sha512_rsa"}
_ECDSA = {"ecdsa", "sha1_ecdsa", "sha256_ecdsa", "sha384_ecdsa", "sha512_ecdsa"}
_CMS_ARMOUR = re.compile(rb"-----BEGIN (PKCS7|CMS)-----(.*?)-----END \1-----", re.DOTALL)
# A detached list signature is a few KiB; anything this large is not one.
_MAX_CMS_BYTES = 1024 * 1024


@dataclass(frozen=True)
class _SignerInfo:
    sid_kind: str                      # "issuer_serial" or "ski"
    sid_issuer: bytes                  # DER Name (issuer_serial)
    sid_serial: int
    sid_ski: bytes
    digest: str
    signature_algorithm: str
    pss: tuple[str, str, int] | None   # hash, MGF1 hash, salt length
    signed_attrs: bytes | None         # DER SET OF, as signed
    attributes: tuple[tuple[str, tuple[Any, ...]], ...]
    signature: bytes


@dataclass(frozen=True)
class _SignedData:
    content_type: str
    content: bytes | None
    certificates: tuple[bytes, ...]
    signers: tuple[_SignerInfo, ...]


def _dearmour(cms: bytes) -> bytes:
    if len(cms) > _MAX_CMS_BYTES:
        raise SignatureError(f"CMS signature is {len(cms)} bytes; at most "
                             f"{_MAX_CMS_BYTES} are accepted")
    head = cms.lstrip()
    if head.startswith(b"-----BEGIN"):
        match = _CMS_ARMOUR.search(head)
        if match is None:
            raise SignatureError("CMS signature armour is not -----BEGIN PKCS7----- "
                                 "... -----END PKCS7-----")
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", match.group(2)), validate=True)
        except binascii.Error as exc:
            raise SignatureError(f"CMS signature armour is not valid base64: {exc}") from exc
    return cms


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _parse_signer(si: Any) -> _SignerInfo:
    sid = si["sid"]
    issuer, serial, ski = b"", 0, b""
    if sid.name == "issuer_and_serial_number":
        kind = "issuer_serial"
        issuer = sid.chosen["issuer"].dump()
        serial = int(sid.chosen["serial_number"].native)
    else:
        kind = "ski"
        ski = bytes(sid.chosen.native)
    algorithm = si["signature_algorithm"]
    sig_name = str(algorithm["algorithm"].native)
    pss = None
    if sig_name == "rsassa_pss":
        params = algorithm["parameters"]
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].native != "mgf1":
            raise ValueError(f"RSASSA-PSS mask generation {mgf['algorithm'].native} "
                             "is not supported")
        pss = (str(params["hash_algorithm"]["algorithm"].native),
               str(mgf["parameters"]["algorithm"].native),
               int(params["salt_length"].native))
    raw_attrs = si["signed_attrs"]
    signed_attrs = None
    attributes: list[tuple[str, tuple[Any, ...]]] = []
    if not isinstance(raw_attrs, asn1_core.Void):
        contents = raw_attrs.contents or b""
        # The signature covers the attributes re-tagged as a universal SET OF.
        signed_attrs = bytes([_TAG_SET]) + _der_length(len(contents)) + contents
        for attr in raw_attrs:
            oid = attr["type"].dotted
            values: tuple[Any, ...] = ()
            if oid == _OID_MESSAGE_DIGEST:
                values = tuple(bytes(v.native) for v in attr["values"])
            elif oid == _OID_CONTENT_TYPE:
                values = tuple(v.dotted for v in attr["values"])
            attributes.append((oid, values))
    return _SignerInfo(
        sid_kind=kind, sid_issuer=issuer, sid_serial=serial, sid_ski=ski,
        digest=str(si["digest_algorithm"]["algorithm"].native),
        signature_algorithm=sig_name, pss=pss, signed_attrs=signed_attrs,
        attributes=tuple(attributes), signature=bytes(si["signature"].native),
    )


class _NotPlainDerError(ValueError):
    """Outside the DER subset _read_signed_data takes; asn1crypto decides."""


_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"


def _oid_body(dotted: str) -> bytes:
    return bytes(asn1_core.ObjectIdentifier(dotted).contents or b"")


# asn1crypto's names of the algorithms signers use, by the encoded OID, so that
# both readers give the rest of verify_cms the same words. Anything else (PSS
# with its parameters, SHA-1, the unknown) goes to asn1crypto.
_DIGEST_NAMES: Mapping[bytes, str] = {
    _oid_body(oid): name for oid, name in [
        ("2.16.840.1.101.3.4.2.1", "sha256"), ("2.16.840.1.101.3.4.2.2", "sha384"),
        ("2.16.840.1.101.3.4.2.3", "sha512")]}
_SIGNATURE_NAMES: Mapping[bytes, str] = {
    _oid_body(oid): name for oid, name in [
        ("1.2.840.113549.1.1.1", "rsassa_pkcs1v15"), ("1.2.840.113549.1.1.11", "sha256_rsa"),
        ("1.2.840.113549.1.1.12", "sha384_rsa"), ("1.2.840.113549.1.1.13", "sha512_rsa"),
        ("1.2.840.10045.4.3.2", "sha256_ecdsa"), ("1.2.840.10045.4.3.3", "sha384_ecdsa"),
        ("1.2.840.10045.4.3.4", "sha512_ecdsa"), ("1.3.101.112", "ed25519")]}
_SIGNED_DATA_BODY = _oid_body(_OID_SIGNED_DATA)
_DATA_BODY = _oid_body(_OID_DATA)
_MESSAGE_DIGEST_BODY = _oid_body(_OID_MESSAGE_DIGEST)
_CONTENT_TYPE_BODY = _oid_body(_OID_CONTENT_TYPE)
_TAG_INTEGER = 0x02
_TAG_OCTET_STRING = 0x04
_TAG_CONTEXT_0 = 0xA0          # [0] constructed
_TAG_CONTEXT_1 = 0xA1          # [1] constructed
_TAG_CONTEXT_0_PRIMITIVE = 0x80

# (tag, start of the whole element, start of contents, end)
_Element = tuple[int, int, int, int]


def _elements(der: bytes, start: int, end: int) -> list[_Element]:
    """The DER elements that exactly fill ``der[start:end]``."""
    out: list[_Element] = []
    pos = start
    while pos < end:
        tag, body, stop = _read_tlv(der, pos)
        if stop > end:
            raise _NotPlainDerError("element overruns its parent")
        out.append((tag, pos, body, stop))
        pos = stop
    return out


def _only(der: bytes, element: _Element, tag: int) -> _Element:
    """The single element inside a constructed ``element``, which must carry ``tag``."""
    inner = _elements(der, element[2], element[3])
    if len(inner) != 1 or inner[0][0] != tag:
        raise _NotPlainDerError("unexpected contents")
    return inner[0]


def _algorithm(der: bytes, element: _Element, names: Mapping[bytes, str]) -> str:
    if element[0] != _TAG_SEQUENCE:
        raise _NotPlainDerError("an AlgorithmIdentifier is a SEQUENCE")
    fields = _elements(der, element[2], element[3])
    if not 1 <= len(fields) <= 2 or fields[0][0] != _TAG_OID:
        raise _NotPlainDerError("unexpected AlgorithmIdentifier")
    name = names.get(der[fields[0][2]:fields[0][3]])
    if name is None:
        raise _NotPlainDerError("algorithm left to asn1crypto")
    return name


def _read_signer(der: bytes, element: _Element) -> _SignerInfo:
    if element[0] != _TAG_SEQUENCE:
        raise _NotPlainDerError("a SignerInfo is a SEQUENCE")
    fields = _elements(der, element[2], element[3])
    if fields and fields[-1][0] == _TAG_CONTEXT_1:
        fields.pop()  # unsigned attributes: not looked at
    attrs_field = None
    if len(fields) == 6 and fields[3][0] == _TAG_CONTEXT_0:
        attrs_field = fields.pop(3)
    if len(fields) != 5 or fields[0][0] != _TAG_INTEGER or fields[4][0] != _TAG_OCTET_STRING:
        raise _NotPlainDerError("unexpected SignerInfo")
    sid = fields[1]
    issuer, serial, ski = b"", 0, b""
    if sid[0] == _TAG_SEQUENCE:
        kind = "issuer_serial"
        pair = _elements(der, sid[2], sid[3])
        if (len(pair) != 2 or pair[0][0] != _TAG_SEQUENCE or pair[1][0] != _TAG_INTEGER
                or pair[1][3] == pair[1][2]):
            raise _NotPlainDerError("unexpected IssuerAndSerialNumber")
        name, number = pair
        issuer = der[name[1]:name[3]]
        serial = int.from_bytes(der[number[2]:number[3]], "big", signed=True)
    elif sid[0] == _TAG_CONTEXT_0_PRIMITIVE:
        kind = "ski"
        ski = der[sid[2]:sid[3]]
    else:
        raise _NotPlainDerError("unexpected SignerIdentifier")
    digest = _algorithm(der, fields[2], _DIGEST_NAMES)
    signature_algorithm = _algorithm(der, fields[3], _SIGNATURE_NAMES)
    signed_attrs = None
    attributes: list[tuple[str, tuple[Any, ...]]] = []
    if attrs_field is not None:
        contents = der[attrs_field[2]:attrs_field[3]]
        # The signature covers the attributes re-tagged as a universal SET OF.
        signed_attrs = bytes([_TAG_SET]) + _der_length(len(contents)) + contents
        for attr in _elements(der, attrs_field[2], attrs_field[3]):
            if attr[0] != _TAG_SEQUENCE:
                raise _NotPlainDerError("an Attribute is a SEQUENCE")
            parts = _elements(der, attr[2], attr[3])
            if len(parts) != 2 or parts[0][0] != _TAG_OID or parts[1][0] != _TAG_SET:
                raise _NotPlainDerError("unexpected Attribute")
            oid_body = der[parts[0][2]:parts[0][3]]
            values: tuple[Any, ...] = ()
            if oid_body == _MESSAGE_DIGEST_BODY:
                found = _elements(der, parts[1][2], parts[1][3])
                if any(v[0] != _TAG_OCTET_STRING for v in found):
                    raise _NotPlainDerError("unexpected message-digest value")
                values = tuple(der[v[2]:v[3]] for v in found)
            elif oid_body == _CONTENT_TYPE_BODY:
                found = _elements(der, parts[1][2], parts[1][3])
                if any(v[0] != _TAG_OID for v in found):
                    raise _NotPlainDerError("unexpected content-type value")
                values = tuple(_oid_dotted(der[v[2]:v[3]]) for v in found)
            attributes.append((_oid_dotted(oid_body), values))
    return _SignerInfo(
        sid_kind=kind, sid_issuer=issuer, sid_serial=serial, sid_ski=ski, digest=digest,
        signature_algorithm=signature_algorithm, pss=None, signed_attrs=signed_attrs,
        attributes=tuple(attributes), signature=der[fields[4][2]:fields[4][3]],
    )


def _read_signed_data(der: bytes) -> _SignedData:
    """The SignedData of a plain DER ContentInfo, read directly: only what
    verify_cms uses, about ten times faster than asn1crypto's general parse.

    Raises ValueError (_NotPlainDerError, or from _read_tlv) for anything else, BER
    indefinite lengths included; what it returns equals _parse_signed_data_asn1's.
    """
    tag, body, end = _read_tlv(der, 0)
    if tag != _TAG_SEQUENCE or end != len(der):
        raise _NotPlainDerError("a ContentInfo is one DER SEQUENCE")
    info = _elements(der, body, end)
    if (len(info) != 2 or info[0][0] != _TAG_OID
            or der[info[0][2]:info[0][3]] != _SIGNED_DATA_BODY
            or info[1][0] != _TAG_CONTEXT_0):
        raise _NotPlainDerError("not a signed-data ContentInfo")
    fields = _elements(der, *_only(der, info[1], _TAG_SEQUENCE)[2:])
    if (len(fields) < 4 or fields[0][0] != _TAG_INTEGER or fields[1][0] != _TAG_SET
            or fields[2][0] != _TAG_SEQUENCE or fields[-1][0] != _TAG_SET):
        raise _NotPlainDerError("unexpected SignedData")
    optional = [f[0] for f in fields[3:-1]]
    if optional not in ([], [_TAG_CONTEXT_0], [_TAG_CONTEXT_1],
                        [_TAG_CONTEXT_0, _TAG_CONTEXT_1]):
        raise _NotPlainDerError("unexpected SignedData")
    encap = _elements(der, fields[2][2], fields[2][3])
    if not 1 <= len(encap) <= 2 or encap[0][0] != _TAG_OID:
        raise _NotPlainDerError("unexpected EncapsulatedContentInfo")
    content = None
    if len(encap) == 2:
        # asn1crypto reads the content of a version 1 SignedData by its type
        # (PKCS #7); only id-data is an OCTET STRING under every version.
        if encap[1][0] != _TAG_CONTEXT_0 or der[encap[0][2]:encap[0][3]] != _DATA_BODY:
            raise _NotPlainDerError("unexpected EncapsulatedContentInfo")
        octets = _only(der, encap[1], _TAG_OCTET_STRING)
        content = der[octets[2]:octets[3]]
    certificates: list[bytes] = []
    if optional[:1] == [_TAG_CONTEXT_0]:
        for cert in _elements(der, fields[3][2], fields[3][3]):
            if cert[0] != _TAG_SEQUENCE:
                raise _NotPlainDerError("certificate choices other than X.509")
            certificates.append(der[cert[1]:cert[3]])
    signers = tuple(_read_signer(der, si) for si in _elements(der, *fields[-1][2:]))
    return _SignedData(_oid_dotted(der[encap[0][2]:encap[0][3]]), content,
                       tuple(certificates), signers)


def _parse_signed_data(cms: bytes) -> _SignedData:
    der = _dearmour(cms)
    try:
        return _read_signed_data(der)
    except _PARSE_ERRORS:
        # Not plain DER (BER from some signers, or damage): the general reader
        # gives the verdict, so both readers never disagree on what is accepted.
        pass
    return _parse_signed_data_asn1(der)


def _parse_signed_data_asn1(der: bytes) -> _SignedData:
    """The SignedData of any BER ContentInfo, read with asn1crypto."""
    try:
        info = asn1_cms.ContentInfo.load(der, strict=True)
        content_type = info["content_type"].native
        if content_type != "signed_data":
            raise SignatureError(f"CMS object is {content_type}, not signed-data")
        signed = info["content"]
        encap = signed["encap_content_info"]
        raw = encap["content"]
        content = None
        if not isinstance(raw, asn1_core.Void) and raw.contents is not None:
            content = bytes(raw.native) if raw.native is not None else None
        certificates = []
        raw_certs = signed["certificates"]
        if not isinstance(raw_certs, asn1_core.Void):
            certificates = [choice.chosen.dump() for choice in raw_certs
                            if choice.name == "certificate"]
        signers = tuple(_parse_signer(si) for si in signed["signer_infos"])
        return _SignedData(str(encap["content_type"].dotted), content,
                           tuple(certificates), signers)
    except _PARSE_ERRORS as exc:
        raise SignatureError(f"malformed CMS signature: {exc}") from exc


def encapsulated_content(cms: bytes) -> bytes | None:
    """The content a non-detached (opaque) CMS signature carries, or None."""
    return _parse_signed_data(cms).content


def _load_embedded(signed: _SignedData) -> list[_Authority]:
    certs = []
    for index, der in enumerate(signed.certificates):
        try:
            certs.append(_authority_of_der(der))
        except RefusedCertificateError as exc:
            raise UntrustedSignerError(f"CMS signature: certificate {index} "
                                       f"({_dn_from_der(_raw_names(der)[1])}) is refused: "
                                       f"{exc}") from exc
        except _PARSE_ERRORS as exc:
            raise SignatureError(f"CMS signature: certificate {index} is malformed: {exc}"
                                 ) from exc
    return certs


def _matches_signer(candidate: _Authority, signer: _SignerInfo) -> bool:
    if signer.sid_kind == "ski":
        ski = _extension(candidate.cert, x509.SubjectKeyIdentifier)
        return ski is not None and bool(ski.digest == signer.sid_ski)
    if candidate.serial != signer.sid_serial:
        return False
    return candidate.raw_issuer == signer.sid_issuer or candidate.issuer_dn == _dn_from_der(
        signer.sid_issuer)


def _find_signer(signer: _SignerInfo, embedded: Sequence[_Authority],
                 store: CAStore) -> _Authority:
    for candidate in [*embedded, *store._authorities]:
        try:
            if _matches_signer(candidate, signer):
                return candidate
        except _PARSE_ERRORS:
            continue
    if signer.sid_kind == "ski":
        who = f"subject key identifier {signer.sid_ski.hex()}"
    else:
        try:
            who = (f"issuer {_dn_from_der(signer.sid_issuer)} serial "
                   f"{signer.sid_serial:#x}")
        except ValueError:
            who = f"serial {signer.sid_serial:#x}"
    raise SignatureError(f"CMS signature: the signer certificate ({who}) is neither "
                         "in the signature nor in the CA store")


def _check_signed_attributes(signer: _SignerInfo, digest: bytes, content_type: str,
                             who: str) -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    for oid, values in signer.attributes:
        if oid in seen:
            raise SignatureError(f"signer {who}: signed attribute {oid} appears twice")
        seen[oid] = values
    digests = seen.get(_OID_MESSAGE_DIGEST)
    types = seen.get(_OID_CONTENT_TYPE)
    if digests is None or len(digests) != 1:
        raise SignatureError(f"signer {who}: signed attributes need exactly one "
                             "message-digest")
    if types is None or len(types) != 1:
        raise SignatureError(f"signer {who}: signed attributes need exactly one "
                             "content-type")
    if types[0] != content_type:
        raise SignatureError(f"signer {who}: signed content-type {types[0]} differs from "
                             f"the encapsulated {content_type}")
    if digests[0] != digest:
        raise SignatureError(f"signer {who}: message digest does not match the content "
                             "(the list was changed after signing)")


def _check_signature(signer: _SignerInfo, message: bytes, cert: x509.Certificate,
                     who: str, digests: Mapping[str, tuple[Callable[[bytes], Any],
                                                           type[hashes.HashAlgorithm]]]) -> None:
    key = cert.public_key()
    algorithm = signer.signature_algorithm
    hash_type = digests[signer.digest][1]
    try:
        if algorithm in _RSA_PKCS1 and isinstance(key, rsa.RSAPublicKey):
            if algorithm != "rsassa_pkcs1v15" and not algorithm.startswith(signer.digest):
                raise SignatureError(f"signer {who}: signature algorithm {algorithm} "
                                     f"disagrees with digest {signer.digest}")
            key.verify(signer.signature, message, padding.PKCS1v15(), hash_type())
        elif algorithm == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            assert signer.pss is not None
            pss_hash, mgf_hash, salt = signer.pss
            if pss_hash not in _DIGESTS or mgf_hash not in _DIGESTS:
                raise SignatureError(f"signer {who}: RSASSA-PSS with {pss_hash}/{mgf_hash} "
                                     "is not accepted")
            key.verify(signer.signature, message,
                       padding.PSS(padding.MGF1(_DIGESTS[mgf_hash][1]()), salt),
                       _DIGESTS[pss_hash][1]())
        elif algorithm in _ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            if algorithm != "ecdsa" and not algorithm.startswith(signer.digest):
                raise SignatureError(f"signer {who}: signature algorithm {algorithm} "
                                     f"disagrees with digest {signer.digest}")
            key.verify(signer.signature, message, ec.ECDSA(hash_type()))
        elif algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signer.signature, message)
        else:
            raise SignatureError(f"signer {who}: signature algorithm {algorithm} does not "
                                 f"fit a {type(key).__name__.lstrip('_')} or is not accepted")
    except InvalidSignature as exc:
        raise SignatureError(f"signer {who}: the CMS signature does not verify") from exc
    except (*_PARSE_ERRORS, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"signer {who}: cannot check the signature: {exc}") from exc


def verify_cms(data: bytes, cms: bytes, store: CAStore, *,
               at: datetime, allow_sha1: bool = False) -> X509SignerInfo:
    """Verify a CMS signature (DER, or PEM ``-----BEGIN PKCS7-----``) of ``data``.

    Exactly one signer; SHA-256/384/512 (SHA-1 only with ``allow_sha1``, else
    ``WeakDigestError``); signed attributes checked when present;
    the signer certificate must chain to ``store`` at ``at`` (the caller's time),
    with CRLs of the store enforced. Raises SignatureError (malformed, wrong
    digest or signature) or UntrustedSignerError (chain, expiry, revocation).
    """
    signed = _parse_signed_data(cms)
    if signed.content is not None and signed.content != data:
        raise SignatureError("CMS signature encapsulates content different from the data "
                             "it is checked against")
    if len(signed.signers) != 1:
        raise SignatureError(f"CMS signature has {len(signed.signers)} signers; exactly one "
                             "is accepted")
    signer = signed.signers[0]
    embedded = _load_embedded(signed)
    leaf = _find_signer(signer, embedded, store)
    cert, subject_dn = leaf.cert, leaf.dn
    # The chain first, as OpenSSL does: a stranger's signature is "untrusted"
    # whether or not it also fails to match.
    try:
        chain = tuple(a.cert for a in store._verify_chain(leaf, embedded, _utc(at)))
    except _PARSE_ERRORS as exc:
        raise UntrustedSignerError(f"signer {subject_dn}: malformed certificate in the "
                                   f"chain: {exc}") from exc
    digests = _WITH_SHA1 if allow_sha1 else _DIGESTS
    if signer.digest == "sha1" and not allow_sha1:
        raise WeakDigestError(f"signer {subject_dn}: signature uses SHA-1, refused",
                              hint="SHA-1 signatures can be forged; re-sign the list with "
                                   "SHA-256 (to migrate a legacy list: --allow-sha1)")
    if signer.digest not in digests:
        raise SignatureError(f"signer {subject_dn}: digest algorithm {signer.digest} is not "
                             "accepted (use SHA-256, SHA-384 or SHA-512)")
    digest = digests[signer.digest][0](data).digest()
    if signer.signed_attrs is None:
        message = data
    else:
        _check_signed_attributes(signer, digest, signed.content_type, subject_dn)
        message = signer.signed_attrs
    _check_signature(signer, message, cert, subject_dn, digests)
    return X509SignerInfo(subject_dn, leaf.issuer_dn, cert, chain, signer.digest)


def check_binding(info: X509SignerInfo, *, dn: str, ca: str, source: str = "") -> None:
    """The vmcatcher rule: the signer is the list's endorser (``hv:dn``) under ``hv:ca``."""
    if info.subject_dn == dn and info.issuer_dn == ca:
        return
    where = f"{source}: " if source else ""
    raise UntrustedSignerError(
        f"{where}signed by {info.subject_dn} (issuer {info.issuer_dn}), but the list names "
        f"the endorser hv:dn {dn} (hv:ca {ca})")


# --- Signing -------------------------------------------------------------------------

_SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _load_signing_material(cert_pem: bytes, key_pem: bytes, where: str = "",
                           ) -> tuple[list[x509.Certificate], _SigningKey]:
    label = f"{where}: " if where else ""
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except _PARSE_ERRORS as exc:
        raise UsageError(f"{label}not a PEM certificate: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:
        # cryptography says TypeError for a passphrase-protected key.
        raise UsageError(f"{label}private key: {exc}",
                         hint="decrypt it first: openssl pkey -in KEY -out PLAIN") from exc
    except (*_PARSE_ERRORS, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{label}not a PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise UsageError(f"{label}a {type(key).__name__.lstrip('_')} key cannot make an "
                         "S/MIME signature here; use RSA or ECDSA")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (certs[0].public_key().public_bytes(serialization.Encoding.DER, public)
            != key.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise UsageError(f"{label}the private key does not belong to certificate "
                         f"{certificate_dns(certs[0])[0]}")
    return certs, key


def _sign(data: bytes, certs: Sequence[x509.Certificate], key: _SigningKey) -> bytes:
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(
        certs[0], key, hashes.SHA256())
    for extra in certs[1:]:
        builder = builder.add_certificate(extra)
    # Binary: sign exactly these bytes; text canonicalisation is the MIME layer's job.
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature,
                                                     pkcs7.PKCS7Options.Binary])


def sign_cms(data: bytes, cert_pem: bytes, key_pem: bytes) -> bytes:
    """A detached CMS signature (DER) of exactly ``data``: SHA-256, signed attributes,
    the signer certificate (and any further certificates of ``cert_pem``) included."""
    certs, key = _load_signing_material(cert_pem, key_pem)
    return _sign(data, certs, key)


def _armour(der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"\n".join([b"-----BEGIN PKCS7-----", *lines, b"-----END PKCS7-----"]) + b"\n"


class X509PublicKey(PublicKey):
    """An endorser identity: certificate subject ``dn`` issued by ``ca_dn``,
    trusted through the CA certificates (and CRLs) carried with it."""

    scheme = "x509"

    def __init__(self, dn: str, ca_dn: str, ca_certs_pem: Sequence[bytes | str],
                 crls_pem: Sequence[bytes | str] = ()) -> None:
        if not dn.startswith("/") or not ca_dn.startswith("/"):
            raise InvalidKeyError(f"X.509 endorser DNs must be in OpenSSL slash form "
                                  f"(/DC=.../CN=...), got dn={dn!r} ca_dn={ca_dn!r}")
        if not ca_certs_pem:
            raise InvalidKeyError(f"X.509 endorser {dn}: no CA certificates")
        self.dn = dn
        self.ca_dn = ca_dn
        self._store = CAStore.from_pem(ca_certs_pem, crls_pem)
        if not self._store.anchors:
            raise InvalidKeyError(f"X.509 endorser {dn}: the CA certificates hold no "
                                  "self-signed trust anchor")

    @property
    def key_id(self) -> str:
        return self.dn

    @property
    def store(self) -> CAStore:
        return self._store

    def verify(self, data: bytes, signature: bytes, *, namespace: str = NAMESPACE_IMAGELIST,
               at: datetime) -> VerifiedSignature:
        # CMS has no namespace field; the binding to dn/ca is what counts here.
        info = verify_cms(data, signature, self._store, at=at)
        check_binding(info, dn=self.dn, ca=self.ca_dn)
        return VerifiedSignature("x509", self.dn, f"{info.subject_dn} issued by "
                                                  f"{info.issuer_dn}")

    def to_policy(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "dn": self.dn,
            "ca_dn": self.ca_dn,
            "ca_certificates": [_pem(c).decode("ascii") for c in self._store.certificates],
            "crls": [_pem(c).decode("ascii") for c in self._store.crls],
        }

    @classmethod
    def from_policy(cls, entry: Mapping[str, Any]) -> X509PublicKey:
        """The key of a policy ``keys`` entry (see ``to_policy``)."""
        if entry.get("scheme") != cls.scheme:
            raise InvalidKeyError(f"policy key has scheme {entry.get('scheme')!r}, not 'x509'")
        dn, ca_dn = entry.get("dn"), entry.get("ca_dn")
        certs, crls = entry.get("ca_certificates"), entry.get("crls", [])
        if not isinstance(dn, str) or not isinstance(ca_dn, str):
            raise InvalidKeyError("X.509 policy key needs 'dn' and 'ca_dn' strings")
        if not isinstance(certs, list) or not all(isinstance(c, str) for c in certs):
            raise InvalidKeyError(f"X.509 policy key {dn}: 'ca_certificates' must be a list "
                                  "of PEM strings")
        if not isinstance(crls, list) or not all(isinstance(c, str) for c in crls):
            raise InvalidKeyError(f"X.509 policy key {dn}: 'crls' must be a list of PEM "
                                  "strings")
        try:
            return cls(dn, ca_dn, certs, crls)
        except InvalidKeyError as exc:
            raise InvalidKeyError(f"X.509 policy key {dn}: {exc.message}") from exc

    @classmethod
    def from_certificate_file(cls, path: str | Path, ca_dir: str | Path | None = None, *,
                              at: datetime) -> X509PublicKey:
        """The identity of an endorser certificate file.

        dn and ca_dn come from the certificate; the CA material is its chain
        (with the CRLs of its issuers) out of ``ca_dir``, or, failing that, the
        further certificates in the same PEM file. The chain is validated at ``at``.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read certificate file {path}: {exc}") from exc
        try:
            certs, _ = _load_material(data, crl_file=False)
        except _PARSE_ERRORS as exc:
            raise InvalidKeyError(f"{path}: not a certificate: {exc}") from exc
        if not certs:
            raise InvalidKeyError(f"{path}: no certificate")
        cert, rest = certs[0], certs[1:]
        if ca_dir is not None:
            store = CAStore.from_directory(ca_dir)
        elif rest:
            store = CAStore(rest, source=str(path))
        else:
            raise UsageError(f"{path}: no CA certificates to trust it by",
                             hint="pass the CA directory, or append the CA chain to the "
                                  "certificate file")
        chain = store.verify_certificate(cert, untrusted=rest, at=at)
        authorities = list(chain[1:]) or [chain[0]]
        crls = [crl for ca in authorities for crl in store.crls_of(ca)]
        dn, ca_dn = certificate_dns(cert)
        return cls(dn, ca_dn, [_pem(c) for c in authorities], [_pem(c) for c in crls])

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, X509PublicKey) and other.dn == self.dn
                and other.ca_dn == self.ca_dn
                and other.to_policy() == self.to_policy())

    def __hash__(self) -> int:
        return hash((self.dn, self.ca_dn))

    def __repr__(self) -> str:
        return f"X509PublicKey({self.dn} issued by {self.ca_dn})"


class X509Signer(Signer):
    """Signs with a certificate and its private key (PEM)."""

    scheme = "x509"

    def __init__(self, cert_pem: bytes, key_pem: bytes, *,
                 ca_certs_pem: Sequence[bytes] = ()) -> None:
        self._certs, self._key = _load_signing_material(cert_pem, key_pem)
        # For public_key(): given, or else the rest of the certificate file.
        self._ca_certs_pem = list(ca_certs_pem) or [_pem(c) for c in self._certs[1:]]

    @classmethod
    def from_files(cls, cert_path: str | Path, key_path: str | Path,
                   ca_dir: str | Path | None = None, *,
                   at: datetime | None = None) -> X509Signer:
        """The signer of a certificate file (PEM, optionally followed by its CA
        chain) and an unencrypted PEM key; ``ca_dir`` supplies the CA chain,
        validated at ``at`` (required with ``ca_dir``)."""
        try:
            cert_pem = Path(cert_path).read_bytes()
            key_pem = Path(key_path).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read certificate or key: {exc}") from exc
        ca_certs: list[bytes] = []
        if ca_dir is not None:
            if at is None:
                raise TypeError("X509Signer.from_files: a CA directory needs the time 'at'")
            identity = X509PublicKey.from_certificate_file(cert_path, ca_dir, at=at)
            ca_certs = [c.encode() for c in identity.to_policy()["ca_certificates"]]
        try:
            return cls(cert_pem, key_pem, ca_certs_pem=ca_certs)
        except UsageError as exc:
            raise UsageError(f"{cert_path}, {key_path}: {exc.message}", hint=exc.hint
                             ) from exc

    @property
    def key_id(self) -> str:
        return certificate_dns(self._certs[0])[0]

    @property
    def certificate(self) -> x509.Certificate:
        return self._certs[0]

    def sign(self, data: bytes, *, namespace: str = NAMESPACE_IMAGELIST) -> bytes:
        """A PEM-armoured detached CMS signature (the registry's ``.sig`` format)."""
        return _armour(self.sign_cms(data))

    def sign_cms(self, data: bytes) -> bytes:
        """``sign_cms(data, cert_pem, key_pem)`` with the key loaded once (DER)."""
        return _sign(data, self._certs, self._key)

    def public_key(self) -> X509PublicKey:
        if not self._ca_certs_pem:
            raise UsageError(f"no CA certificates known for {self.key_id}",
                             hint="append the CA chain to the certificate file or give "
                                  "the CA directory")
        dn, ca_dn = certificate_dns(self._certs[0])
        return X509PublicKey(dn, ca_dn, self._ca_certs_pem)
