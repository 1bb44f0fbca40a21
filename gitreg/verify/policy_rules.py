"""Rules about the policy: its registry, thresholds, transitions and expiry.

A new ``policy.json`` is signed by a threshold of the root keys of the old
policy (so a thief of fewer keys cannot replace the roots) and of the new
one (so the new roots accept their role); its version is exactly +1. A key
counts once however many signatures it made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gitreg.errors import ExpiredError, GitregError, PolicyViolationError
from gitreg.model.policy import POLICY_FILE, Policy, PolicyEnvelope
from gitreg.model.registry_info import RegistryInfo
from gitreg.signing.interface import NAMESPACE_POLICY
from gitreg.verify.context import VerifyContext


@dataclass(frozen=True)
class ThresholdResult:
    """How many of the required keys validly signed, and who is missing."""

    signed_by: tuple[str, ...]
    missing: tuple[str, ...]
    # "<key id>: <reason>" for each signature that failed to verify.
    invalid: tuple[str, ...]
    threshold: int
    enough: bool
    listed: int = 0
    # Signatures by keys that do not count here (not root keys of the policy).
    ignored: tuple[str, ...] = ()
    role: str = "root keys"
    # key id -> endorser name, only to make messages readable.
    names: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def _label(self, key_id: str) -> str:
        name = dict(self.names).get(key_id)
        return f"{key_id} ({name})" if name else key_id

    def shortfall(self) -> str:
        """How many more signatures are needed, and which keys could give them."""
        need = self.threshold - len(self.signed_by)
        noun = "signature" if need == 1 else "signatures"
        keys = ", ".join(self._label(k) for k in self.missing)
        if need > len(self.missing):
            verb = "has" if len(self.missing) == 1 else "have"
            left = f"only {len(self.missing)} of the {self.role} {verb} not signed"
            return (f"needs {need} more {noun}, but {left}{': ' + keys if keys else ''} "
                    "(the threshold cannot be met)")
        if need == len(self.missing):
            return f"needs {need} more {noun}, by {keys}"
        return f"needs {need} more {noun}, by any {need} of: {keys}"

    def describe(self) -> str:
        text = (f"signed by {len(self.signed_by)} of {self.threshold} {self.role} required "
                f"({self.listed} listed)")
        if not self.enough:
            text += f"; {self.shortfall()}"
        if self.invalid:
            text += f"; invalid: {'; '.join(self.invalid)}"
        if self.ignored:
            text += f"; not counted (not {self.role}): {', '.join(self.ignored)}"
        return text


def check_root_signatures(envelope: PolicyEnvelope, under: Policy, *,
                          at: datetime) -> ThresholdResult:
    """Verify ``envelope``'s signatures against the root keys of ``under``, at ``at``.

    Each root key counts once however many signatures it made; signatures by
    other keys do not count; an invalid signature is reported, not fatal.
    """
    data = envelope.signed_bytes()
    roots = under.root_keys
    signed_by: list[str] = []
    invalid: list[str] = []
    ignored: list[str] = []
    for signature in envelope.signatures:
        keyid = signature.keyid
        if keyid not in roots:
            if keyid not in ignored:
                ignored.append(keyid)
            continue
        if keyid in signed_by:
            continue
        try:
            verified = under.public_key(keyid).verify(
                data, signature.sig.encode("utf-8"), namespace=NAMESPACE_POLICY, at=at)
        except GitregError as exc:
            invalid.append(f"{keyid}: {exc.message}")
            continue
        if verified.key_id != keyid:
            invalid.append(f"{keyid}: signature was made by {verified.key_id}")
            continue
        signed_by.append(keyid)
    names = tuple((k, n) for k in roots if (n := under.endorser_of_key(k)) is not None)
    return ThresholdResult(
        signed_by=tuple(signed_by),
        missing=tuple(k for k in roots if k not in signed_by),
        invalid=tuple(invalid),
        threshold=under.threshold,
        enough=len(signed_by) >= under.threshold,
        listed=len(roots),
        ignored=tuple(ignored),
        names=names,
    )


def verify_policy_transition(old: PolicyEnvelope | None, new: PolicyEnvelope, *,
                             at: datetime, commit: str | None = None) -> None:
    """Check that ``new`` may replace ``old`` (None: ``new`` is the first policy).

    Same registry, version exactly +1, and signed by a threshold of the OLD
    root keys (so a thief of fewer keys cannot replace the roots) and of the
    NEW ones (so the new roots accept their role). Expiry is separate:
    ``Policy.check_expiry``.
    """
    if old is not None:
        if new.signed.registry != old.signed.registry:
            raise PolicyViolationError(
                f"policy names registry {new.signed.registry}, but the registry is "
                f"{old.signed.registry}", rule="policy-registry", commit=commit,
                path=POLICY_FILE)
        if new.version != old.version + 1:
            raise PolicyViolationError(
                f"policy version {new.version} does not follow version {old.version} "
                f"(must be exactly {old.version + 1})", rule="policy-version",
                commit=commit, path=POLICY_FILE)
    quorums = [(new.signed, "its own", "policy-threshold-new")]
    if old is not None:
        quorums.insert(0, (old.signed, "the previous", "policy-threshold-old"))
    for roots, whose, rule in quorums:
        result = check_root_signatures(new, roots, at=at)
        if not result.enough:
            raise PolicyViolationError(
                f"policy version {new.version} lacks the threshold of {whose} root keys: "
                f"{result.describe()}", rule=rule, commit=commit, path=POLICY_FILE)


def check_policy_registry(policy: Policy, info: RegistryInfo, *, commit: str) -> None:
    """The policy names the registry of ``gitreg.json`` (``policy-registry``)."""
    if policy.registry != info.registry_id:
        raise PolicyViolationError(f"policy is for registry {policy.registry}, "
                                   f"this is {info.registry_id}", rule="policy-registry",
                                   commit=commit, path=POLICY_FILE)


def check_policy_expiry(policy: Policy, *, context: VerifyContext, commit: str) -> None:
    """At push time nobody acts under an expired policy but to renew it.

    Elsewhere ``gitreg.verify.state`` judges the expiry on the state.
    """
    if not context.refuses_expired_at_commit:
        return
    try:
        policy.check_expiry(context.at)
    except ExpiredError as exc:
        raise PolicyViolationError(exc.message, rule="policy-expired", commit=commit,
                                   path=POLICY_FILE, hint=exc.hint) from exc
