"""Reading and writing imagelists as the HEPiX tools exchange them.

vmcaster and AppDB publish a list as a detached S/MIME ``multipart/signed``
message; vmcatcher trusts it when the signature chains to its CA directory
and the signer is the list's own endorser (subject == ``hv:dn``, issuer ==
``hv:ca``). This module composes the model, the S/MIME codec and the X.509
verifier into the checks ``gitreg check``, ``import`` and ``export`` share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gitreg.errors import (
    InvalidDocumentError,
    Problem,
    RejectedError,
    SignatureError,
)
from gitreg.model.imagelist import Imagelist, parse_imagelist
from gitreg.model.strictjson import DEFAULT_MAX_SIZE


def is_smime(data: bytes) -> bool:
    """Whether ``data`` looks like a MIME message rather than bare JSON."""
    head = data[:2048].lstrip().lower()
    return head.startswith((b"mime-version", b"content-type")) or b"multipart/signed" in head


@dataclass
class Assessment:
    """Everything ``gitreg check`` found about one file."""

    source: str
    signed: bool
    imagelist: Imagelist | None = None
    signer_dn: str | None = None
    signer_ca: str | None = None
    signature_checked: bool = False
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    expired: bool = False

    @property
    def valid(self) -> bool:
        return not self.problems


def assess(data: bytes, *, source: str, ca_dir: Path | None, now: datetime,
           max_size: int = DEFAULT_MAX_SIZE) -> Assessment:
    """Check one plain or S/MIME-signed list; collect every problem, raise nothing.

    With ``ca_dir`` the signature is verified against that directory only and
    the signer must be the list's endorser.
    """
    result = Assessment(source=source, signed=is_smime(data))
    payload = data
    if result.signed:
        try:
            payload = _open_smime(data, source, ca_dir, now, result)
        except (SignatureError, InvalidDocumentError) as exc:
            result.problems.append(Problem("", f"signature: {exc.message}", source))
            if isinstance(exc, InvalidDocumentError):
                return result
    elif ca_dir is not None:
        result.problems.append(Problem("", "not signed: --ca-dir needs an S/MIME-signed list",
                                       source))
    try:
        imagelist = parse_imagelist(payload, source=source, max_size=max_size)
    except InvalidDocumentError as exc:
        result.problems.extend(exc.problems)
        return result
    result.imagelist = imagelist
    result.warnings.extend(imagelist.warnings)
    for problem in imagelist.time_problems(now):
        result.problems.append(problem)
        if "expired" in problem.message:
            result.expired = True
    if result.signature_checked and result.signer_dn is not None:
        try:
            _binding(imagelist, result.signer_dn, result.signer_ca or "", source)
        except RejectedError as exc:
            result.problems.append(Problem("hv:imagelist.hv:endorser.hv:x509", exc.message,
                                           source))
    return result


def _open_smime(data: bytes, source: str, ca_dir: Path | None, now: datetime,
                result: Assessment) -> bytes:
    from gitreg.interop.smime import parse_smime, verify_smime

    if ca_dir is None:
        result.warnings.append("signature not verified (no --ca-dir given)")
        return parse_smime(data).payload
    from gitreg.signing.x509 import CAStore

    store = CAStore.from_directory(ca_dir)
    payload, signer = verify_smime(data, store, at=now)
    result.signature_checked = True
    result.signer_dn, result.signer_ca = signer.subject_dn, signer.issuer_dn
    return payload


def _binding(imagelist: Imagelist, signer_dn: str, signer_ca: str, source: str) -> None:
    from gitreg.signing.x509 import X509SignerInfo, check_binding

    info = X509SignerInfo(subject_dn=signer_dn, issuer_dn=signer_ca, certificate=None)  # type: ignore[arg-type]
    check_binding(info, dn=imagelist.endorser_dn, ca=imagelist.endorser_ca, source=source)


def import_signed(data: bytes, *, source: str, ca_dir: Path | None, now: datetime,
                  verify: bool = True) -> Imagelist:
    """Verify fail-closed and return the list (``gitreg import``).

    Raises the first typed error: untrusted or bad signature, invalid list,
    signer not the endorser, or expired.
    """
    if verify and ca_dir is None:
        raise SignatureError(f"{source}: a CA directory is needed to verify the list")
    if not is_smime(data):
        if verify:
            raise SignatureError(f"{source}: not an S/MIME-signed list; refusing to import "
                                 "it unverified (use --no-verify to override)")
        payload = data
    elif verify:
        assert ca_dir is not None
        from gitreg.interop.smime import verify_smime
        from gitreg.signing.x509 import CAStore, check_binding

        payload, signer = verify_smime(data, CAStore.from_directory(ca_dir), at=now)
        imagelist = parse_imagelist(payload, source=source)
        check_binding(signer, dn=imagelist.endorser_dn, ca=imagelist.endorser_ca,
                      source=source)
        imagelist.check_times(now)
        return imagelist
    else:
        from gitreg.interop.smime import parse_smime

        payload = parse_smime(data).payload
    imagelist = parse_imagelist(payload, source=source)
    imagelist.check_times(now)
    return imagelist


def export_signed(imagelist: Imagelist, *, cert_pem: bytes, key_pem: bytes,
                  source: str) -> bytes:
    """The list as a vmcatcher-compatible detached S/MIME message.

    Refuses a certificate that is not the list's endorser: vmcatcher would
    reject the result, so it is better not to write it.
    """
    from cryptography import x509

    from gitreg.interop.smime import build_smime
    from gitreg.signing.x509 import X509SignerInfo, check_binding, dn_openssl

    cert = x509.load_pem_x509_certificate(cert_pem)
    info = X509SignerInfo(subject_dn=dn_openssl(cert.subject),
                          issuer_dn=dn_openssl(cert.issuer), certificate=cert)
    check_binding(info, dn=imagelist.endorser_dn, ca=imagelist.endorser_ca, source=source)
    return build_smime(imagelist.canonical_bytes(), cert_pem, key_pem)
