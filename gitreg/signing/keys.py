"""The registry of signature schemes: keys from policy entries and command-line
specs, and verification of a signature against a set of allowed keys.

Scheme modules are imported here eagerly except X.509, which is imported only
when an X.509 key is asked for (it pulls in asn1crypto).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from gitreg.errors import InvalidKeyError, SignatureError, UntrustedSignerError, UsageError
from gitreg.signing import openpgp, schemes, ssh
from gitreg.signing.interface import PublicKey, Signer, VerifiedSignature
from gitreg.signing.openpgp import OpenPGPPublicKey, OpenPGPSigner
from gitreg.signing.passphrase import is_encrypted, openssh_container, passphrase_for
from gitreg.signing.ssh import SSHPublicKey, SSHSigner

_OPENPGP_PREFIX = "openpgp:"
_SSH_PREFIX = "ssh:"
# Enough to tell a PEM/armour header or a DER certificate from an SSH key line.
_SNIFF_BYTES = 4096


def public_key_from_policy(entry: Mapping[str, Any]) -> PublicKey:
    """The key a policy ``keys`` entry describes, dispatched on ``entry["scheme"]``.

    Equal entries give the same (cached) object: a sync meets the same few
    keys in every policy version it walks through.
    """
    if not isinstance(entry, Mapping):
        raise InvalidKeyError(f"a policy key must be an object, not {type(entry).__name__}")
    try:
        canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidKeyError(f"policy key is not plain JSON: {exc}") from exc
    return _public_key_from_canonical(canonical)


@lru_cache(maxsize=1024)
def _public_key_from_canonical(canonical: str) -> PublicKey:
    return schemes.key_from_policy(json.loads(canonical))


def _openpgp_fingerprint(spec: str) -> str:
    try:
        return openpgp.normalise_fingerprint(spec.removeprefix(_OPENPGP_PREFIX))
    except InvalidKeyError as exc:
        raise UsageError(f"key spec {spec!r}: {exc.message}",
                         hint="write openpgp:<40-hex-digit fingerprint>") from exc


def _existing_file(spec: str, what: str) -> Path:
    path = Path(spec.removeprefix(_SSH_PREFIX)).expanduser()
    if not path.is_file():
        raise UsageError(f"{what} {spec!r}: no such file",
                         hint="give a key file path, or openpgp:<fingerprint> for a gpg key")
    return path


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read key file {path}: {exc}") from exc


# What a public half looks like, so a signing option given one says so instead
# of passing cryptography's "MalformedFraming" on.
_PUBLIC_FORMS: tuple[tuple[tuple[bytes, ...], str, str], ...] = (
    ((b"ssh-", b"ecdsa-sha2-", b"sk-ssh-", b"sk-ecdsa-", b"---- BEGIN SSH2 PUBLIC KEY"),
     "an SSH public key", "give the private key file (usually the same name without .pub)"),
    ((b"-----BEGIN PGP PUBLIC KEY BLOCK-----",),
     "an OpenPGP public key", "sign with openpgp:<fingerprint>: gpg holds the secret key"),
    ((b"-----BEGIN CERTIFICATE-----",),
     "an X.509 certificate", "sign lists with x509:CERT.pem:KEY.pem"),
    ((b"-----BEGIN PUBLIC KEY-----", b"-----BEGIN RSA PUBLIC KEY-----"),
     "a public key", "give the private key file"),
)


def public_key_problem(data: bytes, path: Path) -> UsageError | None:
    """The error for a public key (or certificate) given where a private key is needed."""
    head = data.lstrip()[:_SNIFF_BYTES]
    for prefixes, what, hint in _PUBLIC_FORMS:
        if head.startswith(prefixes):
            return UsageError(f"{path} is {what}; signing needs a private key", hint=hint)
    return None


def load_ssh_signer(path: Path, passphrase: bytes | None = None) -> SSHSigner:
    """The signer of an SSH private key file; for an encrypted key without
    ``passphrase``, the passphrase comes from ``passphrase_for`` (environment or
    terminal). A wrong passphrase is a ``UsageError`` naming the file."""
    data = _read_key_file(path)
    problem = public_key_problem(data, path)
    if problem is not None:
        raise problem
    if passphrase is not None or not is_encrypted(data):
        return SSHSigner.from_file(path, passphrase)
    given = passphrase_for(path)
    try:
        return SSHSigner.from_file(path, given.value)
    except UsageError as exc:
        # cryptography says ValueError for a key it cannot decrypt; other
        # failures (unsupported key type) keep their own message.
        if isinstance(exc.__cause__, ValueError):
            raise UsageError(f"wrong passphrase for SSH private key {path}",
                             hint=f"the passphrase from {given.source} does not unlock it") \
                from exc
        raise


def load_signer(spec: str, *, passphrase: bytes | None = None) -> Signer:
    """A signer from ``openpgp:FINGERPRINT`` (gpg, $GNUPGHOME) or an SSH private key path
    (asking for the passphrase of an encrypted key, see ``load_ssh_signer``)."""
    if spec.startswith(_OPENPGP_PREFIX):
        return OpenPGPSigner(_openpgp_fingerprint(spec))
    return load_ssh_signer(_existing_file(spec, "signing key"), passphrase)


def load_public_key(spec: str, *, at: datetime) -> PublicKey:
    """A public key from ``openpgp:FINGERPRINT``, an SSH ``.pub`` or private key file,
    an armoured OpenPGP public key file, or an X.509 certificate file (PEM or DER;
    its chain is validated at ``at``)."""
    if spec.startswith(_OPENPGP_PREFIX):
        return OpenPGPPublicKey.from_gnupghome(_openpgp_fingerprint(spec))
    path = _existing_file(spec, "public key")
    try:
        with path.open("rb") as stream:
            head = stream.read(_SNIFF_BYTES).lstrip()
    except OSError as exc:
        raise UsageError(f"cannot read public key {spec!r}: {exc}") from exc
    if head.startswith(b"-----BEGIN CERTIFICATE-----") or head[:1] == b"\x30":
        # Imported late: only X.509 needs asn1crypto.
        from gitreg.signing.x509 import X509PublicKey

        certificate: PublicKey = X509PublicKey.from_certificate_file(path, at=at)
        return certificate
    if head.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"):
        try:
            return OpenPGPPublicKey.from_armored(path.read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidKeyError(f"{path}: not an armoured OpenPGP key: {exc}") from exc
        except InvalidKeyError as exc:
            raise InvalidKeyError(f"{path}: {exc.message}") from exc
    if head.startswith(b"-----BEGIN ") and b"PRIVATE KEY-----" in head:
        container = openssh_container(_read_key_file(path))
        if container is not None and container.encrypted and len(container.public_keys) == 1:
            # The public half of an encrypted OpenSSH key is in clear: no passphrase.
            try:
                return SSHPublicKey(container.public_keys[0], path.name)
            except InvalidKeyError as exc:
                raise InvalidKeyError(f"{path}: {exc.message}") from exc
        return load_ssh_signer(path).public_key()
    return SSHPublicKey.from_file(path)


def select_key(signature: bytes, keys: Iterable[PublicKey]) -> PublicKey | None:
    """The listed key a signature names as its signer (SSH key, OpenPGP issuer or one
    of its subkeys), or None when the scheme names none or no listed key matches.

    Raises ``SignatureError`` for a malformed signature.
    """
    scheme, named = schemes.named_signer(signature)
    if named is None:
        return None
    return next((k for k in keys if k.scheme == scheme and k.matches_named(named)), None)


def _untrusted_ssh(data: bytes, signature: bytes, namespace: str,
                   allowed: int, at: datetime) -> SignatureError:
    """Tell a valid signature by an unlisted key from one that is simply bad."""
    parsed = ssh.parse_signature(signature)
    try:
        SSHPublicKey(parsed.public_key).verify(data, signature, namespace=namespace, at=at)
    except (SignatureError, InvalidKeyError) as exc:
        return SignatureError(f"SSH signature by {parsed.key_id}, which is not an allowed "
                              f"key, and not valid either: {exc.message}")
    return UntrustedSignerError(f"SSH signature by {parsed.key_id} is valid, but that key is "
                                f"not among the {allowed} allowed SSH keys")


def verify_any(data: bytes, signature: bytes, keys: Iterable[PublicKey], *,
               namespace: str, at: datetime) -> VerifiedSignature:
    """Verify ``signature`` over ``data`` by whichever of ``keys`` made it, at ``at``.

    The key is picked by the id the signature embeds where the scheme has one;
    otherwise (X.509, an OpenPGP signature without issuer) each key of the
    scheme is tried. ``UntrustedSignerError`` when the signer is not listed.
    """
    scheme, named = schemes.named_signer(signature)
    candidates = [k for k in keys if k.scheme == scheme]
    chosen = None if named is None else next(
        (k for k in candidates if k.matches_named(named)), None)
    if chosen is not None:
        return chosen.verify(data, signature, namespace=namespace, at=at)
    if scheme == "ssh":
        # The key is in the signature: a stranger's valid one is told from a bad one.
        raise _untrusted_ssh(data, signature, namespace, len(candidates), at)
    if named is not None:
        title = schemes.SCHEMES[scheme].title
        raise UntrustedSignerError(f"{title} signature by {named}, which is not among "
                                   f"the {len(candidates)} allowed {title} keys")
    if not candidates:
        raise UntrustedSignerError(f"{scheme} signature, but no {scheme} key is allowed here")
    failures: list[SignatureError] = []
    for key in candidates:
        try:
            return key.verify(data, signature, namespace=namespace, at=at)
        except SignatureError as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    reasons = "; ".join(f"{key.key_id}: {exc.message}" for key, exc in zip(candidates, failures,
                                                                           strict=True))
    if all(isinstance(exc, UntrustedSignerError) for exc in failures):
        raise UntrustedSignerError(f"{scheme} signature is by none of the allowed keys "
                                   f"({reasons})")
    raise SignatureError(f"{scheme} signature verifies with none of the allowed keys "
                         f"({reasons})")
