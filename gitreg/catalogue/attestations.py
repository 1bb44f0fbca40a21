"""The attestations of one verified registry state, per image, for display.

A statement counts when its signature is by a key of its own attester under
the policy of the state being shown (``gitreg.verify.attestations``), so an
attester removed from the policy since stops counting, as a removed
endorser's lists read as revoked. Read from Git objects only; given the
records of an earlier state, unchanged statements are not verified again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gitreg.errors import PolicyViolationError, RejectedError
from gitreg.gitstore.store import RegistryStore
from gitreg.model.policy import Policy
from gitreg.verify import attestations, layout
from gitreg.verify.cache import VerificationCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.source import Entry


def read_attestations(store: RegistryStore, policy: Policy, cache: VerificationCache, *,
                      head: str, entries: dict[str, Entry], at: datetime,
                      previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"by_path": {path: [blob, sig_blob, summary | None]}, "by_image": {uuid: [...]}}``.

    ``previous``: the same structure for an earlier state under the same
    policy blob; statements with the same blobs are taken from it.
    """
    context = VerifyContext.for_history(at)
    max_size = policy.limits.max_file_size
    before = (previous or {}).get("by_path", {})
    by_path: dict[str, list[Any]] = {}
    for path in sorted(p for p in entries if layout.is_attestation(p)):
        blob = entries[path].oid
        sig = entries.get(path + ".sig")
        sig_blob = sig.oid if sig is not None else ""
        old = before.get(path)
        if old is not None and old[0] == blob and old[1] == sig_blob:
            by_path[path] = old
            continue
        by_path[path] = [blob, sig_blob, _summary(store, policy, cache, context, head=head,
                                                  path=path, blob=blob, sig_blob=sig_blob,
                                                  max_size=max_size)]
    by_image: dict[str, list[dict[str, Any]]] = {}
    for _, _, summary in by_path.values():
        if summary is not None:
            by_image.setdefault(summary["image"], []).append(summary)
    for found in by_image.values():
        found.sort(key=lambda s: s["attester"])
    return {"by_path": by_path, "by_image": by_image}


def _summary(store: RegistryStore, policy: Policy, cache: VerificationCache,
             context: VerifyContext, *, head: str, path: str, blob: str, sig_blob: str,
             max_size: int) -> dict[str, Any] | None:
    if not sig_blob:
        return None
    try:
        attestations.statement_signer(
            policy, attestations.allowed_keys(policy, path, context), blob=blob,
            sig_blob=sig_blob, data=lambda: store.blob(blob, max_size),
            signature=store.blob(sig_blob, max_size), cache=cache, at=context.at,
            commit=head, path=path + ".sig")
        statement = attestations.parse(store.blob(blob, max_size), commit=head, path=path,
                                       max_size=max_size)
    except (PolicyViolationError, RejectedError):
        return None  # signed by nobody this policy names an attester: it does not count
    return {"image": statement.image, **statement.summary()}

