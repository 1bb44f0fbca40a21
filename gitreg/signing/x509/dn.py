"""Distinguished names in OpenSSL slash form, exactly as vmcatcher compares them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gitreg.signing.x509.der import (
    _TAG_GENERAL_STRING,
    _TAG_OID,
    _TAG_SEQUENCE,
    _TAG_SET,
    _oid_dotted,
    _read_tlv,
)

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


# Printable ASCII other than the two characters OpenSSL escapes: such values
# (nearly all of them) are copied as they are.
_PLAIN_VALUE = re.compile(rb"[ -*,-.0-~]*")


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
