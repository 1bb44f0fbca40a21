"""Reading DER by hand: TLVs, the fast CMS SignedData reader, certificate serials.

The fast reader handles the plain DER that OpenSSL and gitreg write and
defers everything else (BER, PSS parameters, unknown algorithms) to the
asn1crypto reader in ``cms``; ``tests/test_signing_x509_readers.py`` holds
both to the same verdict on mutated DER.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from asn1crypto import core as asn1_core
from cryptography import x509

# What asn1crypto raises for malformed input, and cryptography for bad keys.
# cryptography's InvalidVersion (a certificate claiming X.509 v4+) is no ValueError.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError,
                 OverflowError, UnicodeDecodeError, binascii.Error, x509.InvalidVersion,
                 x509.DuplicateExtension)


_TAG_SEQUENCE = 0x30
_TAG_SET = 0x31
_TAG_OID = 0x06
_TAG_GENERAL_STRING = 0x1B


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


_OID_DATA = "1.2.840.113549.1.7.1"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"


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


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body
