"""CA material from files: PEM/DER certificates and CRLs, IGTF CA directories.

Stores are cached: verifying 10,000 lists must not re-read the directory.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from cryptography import x509

from gitreg.errors import (
    InvalidKeyError,
    UsageError,
)
from gitreg.signing.x509.der import _PARSE_ERRORS, RefusedCertificateError, _checked_certificate
from gitreg.signing.x509.store import CAStore

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


def load_directory_cached(directory: Path) -> CAStore:
    """``CAStore.from_directory``: read once, again only when a file changed."""
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
