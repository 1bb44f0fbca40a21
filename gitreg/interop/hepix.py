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
from typing import TYPE_CHECKING

from gitreg.errors import (
    InvalidDocumentError,
    Problem,
    SignatureError,
    UntrustedSignerError,
    UsageError,
    WeakDigestError,
)
from gitreg.model.dates import format_date
from gitreg.model.imagelist import ENDORSER, ENDORSER_X509, WRAPPER, Imagelist, parse_imagelist
from gitreg.model.strictjson import DEFAULT_MAX_SIZE, json_path

if TYPE_CHECKING:
    from gitreg.signing.x509 import X509SignerInfo

# The JSON path a binding problem is reported at: the endorser the signer must be.
ENDORSER_PATH = json_path(json_path(WRAPPER, ENDORSER), ENDORSER_X509)


def message_cap(max_size: int) -> int:
    """The largest S/MIME message read for a list of at most ``max_size`` bytes.

    The signed part is the list with CRLF line ends, and the signature (with
    its certificates) is base64: twice the list plus 64 KiB covers both.
    """
    return 2 * max_size + (64 << 10)


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
    signer: X509SignerInfo | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    expired: bool = False
    # Whether the verified signer is the list's endorser (hv:dn, hv:ca); None
    # when that could not be judged (no verified signature, no endorser).
    signer_is_endorser: bool | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def signature_checked(self) -> bool:
        """Whether the signature verified against the CA directory (binding aside)."""
        return self.signer is not None

    @property
    def signer_dn(self) -> str | None:
        return None if self.signer is None else self.signer.subject_dn

    @property
    def signer_ca(self) -> str | None:
        return None if self.signer is None else self.signer.issuer_dn


def oversized(source: str, size: int, max_size: int, *, signed: bool = False) -> Assessment:
    """The assessment of a file too large to be read at all."""
    return Assessment(source=source, signed=signed, problems=[Problem(
        "", f"file is {size} bytes, over the limit of {max_size} (see --max-size)", source)])


def assess(data: bytes, *, source: str, ca_dir: Path | None, now: datetime,
           max_size: int = DEFAULT_MAX_SIZE, allow_sha1: bool = False) -> Assessment:
    """Check one plain or S/MIME-signed list; collect every problem, raise nothing
    about the data (a CA directory that cannot be read is still an error).

    With ``ca_dir`` the signature is verified against that directory only and
    the signer must be the list's endorser. A signature that fails does not
    stop the list itself from being checked, so every problem is reported.
    A SHA-1 signature is a problem unless ``allow_sha1``, then a warning.
    """
    result = Assessment(source=source, signed=is_smime(data))
    payload = data
    if result.signed:
        try:
            payload = _open_smime(data, source, ca_dir, now, result, allow_sha1=allow_sha1)
        except InvalidDocumentError as exc:
            result.problems.extend(exc.problems)
            return result
        except SignatureError as exc:
            from gitreg.interop.smime import parse_smime

            try:
                # The signature is bad, but the list inside may say more.
                parts = parse_smime(data, source=source)
            except (SignatureError, InvalidDocumentError):
                result.problems.append(Problem("", _signature_problem(exc), source))
                return result
            result.problems.append(Problem(
                "", _signature_problem(exc, parts.content, parts.signature_der), source))
            payload = parts.payload
    elif ca_dir is not None:
        result.problems.append(Problem(
            "", "not signed: --ca-dir needs an S/MIME-signed list (plain JSON carries "
                "no signature to verify)", source))
    try:
        imagelist = parse_imagelist(payload, source=source, max_size=max_size)
    except InvalidDocumentError as exc:
        result.problems.extend(exc.problems)
        # An invalid list still names its endorser: the signer binding is a
        # problem of its own, reported with the others.
        _check_binding(result, _endorser_names(payload), source)
        return result
    result.imagelist = imagelist
    result.warnings.extend(imagelist.warnings)
    result.problems.extend(imagelist.time_problems(now))
    result.expired = imagelist.expires <= now
    _check_binding(result, (imagelist.endorser_dn, imagelist.endorser_ca), source)
    return result


def _check_binding(result: Assessment, endorser: tuple[str, str] | None, source: str) -> None:
    result.signer_is_endorser = None
    if result.signer is None or endorser is None:
        return
    from gitreg.signing.x509 import check_binding

    try:
        check_binding(result.signer, dn=endorser[0], ca=endorser[1])
    except UntrustedSignerError as exc:
        result.signer_is_endorser = False
        result.problems.append(Problem(ENDORSER_PATH, f"untrusted signer: {exc.message}",
                                       source))
        return
    result.signer_is_endorser = True


def _endorser_names(payload: bytes) -> tuple[str, str] | None:
    """``(hv:dn, hv:ca)`` of a list that failed validation, if it has both as strings."""
    import json

    try:
        body = json.loads(payload.decode("utf-8"))
        x509 = body[WRAPPER][ENDORSER][ENDORSER_X509]
        dn, ca = x509["hv:dn"], x509["hv:ca"]
    except (ValueError, UnicodeDecodeError, TypeError, KeyError, RecursionError):
        return None
    return (dn, ca) if isinstance(dn, str) and isinstance(ca, str) else None


