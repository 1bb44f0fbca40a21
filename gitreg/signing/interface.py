"""The one small interface every signature scheme implements.

Verification needs only key material (from the policy, or a CA directory);
signing needs a ``Signer`` (a private key file, a gpg key, a certificate and
key). Schemes are told apart by the armour of the signature, never by a flag.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

Scheme = Literal["ssh", "openpgp", "x509"]

# SSHSIG namespaces: imagelists get their own, so a commit signature can never
# be replayed as a list signature and vice versa. "git" is git's own choice.
NAMESPACE_IMAGELIST = "gitreg-imagelist"
NAMESPACE_POLICY = "gitreg-policy"
# A site's statement about an image (attestations/<site>/<uuid>.json).
NAMESPACE_ATTESTATION = "gitreg-attestation"
NAMESPACE_GIT = "git"
# Heartbeats (gitreg.verify.heartbeat): a freshness statement is never a policy or a list.
NAMESPACE_HEARTBEAT = "gitreg-heartbeat"



@dataclass(frozen=True)
class VerifiedSignature:
    """What a valid signature proves: which key (as the policy names it) signed."""

    scheme: Scheme
    # ssh: "SHA256:<base64>" fingerprint as ssh-keygen prints it;
    # openpgp: the 40-hex-digit upper-case primary key fingerprint;
    # x509: the signer subject DN in OpenSSL slash form.
    key_id: str
    # Human-readable, for messages (key type, signer and issuer DN, ...).
    detail: str = ""


class PublicKey(ABC):
    """Verification side of one key."""

    scheme: ClassVar[Scheme]

    @property
    @abstractmethod
    def key_id(self) -> str:
        """The id that ``VerifiedSignature.key_id`` carries for this key."""

    @abstractmethod
    def verify(self, data: bytes, signature: bytes, *, namespace: str,
               at: datetime) -> VerifiedSignature:
        """Verify a detached ``signature`` of exactly ``data``, judged at time ``at``.

        Raises ``SignatureError`` (or a subclass) when the signature is
        malformed, does not match, or was not made by this key. ``namespace``
        is checked by schemes that have one (SSHSIG) and ignored by others.
        ``at`` is the caller's reference time: X.509 judges certificate
        validity and CRLs at it; SSH keys carry no validity period. The
        signing modules never read the clock themselves.
        """

    @abstractmethod
    def to_policy(self) -> dict[str, Any]:
        """JSON-able key material for ``policy.json`` (includes ``"scheme"``)."""

    @property
    def timeless(self) -> bool:
        """Whether a verdict of this key holds at every reference time, so the
        verdict cache may keep it. False for keys with a validity period."""
        return True

    def matches_named(self, named: str) -> bool:
        """Whether a signature naming its signer ``named`` (``schemes.named_signer``)
        names this key. OpenPGP overrides it: a signature may name a subkey."""
        return named == self.key_id


class Signer(ABC):
    """Signing side of one key."""

    scheme: ClassVar[Scheme]

    @property
    @abstractmethod
    def key_id(self) -> str:
        """Same id as the matching ``PublicKey.key_id``."""

    @abstractmethod
    def sign(self, data: bytes, *, namespace: str) -> bytes:
        """An armoured detached signature of exactly ``data``."""

    @abstractmethod
    def public_key(self) -> PublicKey:
        """The verification side of this key."""


def detect_scheme(signature: bytes) -> Scheme:
    """Tell the scheme of a detached signature by its armour (``schemes.detect_scheme``)."""
    from gitreg.signing.schemes import detect_scheme as detect

    return detect(signature)
