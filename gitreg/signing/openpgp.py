"""OpenPGP detached signatures, checked by gpg (python-gnupg) against policy keys.

gpg says a signature is valid for any key it holds, trusted or not, so what
counts here is the allow-list: a signature is accepted only when gpg finds it
valid AND its primary-key fingerprint is the one expected. Policy keys are
imported into a keyring of our own (one temporary GNUPGHOME per process),
never the user's. The few packet fields needed to pick a key (issuer,
fingerprints) are parsed in-process; gpg stays the one that checks crypto.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from gitreg.errors import (
    GitregError,
    InvalidKeyError,
    SignatureError,
    UntrustedSignerError,
    UsageError,
)
from gitreg.signing.interface import PublicKey, Signer, VerifiedSignature

_SIGNATURE_LABEL = "PGP SIGNATURE"
_PUBLIC_KEY_LABEL = "PGP PUBLIC KEY BLOCK"
_MAX_SIGNATURE_BYTES = 64 * 1024
_MAX_KEY_BYTES = 1024 * 1024
_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_HEX = frozenset("0123456789ABCDEF")

_TAG_SIGNATURE = 2
_TAG_SECRET_KEY = 5
_TAG_PUBLIC_KEY = 6
_TAG_SECRET_SUBKEY = 7
_TAG_PUBLIC_SUBKEY = 14
_SUBPACKET_ISSUER_KEY_ID = 16
_SUBPACKET_ISSUER_FINGERPRINT = 33
_SIGNATURE_TYPE_BINARY = 0x00
# MD5, SHA-1 and RIPEMD-160 have (or are near) practical collisions; an
# imagelist signature must not rest on them.
_ACCEPTED_HASHES = {8: "SHA256", 9: "SHA384", 10: "SHA512", 11: "SHA224"}

# gpg must never fetch keys on its own: a key that is not in the policy does not count.
# Checking needs no gpg-agent or dirmngr, so none is started for it.
_GPG_VERIFY_ARGS = ["--no-auto-key-retrieve", "--no-autostart"]


def normalise_fingerprint(fingerprint: str) -> str:
    """``fingerprint`` as 40 upper-case hex digits (spaces and ``0x`` dropped)."""
    cleaned = fingerprint.replace(" ", "").upper().removeprefix("0X")
    if len(cleaned) != 40 or not _HEX.issuperset(cleaned):
        raise InvalidKeyError(f"{fingerprint!r} is not an OpenPGP v4 fingerprint "
                              "(40 hex digits)")
    return cleaned


# --- minimal in-process packet parsing -------------------------------------------


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _dearmor(text: str, label: str, what: str,
             error: type[GitregError]) -> bytes:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    if not lines or lines[0] != f"-----BEGIN {label}-----":
        raise error(f"{what}: missing '-----BEGIN {label}-----' line")
    if len(lines) < 2 or lines[-1] != f"-----END {label}-----":
        raise error(f"{what}: missing '-----END {label}-----' line (truncated?)")
    inner = lines[1:-1]
    if "" in inner:
        blank = inner.index("")
        if not all(": " in header for header in inner[:blank]):
            raise error(f"{what}: malformed armour header")
        inner = inner[blank + 1:]
    checksum = None
    if inner and inner[-1].startswith("=") and len(inner[-1]) == 5:
        checksum = inner.pop()[1:]
    body = "".join(inner)
    if not body or not _BASE64_CHARS.issuperset(body):
        raise error(f"{what}: armour body is not base64")
    try:
        data = base64.b64decode(body, validate=True)
        if checksum is not None and base64.b64decode(checksum, validate=True) != \
                _crc24(data).to_bytes(3, "big"):
            raise error(f"{what}: armour checksum does not match (altered or truncated)")
    except binascii.Error as exc:
        raise error(f"{what}: armour body is not base64: {exc}") from exc
    return data


def _packets(data: bytes, what: str, error: type[GitregError]) -> list[tuple[int, bytes]]:
    """Split OpenPGP packets (RFC 4880 4.2), refusing streamed (partial) lengths."""
    packets = []
    pos = 0
    while pos < len(data):
        head = data[pos]
        pos += 1
        if not head & 0x80:
            raise error(f"{what}: not an OpenPGP packet")
        if head & 0x40:
            tag = head & 0x3F
            first = data[pos] if pos < len(data) else 0
            if first < 192:
                size, pos = first, pos + 1
            elif first < 224:
                size = ((first - 192) << 8) + (data[pos + 1] if pos + 1 < len(data) else 0) + 192
                pos += 2
            elif first == 255:
                size, pos = int.from_bytes(data[pos + 1:pos + 5], "big"), pos + 5
            else:
                raise error(f"{what}: streamed (partial-length) packets are not accepted")
        else:
            tag = (head >> 2) & 0x0F
            width = (1, 2, 4, 0)[head & 0x03]
            if not width:
                raise error(f"{what}: packets of indeterminate length are not accepted")
            size, pos = int.from_bytes(data[pos:pos + width], "big"), pos + width
        if pos + size > len(data):
            raise error(f"{what}: truncated packet")
        packets.append((tag, data[pos:pos + size]))
        pos += size
    if not packets:
        raise error(f"{what}: no OpenPGP packets")
    return packets


def _key_fingerprint(body: bytes, what: str) -> str:
    if not body or body[0] != 4:
        version = body[0] if body else None
        raise InvalidKeyError(f"{what}: OpenPGP key version {version} is not supported "
                              "(only v4)")
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body,
                        usedforsecurity=False).hexdigest().upper()


def _key_block_fingerprints(armored: str, what: str) -> tuple[str, tuple[str, ...]]:
    """The primary and subkey fingerprints of one armoured public key."""
    if len(armored) > _MAX_KEY_BYTES:
        raise InvalidKeyError(f"{what}: armoured key is larger than {_MAX_KEY_BYTES} bytes")
    packets = _packets(_dearmor(armored, _PUBLIC_KEY_LABEL, what, InvalidKeyError), what,
                       InvalidKeyError)
    tags = [tag for tag, _ in packets]
    if _TAG_SECRET_KEY in tags or _TAG_SECRET_SUBKEY in tags:
        raise InvalidKeyError(f"{what}: holds SECRET key material; give the public key only")
    if tags[0] != _TAG_PUBLIC_KEY or tags.count(_TAG_PUBLIC_KEY) != 1:
        raise InvalidKeyError(f"{what}: must hold exactly one public key "
                              f"(found {tags.count(_TAG_PUBLIC_KEY)})")
    primary = _key_fingerprint(packets[0][1], what)
    subkeys = tuple(_key_fingerprint(body, what)
                    for tag, body in packets if tag == _TAG_PUBLIC_SUBKEY)
    return primary, subkeys


@dataclass(frozen=True)
class OpenPGPSignatureInfo:
    """What an OpenPGP signature packet says before any crypto check."""

    signature_type: int
    hash_algorithm: int
    issuer: str | None  # 40-hex fingerprint (subpacket 33) or 16-hex key id (16)
    packet: bytes  # the whole binary signature packet, as gpg is given it


def _subpackets(area: bytes) -> list[tuple[int, bytes]]:
    found = []
    pos = 0
    while pos < len(area):
        first = area[pos]
        if first < 192:
            size, pos = first, pos + 1
        elif first < 255:
            if pos + 1 >= len(area):
                raise SignatureError("OpenPGP signature: truncated subpacket")
            size, pos = ((first - 192) << 8) + area[pos + 1] + 192, pos + 2
        else:
            size, pos = int.from_bytes(area[pos + 1:pos + 5], "big"), pos + 5
        if size == 0 or pos + size > len(area):
            raise SignatureError("OpenPGP signature: malformed subpacket")
        found.append((area[pos] & 0x7F, area[pos + 1:pos + size]))
        pos += size
    return found


def parse_signature(signature: bytes) -> OpenPGPSignatureInfo:
    """Parse an armoured detached signature: exactly one v4 binary-document signature."""
    if len(signature) > _MAX_SIGNATURE_BYTES:
        raise SignatureError(f"OpenPGP signature is {len(signature)} bytes, more than the "
                             f"{_MAX_SIGNATURE_BYTES} any real one has")
    try:
        text = signature.decode("ascii")
    except UnicodeDecodeError as exc:
        raise SignatureError("OpenPGP signature armour is not ASCII") from exc
    what = "OpenPGP signature"
    binary = _dearmor(text, _SIGNATURE_LABEL, what, SignatureError)
    packets = _packets(binary, what, SignatureError)
    if len(packets) != 1 or packets[0][0] != _TAG_SIGNATURE:
        raise SignatureError(f"{what}: must be exactly one signature packet "
                             f"(found packet tags {[tag for tag, _ in packets]})")
    body = packets[0][1]
    if len(body) < 6 or body[0] != 4:
        raise SignatureError(f"{what}: version {body[0] if body else None} is not supported "
                             "(only v4)")
    signature_type, hash_algorithm = body[1], body[3]
    if signature_type != _SIGNATURE_TYPE_BINARY:
        # Text-mode (0x01) signatures ignore line-end changes: not "exactly these bytes".
        raise SignatureError(f"{what}: type 0x{signature_type:02x} is not a binary-document "
                             "signature")
    if hash_algorithm not in _ACCEPTED_HASHES:
        raise SignatureError(f"{what}: hash algorithm {hash_algorithm} is not accepted "
                             f"(only {', '.join(_ACCEPTED_HASHES.values())})")
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    unhashed_end = hashed_end + 2 + int.from_bytes(body[hashed_end:hashed_end + 2], "big")
    if unhashed_end + 2 >= len(body):
        raise SignatureError(f"{what}: truncated signature packet")
    hashed = _subpackets(body[6:hashed_end])
    unhashed = _subpackets(body[hashed_end + 2:unhashed_end])
    issuer = None
    for kind, value in (*hashed, *unhashed):
        if kind == _SUBPACKET_ISSUER_FINGERPRINT and len(value) == 21 and value[0] == 4:
            issuer = value[1:].hex().upper()
            break
    else:
        for kind, value in (*hashed, *unhashed):
            if kind == _SUBPACKET_ISSUER_KEY_ID and len(value) == 8:
                issuer = value.hex().upper()
                break
    # Rebuild the packet with a canonical header: gpg checks exactly what we parsed.
    packet = bytes([0xC0 | _TAG_SIGNATURE, 0xFF]) + len(body).to_bytes(4, "big") + body
    return OpenPGPSignatureInfo(signature_type, hash_algorithm, issuer, packet)


def signature_issuer(signature: bytes) -> str | None:
    """The issuer of a detached signature: a 40-hex fingerprint, a 16-hex key id, or None.

    The issuer may be a signing subkey; ``OpenPGPPublicKey.matches_issuer`` knows.
    """
    return parse_signature(signature).issuer


# --- gpg ------------------------------------------------------------------------


def _new_gpg(gnupghome: str | None, options: list[str] | None = None) -> Any:
    # Imported here: python-gnupg costs every start of gitreg, gpg or not.
    import gnupg

    try:
        return gnupg.GPG(gnupghome=gnupghome, options=options)
    except (OSError, ValueError) as exc:
        raise GitregError(f"cannot run gpg (GNUPGHOME {gnupghome or 'default'}): {exc}",
                          hint="install GnuPG 2.2 or later") from exc


@lru_cache(maxsize=16)
def _user_gpg(gnupghome: str | None) -> Any:
    """gpg over a caller's keyring (``None``: $GNUPGHOME at each call)."""
    return _new_gpg(gnupghome)


