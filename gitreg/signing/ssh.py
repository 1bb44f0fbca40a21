"""SSH signatures (OpenSSH PROTOCOL.sshsig), verified and made in-process.

Verification is the hot path of every sync, so it never spawns ssh-keygen:
the armour and the wire format are parsed here and the signature is checked
with ``cryptography``. Ed25519 and RSA (rsa-sha2-512/256) are accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.rsa import (
    RSAPrivateKey,
    RSAPublicKey,
    RSAPublicNumbers,
)

from gitreg.errors import InvalidKeyError, SignatureError, UsageError
from gitreg.signing.interface import PublicKey, Signer, VerifiedSignature

_MAGIC = b"SSHSIG"
_VERSION = 1
_BEGIN = b"-----BEGIN SSH SIGNATURE-----"
_END = b"-----END SSH SIGNATURE-----"
# ssh-keygen wraps the base64 body at 70 columns; we write the same bytes.
_ARMOUR_WIDTH = 70
# The largest real signature (RSA 16384) is under 5 KiB of armour.
_MAX_SIGNATURE_BYTES = 64 * 1024
_BASE64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")

_ED25519 = "ssh-ed25519"
_RSA = "ssh-rsa"
KEY_TYPES = (_ED25519, _RSA)
_MESSAGE_HASHES: dict[str, Callable[[bytes], Any]] = {
    "sha512": hashlib.sha512,
    "sha256": hashlib.sha256,
}
_RSA_SIGNATURE_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA512]] = {
    "rsa-sha2-512": hashes.SHA512,
    "rsa-sha2-256": hashes.SHA256,
}
# Below 2048 bits RSA is within reach of well-funded attackers; OpenSSH's own
# floor (1024) is too low for keys that endorse what sites boot.
MIN_RSA_BITS = 2048

CryptoPublicKey = Ed25519PublicKey | RSAPublicKey


# --- SSH wire format ---------------------------------------------------------


class _WireReader:
    """Reads SSH wire-format fields (RFC 4251 5) from one buffer, strictly."""

    __slots__ = ("_buf", "_pos", "_what")

    def __init__(self, buf: bytes, what: str) -> None:
        self._buf = buf
        self._pos = 0
        self._what = what

    def raw(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._buf):
            raise SignatureError(f"{self._what} is truncated")
        chunk = self._buf[self._pos:end]
        self._pos = end
        return chunk

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.raw(4))[0]
        return value

    def string(self) -> bytes:
        return self.raw(self.uint32())

    def text(self) -> str:
        try:
            return self.string().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError(f"{self._what} holds a field that is not UTF-8") from exc

    def mpint(self) -> int:
        raw = self.string()
        if raw[:1] and raw[0] & 0x80:
            raise SignatureError(f"{self._what} holds a negative integer")
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        if self._pos != len(self._buf):
            raise SignatureError(f"{self._what} has {len(self._buf) - self._pos} bytes of "
                                 "trailing data")


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def key_fingerprint(blob: bytes) -> str:
    """The ``SHA256:<unpadded base64>`` fingerprint ``ssh-keygen -l`` prints."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@lru_cache(maxsize=4096)
def _load_public_blob(blob: bytes) -> tuple[str, CryptoPublicKey]:
    """The key type and the cryptography key of an SSH public-key blob.

    Cached: a sync verifies thousands of lists against a handful of keys.
    """
    try:
        reader = _WireReader(blob, "SSH public key")
        key_type = reader.text()
        if key_type == _ED25519:
            raw = reader.string()
            reader.end()
            if len(raw) != 32:
                raise SignatureError(f"Ed25519 key is {len(raw)} bytes, not 32")
            return key_type, Ed25519PublicKey.from_public_bytes(raw)
        if key_type == _RSA:
            e = reader.mpint()
            n = reader.mpint()
            reader.end()
            if n.bit_length() < MIN_RSA_BITS:
                raise InvalidKeyError(f"SSH RSA key {key_fingerprint(blob)} has "
                                      f"{n.bit_length()} bits; at least {MIN_RSA_BITS} "
                                      "are required")
            return key_type, RSAPublicNumbers(e, n).public_key()
    except SignatureError as exc:
        # The same wire reader parses signatures; for a key it is key trouble.
        raise InvalidKeyError(f"malformed SSH public key: {exc.message}") from exc
    except ValueError as exc:
        raise InvalidKeyError(f"malformed SSH public key: {exc}") from exc
    raise InvalidKeyError(f"unsupported SSH key type {key_type!r}: gitreg accepts "
                          f"{' and '.join(KEY_TYPES)}")


