"""Rules about imagelists: format, identity, version, limits, dates, signature, images.

Each changed list is judged under the policy at the commit's first parent;
the time-dependent rules (``list-expired``, ``list-dates``) refuse a commit
only at push time (elsewhere ``gitreg.verify.state`` and the site's planner
judge them on the state).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta

from gitreg.errors import InvalidDocumentError, PolicyViolationError
from gitreg.model.policy import Limits, Policy
from gitreg.model.versions import compare_versions
from gitreg.signing.interface import NAMESPACE_IMAGELIST
from gitreg.verify.cache import VerificationCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.facts import CREATED_SKEW, ListFacts
from gitreg.verify.signatures import check_signature
from gitreg.verify.source import Entry


def _date(moment: object) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def check_pair(entry: Entry | None, sig_entry: Entry | None, *, path: str, sig_path: str,
               commit: str) -> tuple[Entry, Entry]:
    """A list and its ``.sig`` are published together."""
    if entry is None or sig_entry is None:
        raise PolicyViolationError("a list and its .sig are published together",
                                   rule="list-signature", commit=commit,
                                   path=path if entry is None else sig_path)
    return entry, sig_entry


def format_error(exc: InvalidDocumentError, *, commit: str, path: str) -> PolicyViolationError:
    """A list that does not parse strictly (``list-format``)."""
    return PolicyViolationError(exc.diagnostics(), rule="list-format", commit=commit,
                                path=path)


def check_content(new: ListFacts, old: ListFacts | None, *, list_id: str, limits: Limits,
                  context: VerifyContext, commit: str, path: str) -> None:
    """Identifier, image count, version order and dates of a changed list."""
    if new.identifier != list_id:
        raise PolicyViolationError(f"dc:identifier {new.identifier!r} differs from the file name",
                                   rule="list-identifier", commit=commit, path=path)
    limit = limits.max_images_per_list
    if len(new.images) > limit:
        raise PolicyViolationError(
            f"the list has {len(new.images)} images; the policy allows at most {limit} "
            "(limits.max_images_per_list)", rule="list-images", commit=commit, path=path)
    if old is not None and compare_versions(new.version, old.version) <= 0:
        raise PolicyViolationError(
            f"hv:version {new.version!r} is not higher than the published {old.version!r}",
            rule="list-version", commit=commit, path=path)
    check_dates(new, limits.max_list_lifetime_days, context=context, commit=commit, path=path)


def check_dates(new: ListFacts, max_days: int, *, context: VerifyContext, commit: str,
                path: str) -> None:
    """Sane dates and lifetime always; expiry and future dates at push time."""
    if new.expires <= new.created:
        raise PolicyViolationError("dc:date:expires is not after dc:date:created",
                                   rule="list-dates", commit=commit, path=path)
    if new.expires - new.created > timedelta(days=max_days):
        raise PolicyViolationError(
            f"lifetime {(new.expires - new.created).days} days exceeds the policy's "
            f"maximum of {max_days} days", rule="list-lifetime", commit=commit, path=path)
    if not context.refuses_expired_at_commit:
        return
    at = context.at
    if new.created > at + CREATED_SKEW:
        raise PolicyViolationError(f"dc:date:created {_date(new.created)} is in the future",
                                   rule="list-dates", commit=commit, path=path)
    if new.expires <= at:
        raise PolicyViolationError(
            f"list expired at {_date(new.expires)} (reference time {_date(at)})",
            rule="list-expired", commit=commit, path=path)


def allowed_keys(policy: Policy, path: str, context: VerifyContext) -> list[str]:
    """Keys whose signature may stand for ``path`` (at push time: of live endorsers)."""
    return [key for name in sorted(policy.endorsers_for_path(path))
            if not context.refuses_expired_at_commit
            or policy.is_endorser_active(name, context.at)
            for key in policy.endorser_keys(name)]


def list_signer(policy: Policy, allowed: Collection[str], *, blob: str, sig_blob: str,
                data: Callable[[], bytes], signature: Callable[[], bytes],
                cache: VerificationCache, context: VerifyContext, commit: str,
                path: str) -> str:
    """The allowed key whose detached signature ``sig_blob`` covers list ``blob``."""
    return check_signature(
        policy, allowed=allowed, data_id=blob, data=data, signature_id=sig_blob,
        signature=signature, namespace=NAMESPACE_IMAGELIST, cache=cache, at=context.at,
        rule="list-signature", commit=commit, path=path, what="the list")


def check_binding(policy: Policy, key_id: str, new: ListFacts, *, commit: str,
                  path: str) -> None:
    """An X.509 signer is the list's ``hv:dn`` (vmcatcher's binding)."""
    if policy.keys[key_id].get("scheme") == "x509" and new.endorser_dn != key_id:
        raise PolicyViolationError(f"signed by {key_id} but hv:dn is {new.endorser_dn!r}",
                                   rule="list-signature", commit=commit, path=path)


def check_unique_image(image: str, owner: str | None, *, commit: str, path: str) -> None:
    """No image UUID a changed list newly carries is carried by another list of the new tree."""
    if owner is not None:
        raise PolicyViolationError(f"image {image} is already published in list {owner}",
                                   rule="image-unique", commit=commit, path=path)