class _PolicyKeyring:
    """A temporary GNUPGHOME of this process, holding only policy keys."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gpg: Any = None
        self._home: str | None = None
        self._owner = 0
        self._imported: set[bytes] = set()
        self._expiring: dict[str, bool] = {}

    def gpg_with(self, key: OpenPGPPublicKey) -> Any:
        with self._lock:
            if self._gpg is None or self._owner != os.getpid():
                self._home = tempfile.mkdtemp(prefix="gitreg-gnupg-")
                self._owner = os.getpid()
                self._imported.clear()
                # Only public keys live here: no agent is ever needed.
                self._gpg = _new_gpg(self._home, ["--no-autostart"])
                atexit.register(self._remove, self._home, self._owner)
            # Import each distinct armour once: a policy change may add subkeys.
            digest = hashlib.sha256(key.armored.encode("ascii")).digest()
            if digest not in self._imported:
                result = self._gpg.import_keys(key.armored.encode("ascii"))
                if key.fingerprint not in {f.upper() for f in result.fingerprints}:
                    raise InvalidKeyError(f"gpg refused to import OpenPGP key "
                                          f"{key.fingerprint}: {result.summary()}")
                self._imported.add(digest)
                self._expiring[key.fingerprint] = _has_expiry(self._gpg, key.fingerprint)
            return self._gpg

    def expires(self, key: OpenPGPPublicKey) -> bool:
        """Whether ``key`` or one of its subkeys has an expiry date."""
        self.gpg_with(key)
        with self._lock:
            return self._expiring.get(key.fingerprint, True)

    @staticmethod
    def _remove(home: str, owner: int) -> None:
        if os.getpid() == owner:
            shutil.rmtree(home, ignore_errors=True)


def _has_expiry(gpg: Any, fingerprint: str) -> bool:
    listing = gpg.list_keys(keys=[fingerprint])
    if len(listing) != 1:
        return True  # unknown: judge again each time rather than cache
    entry = listing[0]
    subkeys = entry.get("subkey_info", {}).values()
    return bool(entry.get("expires")) or any(s.get("expires") for s in subkeys)


_POLICY_KEYRING = _PolicyKeyring()


@dataclass(frozen=True)
class _GoodSignature:
    primary: str
    signing_key: str
    user: str


def _gpg_verify(gpg: Any, data: bytes, info: OpenPGPSignatureInfo,
                expected: str, at: datetime | None = None) -> _GoodSignature:
    """Have gpg check the one signature packet over exactly ``data``, judging key
    expiry at ``at`` (gpg's clock frozen there) when given."""
    args = list(_GPG_VERIFY_ARGS)
    if at is not None:
        # A signature dated after ``at`` stays a warning: signer clocks drift,
        # and a signer's dates are theirs to choose anyway.
        args += ["--ignore-time-conflict", "--faked-system-time", f"{int(at.timestamp())}!"]
    with tempfile.TemporaryDirectory(prefix="gitreg-sig-") as scratch:
        sig_path = Path(scratch) / "signature.gpg"
        sig_path.write_bytes(info.packet)
        # bytes, never str: python-gnupg would encode a str as latin-1.
        result = gpg.verify_data(str(sig_path), bytes(data), extra_args=args)
    issuer = info.issuer or "an unknown key"
    if not result.valid:
        status = result.key_status or result.status or "no verdict from gpg"
        if status == "no public key":
            raise SignatureError(f"OpenPGP signature was made by {issuer}, not by {expected}")
        if status == "signature bad":
            raise SignatureError(f"OpenPGP signature by {issuer} does not match the data "
                                 f"(the data or the signature was altered); expected {expected}")
        raise SignatureError(f"OpenPGP signature by {issuer} is not valid ({status}); "
                             f"expected {expected}")
    signing_key = str(result.fingerprint or "").upper()
    primary = str(result.pubkey_fingerprint or signing_key).upper()
    if not primary:
        raise SignatureError(f"gpg reported no fingerprint for the signature by {issuer}")
    return _GoodSignature(primary, signing_key, str(result.username or ""))


# --- keys -------------------------------------------------------------------------


class OpenPGPPublicKey(PublicKey):
    """One OpenPGP public key as the policy lists it: fingerprint and armoured key."""

    scheme = "openpgp"

    def __init__(self, fingerprint: str, armored: str) -> None:
        expected = normalise_fingerprint(fingerprint)
        primary, subkeys = _key_block_fingerprints(armored, f"OpenPGP key {expected}")
        if primary != expected:
            if expected in subkeys:
                raise InvalidKeyError(f"{expected} is a subkey of OpenPGP key {primary}; "
                                      "name the primary key")
            raise InvalidKeyError(f"armoured OpenPGP key has fingerprint {primary}, "
                                  f"not {expected}")
        self._fingerprint = primary
        self._subkeys = subkeys
        self._armored = armored

    @classmethod
    def from_armored(cls, armored: str) -> OpenPGPPublicKey:
        """The key of an armoured public key block, whatever its fingerprint."""
        primary, _ = _key_block_fingerprints(armored, "armoured OpenPGP key")
        return cls(primary, armored)

    @classmethod
    def from_gnupghome(cls, fingerprint: str, gnupghome: str | None = None) -> OpenPGPPublicKey:
        """Export the public key ``fingerprint`` from a keyring (default $GNUPGHOME)."""
        wanted = normalise_fingerprint(fingerprint)
        armored = _user_gpg(gnupghome).export_keys(wanted, minimal=True)
        if not isinstance(armored, str) or not armored.strip():
            home = gnupghome or os.environ.get("GNUPGHOME", "~/.gnupg")
            raise UsageError(f"no OpenPGP public key {wanted} in keyring {home}")
        return cls(wanted, armored)

    @classmethod
    def from_policy(cls, entry: Mapping[str, Any]) -> OpenPGPPublicKey:
        """The key of a policy entry; the armour must really be that fingerprint's key."""
        if entry.get("scheme") != cls.scheme:
            raise InvalidKeyError(f"policy key has scheme {entry.get('scheme')!r}, "
                                  "not 'openpgp'")
        fingerprint, armored = entry.get("fingerprint"), entry.get("public_key")
        if not isinstance(fingerprint, str) or not isinstance(armored, str):
            raise InvalidKeyError("OpenPGP policy key needs 'fingerprint' and 'public_key' "
                                  "strings")
        return cls(fingerprint, armored)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def subkey_fingerprints(self) -> tuple[str, ...]:
        return self._subkeys

    @property
    def armored(self) -> str:
        return self._armored

    @property
    def key_id(self) -> str:
        return self._fingerprint

    def matches_issuer(self, issuer: str) -> bool:
        """Whether a signature's issuer (fingerprint or 16-hex key id) is this key or
        one of its subkeys."""
        issuer = issuer.upper()
        return any(fpr == issuer or (len(issuer) == 16 and fpr.endswith(issuer))
                   for fpr in (self._fingerprint, *self._subkeys))

    def matches_named(self, named: str) -> bool:
        return self.matches_issuer(named)

    @property
    def timeless(self) -> bool:
        return not _POLICY_KEYRING.expires(self)

    def to_policy(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "fingerprint": self._fingerprint,
                "public_key": self._armored}

    def verify(self, data: bytes, signature: bytes, *, namespace: str,
               at: datetime) -> VerifiedSignature:
        # OpenPGP has no namespaces; callers keep list and policy signatures apart by path.
        # The key's own expiry and its subkeys' are judged at ``at``, like X.509 validity.
        info = parse_signature(signature)
        good = _gpg_verify(_POLICY_KEYRING.gpg_with(self), data, info, self._fingerprint, at)
        if good.primary != self._fingerprint:
            raise SignatureError(f"OpenPGP signature was made by {good.primary}, not by "
                                 f"{self._fingerprint}")
        return VerifiedSignature("openpgp", self._fingerprint,
                                 f"{good.user} (signing key {good.signing_key})".strip())

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, OpenPGPPublicKey)
                and other._fingerprint == self._fingerprint and other._armored == self._armored)

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __repr__(self) -> str:
        return f"OpenPGPPublicKey({self._fingerprint})"