def _signature_problem(exc: SignatureError, content: bytes | None = None,
                       signature: bytes | None = None) -> str:
    if isinstance(exc, WeakDigestError):
        return exc.message  # says "signature uses SHA-1, refused": not a bad signature
    if isinstance(exc, UntrustedSignerError):
        # The chain is checked before the signature (as OpenSSL does). Checked
        # against its own certificate, trusting nothing, the signature still
        # tells a list edited after signing from an untouched one.
        from gitreg.signing.x509.cms import content_matches

        matches = None if content is None or signature is None else \
            content_matches(content, signature)
        if matches is False:
            return (f"untrusted signer: {exc.message}; and the content does not match the "
                    "signature: the list was changed after it was signed")
        if matches:
            return (f"untrusted signer: {exc.message}; the signature matches the content, "
                    "but nothing in --ca-dir vouches for its signer, so the list is not "
                    "verified")
        return (f"untrusted signer: {exc.message}; the signature could not be checked at "
                "all, so nothing in this list is verified (not even that it is unchanged)")
    return f"bad signature: {exc.message}"


SHA1_WARNING = ("signature uses SHA-1, accepted because of --allow-sha1: SHA-1 signatures "
                "can be forged; have the list re-signed with SHA-256")


def _open_smime(data: bytes, source: str, ca_dir: Path | None, now: datetime,
                result: Assessment, *, allow_sha1: bool = False) -> bytes:
    from gitreg.interop.smime import parse_smime, verify_smime

    if ca_dir is None:
        result.warnings.append("signature not verified (give --ca-dir to verify it)")
        return parse_smime(data, source=source).payload
    from gitreg.signing.x509 import CAStore

    store = CAStore.from_directory(ca_dir)
    payload, signer = verify_smime(data, store, at=now, allow_sha1=allow_sha1)
    result.signer = signer
    if signer.digest == "sha1":
        result.warnings.append(SHA1_WARNING)
    return payload


def import_signed(data: bytes, *, source: str, ca_dir: Path | None, now: datetime,
                  verify: bool = True, max_size: int = DEFAULT_MAX_SIZE,
                  allow_sha1: bool = False) -> Imagelist:
    """Verify fail-closed and return the list (``gitreg import``).

    Raises the first typed error: an unsigned list (SignatureError), a bad or
    untrusted signature, an invalid list, a signer that is not the endorser
    (UntrustedSignerError), or an expired list (ExpiredError). ``verify=False``
    skips only the signature: the list must still be valid and current.
    """
    if verify and ca_dir is None:
        raise UsageError(f"{source}: a CA directory is needed to verify the list")
    if not is_smime(data):
        if verify:
            raise SignatureError(f"{source}: not an S/MIME-signed list; refusing to import "
                                 "it unverified", hint="use --no-verify to import it anyway")
        imagelist = parse_imagelist(data, source=source, max_size=max_size)
    elif verify:
        assert ca_dir is not None
        from gitreg.interop.smime import verify_smime
        from gitreg.signing.x509 import CAStore, check_binding

        payload, signer = verify_smime(data, CAStore.from_directory(ca_dir), at=now,
                                       source=source, allow_sha1=allow_sha1)
        imagelist = parse_imagelist(payload, source=source, max_size=max_size)
        check_binding(signer, dn=imagelist.endorser_dn, ca=imagelist.endorser_ca,
                      source=source)
    else:
        from gitreg.interop.smime import parse_smime

        payload = parse_smime(data, source=source).payload
        imagelist = parse_imagelist(payload, source=source, max_size=max_size)
    imagelist.check_times(now)
    return imagelist


def export_signed(imagelist: Imagelist, *, cert_pem: bytes, key_pem: bytes, source: str,
                  cert_source: str = "certificate") -> bytes:
    """The list as a vmcatcher-compatible detached S/MIME message of its canonical bytes.

    Refuses a certificate that is not the list's endorser: vmcatcher would
    reject the result, so it is better not to write it.
    """
    from cryptography import x509

    from gitreg.interop.smime import build_smime
    from gitreg.signing.x509 import certificate_dns

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        subject_dn, issuer_dn = certificate_dns(cert)
    except (ValueError, x509.InvalidVersion) as exc:
        raise UsageError(f"{cert_source}: not a PEM certificate: {exc}") from exc
    # The vmcatcher rule (check_binding), said before anything is signed.
    if (subject_dn, issuer_dn) != (imagelist.endorser_dn, imagelist.endorser_ca):
        raise UntrustedSignerError(
            f"{source}: refusing to sign with {cert_source}: the certificate is "
            f"{subject_dn} (issuer {issuer_dn}), but the list names the endorser hv:dn "
            f"{imagelist.endorser_dn} (hv:ca {imagelist.endorser_ca})",
            hint="sign with the endorser's own certificate, or set hv:dn and hv:ca "
                 "to its subject and issuer")
    return build_smime(imagelist.canonical_bytes(), cert_pem, key_pem, source=source)


def expiry_warning(imagelist: Imagelist, now: datetime) -> str | None:
    """A warning for exporting a list subscribers will refuse, or None."""
    if imagelist.expires <= now:
        return (f"imagelist {imagelist.identifier} expired at "
                f"{format_date(imagelist.expires)}; subscribers will reject it")
    return None
