"""Checking a signature against the keys a policy allows, with the cache.

The signer is found by the key id embedded in the signature where the scheme
carries one (SSH, OpenPGP), so one verification suffices; X.509 identities
are tried in turn. A valid signature by a key the policy does not allow here
is reported with the endorser it belongs to, so the message says who tried.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from gitreg.errors import InvalidKeyError, PolicyViolationError, SignatureError
from gitreg.model.policy import Policy
from gitreg.signing import schemes
from gitreg.verify.cache import VerificationCache


def key_digest(policy: Policy, key_id: str) -> str:
    """A digest of a key's material: the cache key for 'verified with this key'."""
    return policy.key_digest(key_id)


def named_signer(policy: Policy, signature: bytes) -> tuple[str | None, str | None]:
    """The policy key a signature names as its signer, and the id it names.

    SSH signatures carry their public key, OpenPGP ones their issuer (maybe a
    signing subkey); X.509 ones name nobody cheaply: ``(None, None)``.
    Raises ``SignatureError`` for a malformed signature.
    """
    scheme, named = schemes.named_signer(signature)
    if named is None:
        return None, None
    entry = policy.keys.get(named)
    if entry is not None and entry.get("scheme") == scheme:
        return named, named
    for key_id, entry in policy.keys.items():
        if entry.get("scheme") != scheme:
            continue
        try:
            key = policy.public_key(key_id)
        except InvalidKeyError:
            continue  # broken material names nobody; check_signature reports it
        if key.matches_named(named):
            return key_id, named
    return None, named


def check_signature(
    policy: Policy,
    *,
    allowed: Collection[str],
    data_id: str,
    data: Callable[[], bytes],
    signature_id: str,
    signature: bytes | Callable[[], bytes],
    namespace: str,
    at: datetime,
    cache: VerificationCache,
    rule: str,
    commit: str,
    path: str | None,
    what: str,
) -> str:
    """Return the id of the allowed policy key that made ``signature`` over ``data``.

    ``data`` is a thunk, and ``signature`` may be one: the bytes are loaded
    only if the cache does not know the answer. ``at`` is the time
    certificate validity (X.509) is judged at.
    Raises ``PolicyViolationError`` naming ``rule`` otherwise.
    """
    # A verdict cached for an allowed key's material needs no parse: that
    # material verified this signature, so its key is the signer.
    for key_id in allowed:
        if key_id in policy.keys and cache.signature_ok(data_id, signature_id,
                                                        key_digest(policy, key_id)):
            return key_id
    if callable(signature):
        signature = signature()
    try:
        embedded, named = named_signer(policy, signature)
    except SignatureError as exc:
        raise PolicyViolationError(f"{what}: {exc.message}", rule=rule, commit=commit,
                                   path=path) from exc
    if named is not None:
        if embedded is None or embedded not in allowed:
            endorser = policy.endorser_of_key(embedded) if embedded else None
            who = f"key {embedded or named}"
            if endorser:
                who += f" (endorser {endorser})"
            elif embedded is None:
                who += " (not in the policy)"
            raise PolicyViolationError(f"{what} is signed by {who}, which is not allowed here",
                                       rule=rule, commit=commit, path=path)
        candidates = [embedded]
    else:
        candidates = [k for k in allowed if k in policy.keys]
    errors: list[str] = []
    loaded: bytes | None = None
    for key_id in candidates:
        digest = key_digest(policy, key_id)
        if cache.signature_ok(data_id, signature_id, digest):
            return key_id
        if loaded is None:
            loaded = data()
        try:
            key = policy.public_key(key_id)
            key.verify(loaded, signature, namespace=namespace, at=at)
        # Key material is loaded (and checked against its id) only here: a
        # root-signed policy may list a broken key, which then verifies nothing.
        except (SignatureError, InvalidKeyError) as exc:
            errors.append(f"{key_id}: {exc.message}")
            continue
        # A verdict of a key with a validity period (an X.509 chain and its
        # CRLs, an expiring OpenPGP key) is judged again at every reference time.
        if key.timeless:
            cache.mark_signature_ok(data_id, signature_id, digest)
        return key_id
    reason = "; ".join(errors) if errors else "no key is allowed here"
    raise PolicyViolationError(f"{what} has no valid signature by an allowed key ({reason})",
                               rule=rule, commit=commit, path=path)