def verify_with_allowlist(data: bytes, signature: bytes, allowed_fingerprints: Collection[str],
                          gnupghome: str | None) -> VerifiedSignature:
    """Verify against a caller's keyring, counting only the allowed primary keys."""
    allowed = {normalise_fingerprint(f) for f in allowed_fingerprints}
    expected = " or ".join(sorted(allowed)) or "no allowed key"
    good = _gpg_verify(_user_gpg(gnupghome), data, parse_signature(signature), expected)
    if good.primary not in allowed:
        raise UntrustedSignerError(f"OpenPGP signature by {good.primary} {good.user} is valid "
                                   f"but that key is not allowed (expected {expected})")
    return VerifiedSignature("openpgp", good.primary,
                             f"{good.user} (signing key {good.signing_key})".strip())


class OpenPGPSigner(Signer):
    """Signs with a key of a gpg keyring (default $GNUPGHOME); gpg-agent asks for
    passphrases."""

    scheme = "openpgp"

    def __init__(self, fingerprint: str, gnupghome: str | None = None) -> None:
        wanted = normalise_fingerprint(fingerprint)
        self._gnupghome = gnupghome
        gpg = _user_gpg(gnupghome)
        secret = gpg.list_keys(secret=True, keys=[wanted])
        if not secret:
            home = gnupghome or os.environ.get("GNUPGHOME", "~/.gnupg")
            raise UsageError(f"no OpenPGP secret key {wanted} in keyring {home}")
        primary = str(secret[0]["fingerprint"]).upper()
        if primary != wanted:
            raise UsageError(f"{wanted} is a subkey of OpenPGP key {primary}; name the "
                             "primary key")
        self._fingerprint = primary
        self._public: OpenPGPPublicKey | None = None

    @property
    def key_id(self) -> str:
        return self._fingerprint

    def public_key(self) -> OpenPGPPublicKey:
        if self._public is None:
            self._public = OpenPGPPublicKey.from_gnupghome(self._fingerprint, self._gnupghome)
        return self._public

    def sign(self, data: bytes, *, namespace: str) -> bytes:
        # --local-user, not --default-key: gpg silently falls back to another key for
        # an unusable default key. --no-textmode: sign exactly the bytes.
        result = _user_gpg(self._gnupghome).sign(
            bytes(data), detach=True,
            extra_args=["--local-user", self._fingerprint, "--digest-algo", "SHA512",
                        "--no-textmode"],
        )
        signature = bytes(result.data or b"")
        if not result or not signature:
            raise GitregError(f"gpg could not sign with OpenPGP key {self._fingerprint}: "
                              f"{result.status or 'no signature'}",
                              hint=(result.stderr or "").strip()[-500:] or None)
        # Check what gpg produced: the right key, over exactly these bytes.
        good = _gpg_verify(_user_gpg(self._gnupghome), data, parse_signature(signature),
                           self._fingerprint)
        if good.primary != self._fingerprint:
            raise GitregError(f"gpg signed with {good.primary}, not with {self._fingerprint}")
        return signature
