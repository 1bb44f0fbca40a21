"""The deterministic merge of diverged registry heads (ARCHITECTURE section 5).

For every path, the content of the parent with the highest version wins
(``hv:version`` for a list with its ``.sig``, the policy version for
``policy.json``); identical content is taken as is. Two different contents at
the same version are an equivocation: the path keeps its content at the merge
base. The merged policy is chosen first, and a list version whose signer that
policy no longer allows is not a candidate, so a concurrent revocation wins.
Anyone computes the same tree, so merge commits need no signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from gitreg.errors import PolicyViolationError
from gitreg.model.policy import Policy
from gitreg.model.versions import compare_versions
from gitreg.signing.interface import NAMESPACE_IMAGELIST
from gitreg.verify import layout
from gitreg.verify.signatures import check_signature
from gitreg.verify.source import Entry

if TYPE_CHECKING:
    from gitreg.verify.history import Verifier


@dataclass
class MergeResult:
    tree: dict[str, str]  # path -> blob oid
    equivocations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _ListVersion:
    list_blob: str
    sig_blob: str
    version: str


def deterministic_merge(verifier: Verifier, parents: tuple[str, ...]) -> MergeResult:
    """The merged tree (path -> blob) of already verified ``parents``."""
    source = verifier.source
    commits = [source.commit(oid) for oid in parents]
    trees = [{e.path: e.oid for e in source.entries(c.tree)} for c in commits]
    base_oid = source.merge_base(tuple(parents))
    base = {e.path: e.oid for e in source.entries(source.commit(base_oid).tree)} \
        if base_oid else {}
    result = MergeResult(tree={})
    # Certificates are judged at the run's reference time (its VerifyContext).
    at = verifier.context.at

    infos = {t[layout.REGISTRY_FILE] for t in trees}
    if len(infos) != 1:
        raise PolicyViolationError("the parents are different registries (gitreg.json differs)",
                                   rule="merge-registry", commit=None, path=layout.REGISTRY_FILE)
    result.tree[layout.REGISTRY_FILE] = infos.pop()
    policy_blob = _merge_policy(verifier, trees, base, result)
    result.tree[layout.POLICY_FILE] = policy_blob
    policy = verifier.policy_blob(policy_blob).signed

    list_ids = sorted({lid for t in trees for p in t if (lid := _list_of(p)) is not None})
    changed: list[str] = []
    for list_id in list_ids:
        chosen = _merge_list(verifier, policy, list_id, trees=trees, base=base, result=result,
                             at=at)
        if chosen is not None:
            _put(result.tree, list_id, chosen)
            if len({(t.get(layout.list_path(list_id))) for t in trees}) > 1:
                changed.append(list_id)
    _resolve_image_conflicts(verifier, policy, changed, base, result)
    return result


def _list_of(path: str) -> str | None:
    return layout.list_id_of(path) if layout.is_list(path) else None


def _put(tree: dict[str, str], list_id: str, version: _ListVersion) -> None:
    tree[layout.list_path(list_id)] = version.list_blob
    tree[layout.sig_path(list_id)] = version.sig_blob


def _merge_policy(verifier: Verifier, trees: list[dict[str, str]], base: dict[str, str],
                  result: MergeResult) -> str:
    blobs = sorted({t[layout.POLICY_FILE] for t in trees})
    if len(blobs) == 1:
        return blobs[0]
    by_version = sorted(blobs, key=lambda b: -verifier.policy_blob(b).signed.version)
    top = verifier.policy_blob(by_version[0]).signed.version
    tied = [b for b in by_version if verifier.policy_blob(b).signed.version == top]
    if len(tied) > 1:
        result.equivocations.append(
            f"policy.json: two different policies with version {top}; keeping the merge base's")
        return base.get(layout.POLICY_FILE, by_version[-1])
    return by_version[0]


def _merge_list(verifier: Verifier, policy: Policy, list_id: str, *,
                trees: list[dict[str, str]], base: dict[str, str],
                result: MergeResult, at: datetime) -> _ListVersion | None:
    path, sig = layout.list_path(list_id), layout.sig_path(list_id)
    max_size = policy.limits.max_file_size
    seen: dict[tuple[str, str], _ListVersion] = {}
    for tree in trees:
        if path in tree and sig in tree:
            key = (tree[path], tree[sig])
            if key not in seen:
                facts = verifier.facts(tree[path], path=path, max_size=max_size)
                seen[key] = _ListVersion(tree[path], tree[sig], facts.version)
    base_version = None
    if path in base and sig in base:
        base_version = _ListVersion(base[path], base[sig],
                                    verifier.facts(base[path], path=path,
                                                   max_size=max_size).version)
    if len(seen) == 1:
        return next(iter(seen.values()))
    candidates = [v for v in seen.values() if _allowed(verifier, policy, list_id, v, at)]
    if not candidates:
        return base_version
    candidates.sort(key=lambda v: v.list_blob)
    best = candidates[0]
    for other in candidates[1:]:
        if compare_versions(other.version, best.version) > 0:
            best = other
    tied = [v for v in candidates if compare_versions(v.version, best.version) == 0]
    if len(tied) > 1:
        result.equivocations.append(
            f"{path}: two different contents with hv:version {best.version!r}; "
            "keeping the last trusted content")
        return base_version
    return best


def _allowed(verifier: Verifier, policy: Policy, list_id: str, version: _ListVersion,
             at: datetime) -> bool:
    """Whether the merged policy still allows the signer of this list version."""
    path, sig = layout.list_path(list_id), layout.sig_path(list_id)
    max_size = policy.limits.max_file_size
    allowed_keys = [key for name in policy.endorsers_for_path(path)
                    for key in policy.endorser_keys(name)]
    try:
        check_signature(
            policy, allowed=allowed_keys, data_id=version.list_blob,
            data=lambda: verifier.source.blob(version.list_blob, max_size),
            signature_id=version.sig_blob,
            signature=verifier.source.blob(version.sig_blob, max_size),
            namespace=NAMESPACE_IMAGELIST, at=at, cache=verifier.cache, rule="merge-list",
            commit="merge", path=sig, what="the list")
    except PolicyViolationError:
        return False
    return True


def _resolve_image_conflicts(verifier: Verifier, policy: Policy, changed: list[str],
                             base: dict[str, str], result: MergeResult) -> None:
    """Two lists that now carry one image UUID: the later path falls back to its base."""
    max_size = policy.limits.max_file_size
    for _ in range(len(changed) + 1):
        owners: dict[str, str] = {}
        conflict: str | None = None
        for path, blob in sorted(result.tree.items()):
            if not layout.is_list(path):
                continue
            for image in verifier.facts(blob, path=path, max_size=max_size).images:
                if image in owners and conflict is None:
                    conflict = _newcomer(path, owners[image], base, result.tree)
                owners.setdefault(image, path)
        if conflict is None:
            return
        list_id = layout.list_id_of(conflict)
        assert list_id is not None
        result.equivocations.append(
            f"{conflict}: carries an image UUID another list also claims; "
            "keeping the last trusted content")
        sig = layout.sig_path(list_id)
        if conflict in base and sig in base:
            result.tree[conflict], result.tree[sig] = base[conflict], base[sig]
        else:
            del result.tree[conflict]
            del result.tree[sig]


def _newcomer(first: str, second: str, base: dict[str, str], tree: dict[str, str]) -> str:
    """Of two lists claiming one image, the one that changed since the base (or the later)."""
    changed = [p for p in (first, second) if base.get(p) != tree.get(p)]
    return max(changed) if changed else max(first, second)


def check_merge_tree(entries: list[Entry], result: MergeResult, *, commit: str) -> None:
    """A merge commit's tree is exactly the deterministic merge (``merge-tree``)."""
    for entry in entries:
        # The merge is a path -> blob map; a mode (symlink, executable bit,
        # gitlink) over the right object id must not slip past the comparison.
        layout.check_mode(entry, commit=commit)
    actual = {entry.path: entry.oid for entry in entries}
    if actual != result.tree:
        differing = sorted(p for p in set(actual) | set(result.tree)
                           if actual.get(p) != result.tree.get(p))
        raise PolicyViolationError(
            "merge commit's tree is not the deterministic merge of its parents "
            f"(differs at {', '.join(differing[:5])})", rule="merge-tree", commit=commit,
            path=differing[0] if differing else None)
