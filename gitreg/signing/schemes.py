"""The one registry of signature schemes: what gitreg knows about each.

Everything that tells schemes apart reads it from here: the armour that
names a signature's scheme, the shape of a key id (policy validation), the
class that loads key material from a policy entry, and how a signature names
its signer. A new scheme is one module implementing ``interface.PublicKey``
plus one entry below.

Scheme modules are imported only when their keys or signatures are met
(X.509 pulls in asn1crypto, OpenPGP needs gpg).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from gitreg.errors import InvalidKeyError, SignatureError
from gitreg.signing.interface import PublicKey, Scheme

# Enough of a signature to see its armour or MIME header.
_SNIFF = 4096


@dataclass(frozen=True)
class SchemeInfo:
    """What one scheme is, for code that must not know the scheme modules."""

    name: Scheme
    title: str
    # Leading bytes of its detached signatures (after leading whitespace).
    armours: tuple[bytes, ...]
    key_id_shape: re.Pattern[str]
    key_id_hint: str
    # "module:attribute" of the PublicKey class (``from_policy`` loads an entry)
    # and of the function giving the signer id a signature names (or None).
    key_class: str
    names_signer: str | None = None

    def public_key_class(self) -> type[PublicKey]:
        return cast("type[PublicKey]", _attribute(self.key_class))

    def named_signer(self, signature: bytes) -> str | None:
        """The id a signature of this scheme names its signer by (SSH: the key's
        fingerprint; OpenPGP: the issuer, maybe a subkey), or None."""
        if self.names_signer is None:
            return None
        named = cast("Callable[[bytes], str | None]", _attribute(self.names_signer))
        return named(signature)


@cache
def _attribute(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


SCHEMES: Mapping[str, SchemeInfo] = {
    "ssh": SchemeInfo(
        "ssh", "SSH", (b"-----BEGIN SSH SIGNATURE-----",),
        re.compile(r"SHA256:[A-Za-z0-9+/]{43}"),
        'the "SHA256:..." fingerprint ssh-keygen -lf prints',
        "gitreg.signing.ssh:SSHPublicKey", "gitreg.signing.ssh:signature_key_id"),
    "openpgp": SchemeInfo(
        "openpgp", "OpenPGP", (b"-----BEGIN PGP SIGNATURE-----",),
        re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}"),
        "the upper-case hex fingerprint of the primary key",
        "gitreg.signing.openpgp:OpenPGPPublicKey", "gitreg.signing.openpgp:signature_issuer"),
    "x509": SchemeInfo(
        "x509", "X.509", (b"-----BEGIN PKCS7-----", b"-----BEGIN CMS-----", b"\x30"),
        re.compile(r"/[^/=]+=.*"),
        "the subject DN in OpenSSL slash form (/C=../O=../CN=..)",
        "gitreg.signing.x509:X509PublicKey"),
}


def detect_scheme(signature: bytes) -> Scheme:
    """Tell the scheme of a detached signature by its armour."""
    head = signature.lstrip()[:_SNIFF]
    for info in SCHEMES.values():
        if head.startswith(info.armours):
            return info.name
    lowered = head.lower()
    if b"multipart/signed" in lowered or lowered.startswith(b"mime-version"):
        return "x509"  # S/MIME: the CMS signature inside a MIME message
    raise SignatureError("unrecognised signature format (not SSHSIG, OpenPGP or S/MIME/CMS)")


def scheme(name: object) -> SchemeInfo:
    """The registry entry of a policy entry's ``scheme``; ``InvalidKeyError`` if unknown."""
    info = SCHEMES.get(name) if isinstance(name, str) else None
    if info is None:
        raise InvalidKeyError(f"policy key has unknown scheme {name!r} "
                              f"(expected {', '.join(repr(s) for s in SCHEMES)})")
    return info


def key_from_policy(entry: Mapping[str, Any]) -> PublicKey:
    """The key a policy ``keys`` entry describes (uncached: see ``keys``)."""
    loader = scheme(entry.get("scheme")).public_key_class()
    key: PublicKey = loader.from_policy(entry)  # type: ignore[attr-defined]
    return key


def named_signer(signature: bytes) -> tuple[Scheme, str | None]:
    """The scheme of a signature and the id it names its signer by (or None)."""
    name = detect_scheme(signature)
    return name, SCHEMES[name].named_signer(signature)
