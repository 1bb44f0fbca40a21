"""X.509 identities as the policy names them (DN + CA DN + CA material), and signers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gitreg.errors import (
    InvalidKeyError,
    UntrustedSignerError,
    UsageError,
)
from gitreg.signing.interface import (
    NAMESPACE_IMAGELIST,
    PublicKey,
    Signer,
    VerifiedSignature,
)
from gitreg.signing.x509.cms import (
    X509SignerInfo,
    _armour,
    _load_signing_material,
    _sign,
    verify_cms,
)
from gitreg.signing.x509.der import _PARSE_ERRORS
from gitreg.signing.x509.directory import _load_material
from gitreg.signing.x509.dn import certificate_dns
from gitreg.signing.x509.store import CAStore, _pem


def check_binding(info: X509SignerInfo, *, dn: str, ca: str, source: str = "") -> None:
    """The vmcatcher rule: the signer is the list's endorser (``hv:dn``) under ``hv:ca``."""
    if info.subject_dn == dn and info.issuer_dn == ca:
        return
    where = f"{source}: " if source else ""
    raise UntrustedSignerError(
        f"{where}signed by {info.subject_dn} (issuer {info.issuer_dn}), but the list names "
        f"the endorser hv:dn {dn} (hv:ca {ca})")


class X509PublicKey(PublicKey):
    """An endorser identity: certificate subject ``dn`` issued by ``ca_dn``,
    trusted through the CA certificates (and CRLs) carried with it."""

    scheme = "x509"
    # A verdict holds only while the chain and its CRLs do.
    timeless = False

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