# --- signatures ----------------------------------------------------------------


@dataclass(frozen=True)
class SSHSignature:
    """The fields of one SSHSIG signature blob."""

    public_key: bytes  # the signer's public-key blob (SSH wire format)
    namespace: str
    hash_algorithm: str  # "sha512" or "sha256": hash of the message
    signature_algorithm: str  # "ssh-ed25519", "rsa-sha2-512", ...
    signature: bytes  # the raw signature over the SSHSIG signed-data blob

    @property
    def key_id(self) -> str:
        return key_fingerprint(self.public_key)


def _dearmor(signature: bytes) -> bytes:
    if len(signature) > _MAX_SIGNATURE_BYTES:
        raise SignatureError(f"SSH signature is {len(signature)} bytes, more than the "
                             f"{_MAX_SIGNATURE_BYTES} any real one has")
    lines = signature.strip().splitlines()
    if not lines or lines[0].rstrip() != _BEGIN:
        raise SignatureError("malformed SSH signature armour: missing "
                             "'-----BEGIN SSH SIGNATURE-----' line")
    if len(lines) < 3 or lines[-1].rstrip() != _END:
        raise SignatureError("malformed SSH signature armour: missing "
                             "'-----END SSH SIGNATURE-----' line (truncated?)")
    body = b"".join(line.strip() for line in lines[1:-1])
    if not body or not _BASE64_CHARS.issuperset(body):
        raise SignatureError("malformed SSH signature armour: body is not base64")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise SignatureError(f"malformed SSH signature armour: {exc}") from exc


@lru_cache(maxsize=256)
def parse_signature(signature: bytes) -> SSHSignature:
    """Parse an armoured SSHSIG signature strictly (no crypto check yet).

    Cached (the result is immutable): finding the signer and verifying, done
    one after the other, then parse once.
    """
    reader = _WireReader(_dearmor(signature), "SSH signature")
    if reader.raw(len(_MAGIC)) != _MAGIC:
        raise SignatureError("SSH signature does not start with the SSHSIG magic")
    version = reader.uint32()
    if version != _VERSION:
        raise SignatureError(f"SSH signature has version {version}; only 1 is known")
    public_key = reader.string()
    namespace = reader.text()
    if not namespace:
        raise SignatureError("SSH signature has an empty namespace")
    # The reserved field is not covered by the signature: refuse content in it,
    # so one signature has exactly one byte form.
    if reader.string():
        raise SignatureError("SSH signature has a non-empty reserved field")
    hash_algorithm = reader.text()
    if hash_algorithm not in _MESSAGE_HASHES:
        raise SignatureError(f"SSH signature uses hash {hash_algorithm!r}; "
                             "only sha512 and sha256 are allowed")
    inner = _WireReader(reader.string(), "SSH signature value")
    reader.end()
    signature_algorithm = inner.text()
    raw_signature = inner.string()
    inner.end()
    return SSHSignature(public_key, namespace, hash_algorithm, signature_algorithm,
                        raw_signature)


def signature_key_id(signature: bytes) -> str:
    """The fingerprint of the key embedded in an SSH signature."""
    return parse_signature(signature).key_id


def _signed_data(namespace: str, hash_algorithm: str, data: bytes) -> bytes:
    digest = _MESSAGE_HASHES[hash_algorithm](data).digest()
    return b"".join((_MAGIC, _string(namespace.encode("utf-8")), _string(b""),
                     _string(hash_algorithm.encode("ascii")), _string(digest)))


