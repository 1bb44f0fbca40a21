"""Rules about commits: descent, one root, the trust root, signatures, authorisation.

Authorisation is by position in history: a commit is judged under the policy
at its first parent, never by its committer date (the signer's to choose).
"""

from __future__ import annotations

from datetime import datetime

from gitreg.errors import PolicyViolationError
from gitreg.model.policy import Policy, fingerprint
from gitreg.signing.interface import NAMESPACE_GIT
from gitreg.verify import layout
from gitreg.verify.cache import VerificationCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.signatures import check_signature
from gitreg.verify.source import CommitFacts


def _date(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}" if moment is not None else "never"


def check_descent(*, descends: bool, trusted: str, head: str) -> None:
    """``head`` must descend from the trusted commit: no rewrite, no rollback."""
    if not descends:
        raise PolicyViolationError(
            f"does not descend from the trusted commit {trusted[:12]} "
            "(history rewrite or rollback)", rule="descent", commit=head)


def check_one_root(facts: CommitFacts, *, trusted: str | None, roots_seen: int) -> None:
    """A range holds at most one root commit, and none above a trusted commit."""
    if not facts.parents and (trusted is not None or roots_seen > 1):
        raise PolicyViolationError("a second root commit (unrelated history) is not allowed",
                                   rule="unrelated-history", commit=facts.oid)


def check_trust_root(policy_bytes: bytes, *, pinned: str | None, commit: str) -> None:
    """The root commit's policy is the one the verifier was told to trust."""
    found = fingerprint(policy_bytes)
    if pinned is not None and found != pinned:
        raise PolicyViolationError(
            f"the initial policy has fingerprint {found}, not the pinned {pinned}",
            rule="trust-root", commit=commit, path=layout.POLICY_FILE)


def commit_signer(facts: CommitFacts, policy: Policy, *, cache: VerificationCache,
                  context: VerifyContext) -> str:
    """The policy key that signed the commit (any key of the policy in effect)."""
    if facts.signature is None:
        raise PolicyViolationError("commit is not signed", rule="commit-signature",
                                   commit=facts.oid)
    payload = facts.signed_payload
    return check_signature(
        policy, allowed=list(policy.keys), data_id=facts.oid, data=lambda: payload,
        signature_id=f"commit:{facts.oid}", signature=facts.signature,
        namespace=NAMESPACE_GIT, cache=cache, at=context.at, rule="commit-signature",
        commit=facts.oid, path=None, what="commit")


def check_path_authorisation(policy: Policy, *, signer: str, path: str, commit: str) -> str:
    """The endorser owning ``signer`` may change ``path``; return that endorser."""
    endorser = policy.endorser_of_key(signer)
    if endorser is None or endorser not in policy.endorsers_for_path(path):
        who = f"endorser {endorser}" if endorser else "a key of no endorser"
        raise PolicyViolationError(
            f"commit signed by {signer} ({who}), who may not change this path",
            rule="path-authorisation", commit=commit, path=path)
    return endorser


def check_endorser_expiry(policy: Policy, endorser: str, *, context: VerifyContext,
                          commit: str, path: str) -> None:
    """At push time an expired endorser changes nothing (elsewhere: the list is inert)."""
    if not context.refuses_expired_at_commit or policy.is_endorser_active(endorser,
                                                                          context.at):
        return
    raise PolicyViolationError(
        f"endorser {endorser} expired at {_date(policy.endorsers[endorser].expires)} "
        f"(reference time {_date(context.at)})", rule="endorser-expired", commit=commit,
        path=path)
