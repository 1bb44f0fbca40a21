"""Rules about attestations: a site's signed statement about one image.

``attestations/<attester>/<image-uuid>.json`` (+ ``.sig``) is judged like a
list, under the policy at the commit's first parent:

- ``attestation-signer``: the commit and the statement are signed by a key of
  an attester (``signed.attesters``) that a rule allows for the path;
- ``attestation-path``: an attester writes only below its own name, and the
  statement names that attester;
- ``attestation-format``: the statement parses strictly (in-toto Statement
  v1, gitreg's test-result predicate) and names the image of its file name;
- ``attestation-subject``: the image exists in a list of the new tree, and
  the statement's SHA-512 is that image's ``sl:checksum:sha512``;
- ``attestation-time``: a statement replacing another is newer (one per
  image per attester: the newer replaces the older), and at push time it
  is not dated in the future.

Pure: bytes, facts and the ``VerifyContext`` in, a typed error out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from gitreg.errors import InvalidDocumentError, PolicyViolationError
from gitreg.model.attestation import Attestation, parse_attestation
from gitreg.model.policy import Policy
from gitreg.signing.interface import NAMESPACE_ATTESTATION
from gitreg.verify import layout
from gitreg.verify.cache import VerificationCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.facts import CREATED_SKEW
from gitreg.verify.signatures import check_signature
from gitreg.verify.source import Entry


def _date(moment: object) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _owner(path: str) -> tuple[str, str]:
    found = layout.attestation_of(path)
    assert found is not None, path  # the layout rule admitted only attestation paths
    return found


def check_authorisation(policy: Policy, *, signer: str, path: str, context: VerifyContext,
                        commit: str) -> str:
    """The commit's signer is an attester allowed for ``path``, below its own name."""
    owner, _ = _owner(path)
    attester = policy.attester_of_key(signer)
    if attester is None:
        endorser = policy.endorser_of_key(signer)
        who = f"endorser {endorser}" if endorser else "a key of no attester"
        raise PolicyViolationError(f"commit signed by {signer} ({who}), who may not attest",
                                   rule="attestation-signer", commit=commit, path=path)
    if attester != owner:
        raise PolicyViolationError(
            f"attester {attester} may write only below attestations/{attester}/, "
            f"not attester {owner}'s path", rule="attestation-path", commit=commit, path=path)
    if attester not in policy.attesters_for_path(path):
        raise PolicyViolationError(
            f"no rule of the policy allows attester {attester} to change this path",
            rule="attestation-signer", commit=commit, path=path,
            hint=f"`gitreg policy add-attester {attester}` adds the rule "
                 f"attestations/{attester}/*")
    if context.refuses_expired_at_commit and not policy.is_attester_active(attester,
                                                                           context.at):
        expired = policy.attesters[attester].expires
        raise PolicyViolationError(
            f"attester {attester} expired at {_date(expired)} (reference time "
            f"{_date(context.at)})", rule="attestation-signer", commit=commit, path=path)
    return attester


def allowed_keys(policy: Policy, path: str, context: VerifyContext) -> list[str]:
    """Keys whose signature may stand for the statement at ``path``: its own attester's."""
    owner, _ = _owner(path)
    if owner not in policy.attesters_for_path(path):
        return []
    if context.refuses_expired_at_commit and not policy.is_attester_active(owner, context.at):
        return []
    return list(policy.attester_keys(owner))


def check_pair(entry: Entry | None, sig_entry: Entry | None, *, path: str, sig_path: str,
               commit: str) -> tuple[Entry, Entry]:
    """A statement and its ``.sig`` are published together."""
    if entry is None or sig_entry is None:
        raise PolicyViolationError("a statement and its .sig are published together",
                                   rule="attestation-signer", commit=commit,
                                   path=path if entry is None else sig_path)
    return entry, sig_entry


def statement_signer(policy: Policy, allowed: Collection[str], *, blob: str, sig_blob: str,
                     data: Callable[[], bytes], signature: bytes, cache: VerificationCache,
                     at: datetime, commit: str, path: str) -> str:
    """The allowed key whose detached signature ``sig_blob`` covers statement ``blob``."""
    return check_signature(
        policy, allowed=allowed, data_id=blob, data=data, signature_id=sig_blob,
        signature=signature, namespace=NAMESPACE_ATTESTATION, cache=cache, at=at,
        rule="attestation-signer", commit=commit, path=path, what="the attestation")


def parse(data: bytes, *, commit: str, path: str, max_size: int) -> Attestation:
    """The statement at ``path``; one that does not parse is ``attestation-format``."""
    try:
        return parse_attestation(data, source=path, max_size=max_size)
    except InvalidDocumentError as exc:
        raise PolicyViolationError(exc.diagnostics(), rule="attestation-format",
                                   commit=commit, path=path) from exc


def image_digest(list_data: bytes, image: str, *, source: str, max_size: int) -> str | None:
    """The ``sl:checksum:sha512`` (lower-case) of ``image`` (a lower-case UUID) in a list's bytes.

    A list may write the UUID in either case.
    """
    from gitreg.model.imagelist import parse_imagelist

    for found in parse_imagelist(list_data, source=source, max_size=max_size).images:
        if found.identifier.lower() == image:
            return found.sha512.lower()
    return None


def check_statement(new: Attestation, old: Attestation | None, *, path: str,
                    digest: str | None, context: VerifyContext, commit: str) -> None:
    """What the statement says fits its path, its image, and the one it replaces.

    ``digest``: the SHA-512 of the image in the new tree's lists (None: no list
    of the registry carries that image UUID).
    """
    attester, image = _owner(path)
    if new.image != image:
        raise PolicyViolationError(f"the subject is image {new.image}, not the {image} of "
                                   "the file name", rule="attestation-format", commit=commit,
                                   path=path)
    if new.attester != attester:
        raise PolicyViolationError(f"predicate.attester {new.attester!r} is not {attester!r}, "
                                   "whose path it is in", rule="attestation-path",
                                   commit=commit, path=path)
    if digest is None:
        raise PolicyViolationError(f"image {image} is in no list of the registry",
                                   rule="attestation-subject", commit=commit, path=path)
    if new.sha512 != digest:
        raise PolicyViolationError(
            f"the subject's sha512 {new.sha512[:16]}... is not image {image}'s "
            f"sl:checksum:sha512 {digest[:16]}...", rule="attestation-subject",
            commit=commit, path=path)
    if old is not None and new.time <= old.time:
        raise PolicyViolationError(
            f"predicate.time {_date(new.time)} is not later than the statement it replaces "
            f"({_date(old.time)})", rule="attestation-time", commit=commit, path=path)
    if context.refuses_expired_at_commit and new.time > context.at + CREATED_SKEW:
        raise PolicyViolationError(f"predicate.time {_date(new.time)} is in the future",
                                   rule="attestation-time", commit=commit, path=path)
