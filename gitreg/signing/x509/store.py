"""The CA store: trust anchors, intermediates and CRLs; chains judged at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from gitreg.errors import (
    UntrustedSignerError,
)
from gitreg.signing.x509.der import _PARSE_ERRORS, _checked_certificate
from gitreg.signing.x509.dn import _dn_from_der, _dns_of_der, _raw_names

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
        from gitreg.signing.x509.directory import _store_from_pem

        return _store_from_pem(tuple(c.encode() if isinstance(c, str) else c for c in certs),
                               tuple(c.encode() if isinstance(c, str) else c for c in crls))

    @classmethod
    def from_directory(cls, path: str | Path) -> CAStore:
        """A store from an IGTF / ``-CApath`` directory; cached until a file changes.

        Reads ``*.pem`` and ``<hash>.N`` certificates and ``<hash>.rN`` CRLs
        (PEM or DER) and nothing else: no ``.signing_policy``, no system bundle.
        """
        from gitreg.signing.x509.directory import load_directory_cached

        return load_directory_cached(Path(path))

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


def _pem(cert: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