def check_signature(key: CryptoPublicKey, parsed: SSHSignature, data: bytes) -> None:
    """Check ``parsed`` over ``data`` with ``key``; raise ``SignatureError`` if bad.

    Does not check the namespace or which key is embedded: callers do.
    """
    signed = _signed_data(parsed.namespace, parsed.hash_algorithm, data)
    algorithm = parsed.signature_algorithm
    raw = parsed.signature
    try:
        if isinstance(key, Ed25519PublicKey):
            if algorithm != _ED25519:
                raise SignatureError(f"SSH signature algorithm {algorithm!r} does not fit an "
                                     "Ed25519 key")
            key.verify(raw, signed)
            return
        if algorithm == _RSA:
            raise SignatureError("SSH signature uses legacy ssh-rsa (SHA-1); only "
                                 "rsa-sha2-512 and rsa-sha2-256 are accepted")
        hash_type = _RSA_SIGNATURE_HASHES.get(algorithm)
        if hash_type is None:
            raise SignatureError(f"SSH signature algorithm {algorithm!r} does not fit an "
                                 "RSA key")
        size = (key.key_size + 7) // 8
        if len(raw) > size:
            raise SignatureError("SSH RSA signature is longer than the key's modulus")
        # OpenSSH accepts signatures with leading zero bytes dropped; so do we.
        key.verify(raw.rjust(size, b"\0"), signed, padding.PKCS1v15(), hash_type())
    except InvalidSignature as exc:
        raise SignatureError(f"SSH signature by {parsed.key_id} does not match the data "
                             "(the data or the signature was altered)") from exc


# --- keys ----------------------------------------------------------------------


