"""Detached CMS signatures: parsing (asn1crypto, or the fast DER reader), verifying
against a ``CAStore`` at a given time, and signing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from gitreg.errors import (
    SignatureError,
    UntrustedSignerError,
    UsageError,
    WeakDigestError,
)
from gitreg.signing.x509.der import (
    _OID_CONTENT_TYPE,
    _OID_MESSAGE_DIGEST,
    _PARSE_ERRORS,
    _TAG_SET,
    RefusedCertificateError,
    _der_length,
    _read_signed_data,
    _SignedData,
    _SignerInfo,
)
from gitreg.signing.x509.dn import _dn_from_der, _raw_names, certificate_dns
from gitreg.signing.x509.store import CAStore, _Authority, _authority_of_der, _extension, _utc


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


def content_matches(data: bytes, cms: bytes) -> bool | None:
    """Whether ``cms`` signs ``data`` by the key of its own embedded signer certificate.

    Trusts no CA and decides no trust (anyone can make a signature that
    matches): it tells a list edited after signing from an untouched one when
    the signer cannot be verified. None: it cannot be told (no embedded signer
    certificate, a malformed signature, an algorithm gitreg does not check).
    """
    try:
        signed = _parse_signed_data(cms)
        if len(signed.signers) != 1:
            return None
        signer = signed.signers[0]
        leaf = next((a for a in _load_embedded(signed) if _matches_signer(a, signer)), None)
        if leaf is None or signer.digest not in _WITH_SHA1:
            return None
        digest = _WITH_SHA1[signer.digest][0](data).digest()
        message = data
        if signer.signed_attrs is not None:
            declared = [v for oid, v in signer.attributes if oid == _OID_MESSAGE_DIGEST]
            if len(declared) != 1 or len(declared[0]) != 1:
                return None
            if declared[0][0] != digest:
                return False
            message = signer.signed_attrs
        _check_signature(signer, message, leaf.cert, leaf.dn, _WITH_SHA1)
    except SignatureError as exc:
        return False if isinstance(exc.__cause__, InvalidSignature) else None
    except _PARSE_ERRORS:
        return None
    return True


def _load_embedded(signed: _SignedData) -> list[_Authority]:
    certs = []
    for index, der in enumerate(signed.certificates):
        try:
            certs.append(_authority_of_der(der))
        except RefusedCertificateError as exc:
            raise UntrustedSignerError(f"CMS signature: certificate {index}"
                                       f"{_subject_of(der)} is refused: {exc}") from exc
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


def _subject_of(der: bytes) -> str:
    """`` (subject DN)`` for a message, or nothing if the names do not parse."""
    try:
        return f" ({_dn_from_der(_raw_names(der)[1])})"
    except _PARSE_ERRORS:
        return ""