class SSHPublicKey(PublicKey):
    """One SSH public key (Ed25519 or RSA), as the policy lists it."""

    scheme = "ssh"

    def __init__(self, blob: bytes, comment: str = "") -> None:
        self._key_type, self._key = _load_public_blob(bytes(blob))
        self._blob = bytes(blob)
        self.comment = comment

    @classmethod
    def from_openssh(cls, line: str) -> SSHPublicKey:
        """Parse one authorized_keys, allowed_signers or ``.pub`` line."""
        tokens = line.strip().split()
        for i, token in enumerate(tokens[:-1]):
            if token in KEY_TYPES:
                try:
                    blob = base64.b64decode(tokens[i + 1], validate=True)
                except binascii.Error as exc:
                    raise InvalidKeyError(f"SSH {token} key is not valid base64") from exc
                key = cls(blob, " ".join(tokens[i + 2:]))
                if key.key_type != token:
                    raise InvalidKeyError(f"SSH key line says {token} but the key is "
                                          f"{key.key_type}")
                return key
        named = next((t for t in tokens if t.startswith(("ssh-", "ecdsa-", "sk-"))), None)
        if named:
            raise InvalidKeyError(f"unsupported SSH key type {named!r}: gitreg accepts "
                                  f"{' and '.join(KEY_TYPES)}")
        raise InvalidKeyError("not an SSH public key line ('<type> <base64> [comment]')")

    @classmethod
    def from_file(cls, path: str | Path) -> SSHPublicKey:
        """Read the one public key of a ``.pub`` file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read SSH public key file {path}: {exc}") from exc
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if len(lines) != 1:
            raise InvalidKeyError(f"{path}: expected one SSH public key, found "
                                  f"{len(lines)} lines")
        try:
            return cls.from_openssh(lines[0])
        except InvalidKeyError as exc:
            raise InvalidKeyError(f"{path}: {exc.message}") from exc

    @classmethod
    def from_policy(cls, entry: Mapping[str, Any]) -> SSHPublicKey:
        """The key of a policy ``keys`` entry ``{"scheme": "ssh", "public_key": ...}``."""
        if entry.get("scheme") != cls.scheme:
            raise InvalidKeyError(f"policy key has scheme {entry.get('scheme')!r}, not 'ssh'")
        line = entry.get("public_key")
        if not isinstance(line, str):
            raise InvalidKeyError("SSH policy key has no 'public_key' string")
        return cls.from_openssh(line)

    @property
    def blob(self) -> bytes:
        """The public key in SSH wire format (what a signature embeds)."""
        return self._blob

    @property
    def key_type(self) -> str:
        return self._key_type

    @cached_property
    def _fingerprint(self) -> str:
        return key_fingerprint(self._blob)

    @property
    def key_id(self) -> str:
        return self._fingerprint

    def openssh(self) -> str:
        """``<type> <base64>``, the form of a ``.pub`` file without the comment."""
        return f"{self._key_type} {base64.b64encode(self._blob).decode('ascii')}"

    def to_policy(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "public_key": self.openssh()}

    def verify(self, data: bytes, signature: bytes, *, namespace: str,
               at: datetime) -> VerifiedSignature:
        del at  # an SSH key has no validity period; the policy's endorser expiry applies
        return self.verify_parsed(data, parse_signature(signature), namespace=namespace)

    def verify_parsed(self, data: bytes, parsed: SSHSignature, *,
                      namespace: str) -> VerifiedSignature:
        """``verify`` for a signature the caller has parsed already (parse once)."""
        if parsed.public_key != self._blob:
            raise SignatureError(f"SSH signature was made by key {parsed.key_id}, "
                                 f"not by {self.key_id}")
        if parsed.namespace != namespace:
            raise SignatureError(f"SSH signature by {self.key_id} is for namespace "
                                 f"{parsed.namespace!r}, not {namespace!r}")
        check_signature(self._key, parsed, data)
        return VerifiedSignature("ssh", self.key_id,
                                 f"{self._key_type} {self.key_id} {self.comment}".rstrip())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SSHPublicKey) and other._blob == self._blob

    def __hash__(self) -> int:
        return hash(self._blob)

    def __repr__(self) -> str:
        return f"SSHPublicKey({self._key_type} {self.key_id})"


def _armour(blob: bytes) -> bytes:
    body = base64.b64encode(blob)
    lines = [body[i:i + _ARMOUR_WIDTH] for i in range(0, len(body), _ARMOUR_WIDTH)]
    return b"\n".join([_BEGIN, *lines, _END]) + b"\n"


class SSHSigner(Signer):
    """Signs in-process with an OpenSSH (or PEM) private key."""

    scheme = "ssh"

    def __init__(self, private_key: Ed25519PrivateKey | RSAPrivateKey,
                 comment: str = "") -> None:
        if isinstance(private_key, RSAPrivateKey) and private_key.key_size < MIN_RSA_BITS:
            raise InvalidKeyError(f"RSA key has {private_key.key_size} bits; at least "
                                  f"{MIN_RSA_BITS} are required")
        self._private = private_key
        line = private_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH,
        ).decode("ascii")
        self._public = SSHPublicKey.from_openssh(f"{line} {comment}")

    @classmethod
    def from_file(cls, path: str | Path, passphrase: bytes | None = None) -> SSHSigner:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read SSH private key {path}: {exc}") from exc
        try:
            if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
                key: Any = serialization.load_ssh_private_key(data, passphrase)
            else:
                key = serialization.load_pem_private_key(data, passphrase)
        except UnsupportedAlgorithm as exc:
            raise UsageError(
                f"cannot decrypt SSH private key {path}: {exc}",
                hint="passphrase-protected OpenSSH keys need the 'bcrypt' Python module; "
                     "or sign with `ssh-keygen -Y sign -n gitreg-imagelist`",
            ) from exc
        except TypeError as exc:
            # cryptography says TypeError for a missing or unexpected passphrase.
            raise UsageError(f"SSH private key {path}: {exc}") from exc
        except ValueError as exc:
            # cryptography's text ("MalformedFraming", a URL) means nothing to an
            # endorser; it stays on the chain for --verbose.
            raise UsageError(f"cannot load SSH private key {path}: wrong passphrase, or not "
                             "an OpenSSH or PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey | RSAPrivateKey):
            raise UsageError(f"SSH private key {path} is a {type(key).__name__}; gitreg "
                             "signs with Ed25519 or RSA keys")
        try:
            return cls(key, Path(path).name)
        except InvalidKeyError as exc:
            raise UsageError(f"SSH private key {path}: {exc.message}") from exc

    @property
    def key_id(self) -> str:
        return self._public.key_id

    def public_key(self) -> SSHPublicKey:
        return self._public

    def sign(self, data: bytes, *, namespace: str) -> bytes:
        if not namespace:
            raise UsageError("an SSH signature needs a non-empty namespace")
        hash_algorithm = "sha512"
        signed = _signed_data(namespace, hash_algorithm, data)
        if isinstance(self._private, Ed25519PrivateKey):
            algorithm, raw = _ED25519, self._private.sign(signed)
        else:
            algorithm = "rsa-sha2-512"
            raw = self._private.sign(signed, padding.PKCS1v15(), hashes.SHA512())
        blob = b"".join((
            _MAGIC, struct.pack(">I", _VERSION), _string(self._public.blob),
            _string(namespace.encode("utf-8")), _string(b""),
            _string(hash_algorithm.encode("ascii")),
            _string(_string(algorithm.encode("ascii")) + _string(raw)),
        ))
        return _armour(blob)
