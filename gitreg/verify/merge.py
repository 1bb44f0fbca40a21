"""The deterministic merge of diverged registry heads (docs/format.md, "Replication").

For every path, the content of the parent with the highest version wins
(``hv:version`` for a list with its ``.sig``, the policy version for
``policy.json``); identical content is taken as is. The merged policy is
chosen first, and a list version whose signer that policy no longer allows is
not a candidate, so a concurrent revocation wins. An attestation (with its
``.sig``) is merged the same way, the latest ``predicate.time`` winning
among the statements the merged policy's attesters signed. Two different contents at
the same highest version are an equivocation by their signer: it is reported,
and the smallest blob id is taken, so that every party computes the same tree
and no list ever goes back to a lower version. Two lists that now carry one
image UUID (each side put it in another list) both keep their highest
version: the image conflict is reported, and sites take that image from
neither list until an endorser drops it from one (gitreg/site/plan.py).
Anyone computes the same tree, so merge commits need no signature.

The rule reads the parents only through ``MergeFacts`` (a few tree facts), so
it can be tested without a repository; ``VerifierFacts`` answers them from the
verifier's object source and caches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from gitreg.errors import PolicyViolationError
from gitreg.model.versions import compare_versions
from gitreg.signing.interface import NAMESPACE_IMAGELIST
from gitreg.verify import attestations, layout
from gitreg.verify.signatures import check_signature
from gitreg.verify.source import Entry

if TYPE_CHECKING:
    from gitreg.verify.history import Verifier


class MergeFacts(Protocol):
    """What the merge rule needs to know about the parents and their blobs."""

    def tree(self, commit: str) -> Mapping[str, str]:
        """Every path of the commit's tree and its blob id."""
        ...

    def base_tree(self, commits: tuple[str, ...]) -> Mapping[str, str]:
        """The tree of the commits' merge base (empty if they share none)."""
        ...

    def policy_version(self, blob: str) -> int:
        """The ``version`` of the policy envelope stored in ``blob``."""
        ...

    def list_version(self, blob: str, *, path: str,
                     policy_blob: str) -> tuple[str, tuple[str, ...]]:
        """The ``hv:version`` and image UUIDs of the list stored in ``blob``."""
        ...

    def signer_allowed(self, policy_blob: str, *, path: str, list_blob: str,
                       sig_blob: str) -> bool:
        """Whether the policy in ``policy_blob`` allows the signature over the list."""
        ...

    def attestation_time(self, blob: str, *, path: str, policy_blob: str) -> str:
        """The ``predicate.time`` (``YYYY-MM-DDTHH:MM:SSZ``) of the statement in ``blob``."""
        ...

    def attestation_allowed(self, policy_blob: str, *, path: str, blob: str,
                            sig_blob: str) -> bool:
        """Whether the policy in ``policy_blob`` allows the signature over the statement."""
        ...


@dataclass(frozen=True)
class Equivocation:
    """Two or more different contents of one path at one version."""

    path: str
    version: str  # for an image conflict: the image UUID (one finding per image)
    blobs: tuple[str, ...]  # the competing contents, sorted
    commits: tuple[str, ...]  # the parents that carry them, sorted
    chosen: str | None  # the blob the merge took (None: the path was dropped)
    reason: str = "equivocation"  # or "image-conflict"
    # For an image conflict: every list path that carries the image.
    claimants: tuple[str, ...] = ()

    @property
    def image(self) -> str | None:
        """The image UUID of an image conflict (kept in ``version``), else None."""
        return self.version if self.reason == "image-conflict" else None

    def describe(self) -> str:
        if self.reason == "image-conflict":
            return (f"image {self.image} is carried by {' and '.join(self.claimants)} "
                    f"(image conflict, from {', '.join(c[:12] for c in self.commits)}); "
                    "both lists keep their highest version, sites take the image from "
                    "neither until one list drops it")
        what = "policies" if self.path == layout.POLICY_FILE else "contents"
        kind = "version" if self.path == layout.POLICY_FILE else "hv:version"
        if layout.is_attestation(self.path):
            kind = "predicate.time"
        return (f"{self.path}: {len(self.blobs)} different {what} with {kind} "
                f"{self.version!r} (equivocation, in {', '.join(c[:12] for c in self.commits)}); "
                f"took blob {(self.chosen or 'none')[:12]}")


@dataclass
class MergeResult:
    tree: dict[str, str]  # path -> blob oid
    findings: list[Equivocation] = field(default_factory=list)

    @property
    def equivocations(self) -> list[str]:
        return [f.describe() for f in self.findings]


@dataclass(frozen=True)
class _ListVersion:
    list_blob: str
    sig_blob: str
    version: str


def deterministic_merge(verifier: Verifier, parents: tuple[str, ...]) -> MergeResult:
    """The merged tree (path -> blob) of already verified ``parents``."""
    return merge_trees(VerifierFacts(verifier), parents)


def merge_trees(facts: MergeFacts, parents: tuple[str, ...]) -> MergeResult:
    """The deterministic merge of ``parents``; the order of ``parents`` does not matter."""
    ordered = tuple(sorted(set(parents)))
    trees = [(commit, facts.tree(commit)) for commit in ordered]
    base = facts.base_tree(ordered)
    result = MergeResult(tree={})

    infos = {t.get(layout.REGISTRY_FILE) for _, t in trees}
    if len(infos) != 1 or None in infos:
        raise PolicyViolationError("the parents are different registries (gitreg.json differs)",
                                   rule="merge-registry", commit=None, path=layout.REGISTRY_FILE)
    result.tree[layout.REGISTRY_FILE] = str(infos.pop())
    policy_blob = _merge_policy(facts, trees, result)
    result.tree[layout.POLICY_FILE] = policy_blob

    list_ids = sorted({lid for _, t in trees for p in t if (lid := _list_of(p)) is not None})
    changed: list[str] = []
    for list_id in list_ids:
        chosen = _merge_list(facts, policy_blob, list_id, trees=trees, base=base, result=result)
        if chosen is not None:
            _put(result.tree, list_id, chosen)
            if len({t.get(layout.list_path(list_id)) for _, t in trees}) > 1:
                changed.append(list_id)
    _report_image_conflicts(facts, policy_blob, changed, trees, result)
    statements = sorted({p for _, t in trees for p in t if layout.is_attestation(p)})
    for path in statements:
        picked = _merge_attestation(facts, policy_blob, path, trees=trees, base=base,
                                    result=result)
        if picked is not None:
            result.tree[path], result.tree[path + ".sig"] = picked
    return result


def _merge_attestation(facts: MergeFacts, policy_blob: str, path: str, *,
                       trees: list[tuple[str, Mapping[str, str]]], base: Mapping[str, str],
                       result: MergeResult) -> tuple[str, str] | None:
    """The statement at ``path`` with the latest time that the merged policy allows."""
    sig = path + ".sig"
    holders: dict[tuple[str, str], list[str]] = {}
    for commit, tree in trees:
        if path in tree and sig in tree:
            holders.setdefault((tree[path], tree[sig]), []).append(commit)
    if len(holders) == 1:
        return next(iter(holders))
    allowed = sorted(pair for pair in holders
                     if facts.attestation_allowed(policy_blob, path=sig, blob=pair[0],
                                                  sig_blob=pair[1]))
    if not allowed:
        return (base[path], base[sig]) if path in base and sig in base else None
    times = {pair: facts.attestation_time(pair[0], path=path, policy_blob=policy_blob)
             for pair in allowed}
    latest = max(times.values())
    tied = [pair for pair in allowed if times[pair] == latest]
    if len(tied) > 1:
        result.findings.append(Equivocation(
            path, latest, tuple(pair[0] for pair in tied),
            tuple(sorted(c for pair in tied for c in holders[pair])), tied[0][0]))
    return tied[0]


def _list_of(path: str) -> str | None:
    return layout.list_id_of(path) if layout.is_list(path) else None


def _put(tree: dict[str, str], list_id: str, version: _ListVersion) -> None:
    tree[layout.list_path(list_id)] = version.list_blob
    tree[layout.sig_path(list_id)] = version.sig_blob


def _merge_policy(facts: MergeFacts, trees: list[tuple[str, Mapping[str, str]]],
                  result: MergeResult) -> str:
    holders: dict[str, list[str]] = {}
    for commit, tree in trees:
        blob = tree.get(layout.POLICY_FILE)
        if blob is None:
            raise PolicyViolationError("a parent has no policy.json", rule="merge-registry",
                                       commit=commit, path=layout.POLICY_FILE)
        holders.setdefault(blob, []).append(commit)
    if len(holders) == 1:
        return next(iter(holders))
    top = max(facts.policy_version(b) for b in holders)
    tied = sorted(b for b in holders if facts.policy_version(b) == top)
    if len(tied) > 1:
        result.findings.append(Equivocation(
            layout.POLICY_FILE, str(top), tuple(tied),
            tuple(sorted(c for b in tied for c in holders[b])), tied[0]))
    return tied[0]


def _merge_list(facts: MergeFacts, policy_blob: str, list_id: str, *,
                trees: list[tuple[str, Mapping[str, str]]], base: Mapping[str, str],
                result: MergeResult) -> _ListVersion | None:
    path, sig = layout.list_path(list_id), layout.sig_path(list_id)
    seen: dict[tuple[str, str], _ListVersion] = {}
    holders: dict[tuple[str, str], list[str]] = {}
    for commit, tree in trees:
        if path in tree and sig in tree:
            key = (tree[path], tree[sig])
            if key not in seen:
                version, _ = facts.list_version(tree[path], path=path, policy_blob=policy_blob)
                seen[key] = _ListVersion(tree[path], tree[sig], version)
            holders.setdefault(key, []).append(commit)
    if len(seen) == 1:
        return next(iter(seen.values()))
    candidates = sorted((v for v in seen.values()
                         if facts.signer_allowed(policy_blob, path=sig, list_blob=v.list_blob,
                                                 sig_blob=v.sig_blob)),
                        key=lambda v: (v.list_blob, v.sig_blob))
    if not candidates:
        # Every version still on offer was revoked: the merge base's content,
        # which the merged policy's own history accepted, stays.
        if path in base and sig in base:
            version, _ = facts.list_version(base[path], path=path, policy_blob=policy_blob)
            return _ListVersion(base[path], base[sig], version)
        return None
    best = candidates[0]
    for other in candidates[1:]:
        if compare_versions(other.version, best.version) > 0:
            best = other
    tied = [v for v in candidates if compare_versions(v.version, best.version) == 0]
    if len(tied) > 1:
        result.findings.append(Equivocation(
            path, best.version, tuple(v.list_blob for v in tied),
            tuple(sorted(c for v in tied for c in holders[(v.list_blob, v.sig_blob)])),
            tied[0].list_blob))
        return tied[0]
    return best


def _report_image_conflicts(facts: MergeFacts, policy_blob: str, changed: list[str],
                            trees: list[tuple[str, Mapping[str, str]]],
                            result: MergeResult) -> None:
    """Report each image UUID that two lists of the merged tree carry, one of them changed.

    Nothing is undone: falling back to an older version would take a list
    below what a party already trusted (docs/format.md, "Replication").
    """
    touched = {layout.list_path(list_id) for list_id in changed}
    carriers: dict[str, list[str]] = {}
    for path, blob in sorted(result.tree.items()):
        if layout.is_list(path):
            _, images = facts.list_version(blob, path=path, policy_blob=policy_blob)
            for image in images:
                carriers.setdefault(image, []).append(path)
    for image, paths in sorted(carriers.items()):
        if len(paths) < 2 or touched.isdisjoint(paths):
            continue
        blobs = tuple(sorted(result.tree[p] for p in paths))
        commits = tuple(sorted(c for c, tree in trees
                               if any(tree.get(p) == result.tree[p] for p in touched & set(paths))))
        first = min(touched & set(paths))
        result.findings.append(Equivocation(
            first, image, blobs, commits, result.tree[first], reason="image-conflict",
            claimants=tuple(paths)))


class VerifierFacts:
    """``MergeFacts`` answered from a verifier's object source and caches."""

    def __init__(self, verifier: Verifier) -> None:
        self._verifier = verifier

    def tree(self, commit: str) -> Mapping[str, str]:
        source = self._verifier.source
        return {e.path: e.oid for e in source.entries(source.commit(commit).tree)}

    def base_tree(self, commits: tuple[str, ...]) -> Mapping[str, str]:
        base = self._verifier.source.merge_base(commits)
        return self.tree(base) if base else {}

    def policy_version(self, blob: str) -> int:
        return self._verifier.policy_blob(blob).signed.version

    def list_version(self, blob: str, *, path: str,
                     policy_blob: str) -> tuple[str, tuple[str, ...]]:
        policy = self._verifier.policy_blob(policy_blob).signed
        found = self._verifier.facts(blob, path=path, max_size=policy.limits.max_file_size)
        return found.version, found.images

    def signer_allowed(self, policy_blob: str, *, path: str, list_blob: str,
                       sig_blob: str) -> bool:
        verifier = self._verifier
        policy = verifier.policy_blob(policy_blob).signed
        max_size = policy.limits.max_file_size
        allowed_keys = [key for name in policy.endorsers_for_path(path)
                        for key in policy.endorser_keys(name)]
        try:
            check_signature(
                policy, allowed=allowed_keys, data_id=list_blob,
                data=lambda: verifier.source.blob(list_blob, max_size),
                signature_id=sig_blob, signature=verifier.source.blob(sig_blob, max_size),
                # Certificates are judged at the run's reference time (its VerifyContext).
                namespace=NAMESPACE_IMAGELIST, at=verifier.context.at, cache=verifier.cache,
                rule="merge-list",
                commit="merge", path=path, what="the list")
        except PolicyViolationError:
            return False
        return True


    def attestation_time(self, blob: str, *, path: str, policy_blob: str) -> str:
        policy = self._verifier.policy_blob(policy_blob).signed
        max_size = policy.limits.max_file_size
        statement = attestations.parse(self._verifier.source.blob(blob, max_size),
                                       commit="merge", path=path, max_size=max_size)
        return f"{statement.time:%Y-%m-%dT%H:%M:%SZ}"

    def attestation_allowed(self, policy_blob: str, *, path: str, blob: str,
                            sig_blob: str) -> bool:
        verifier = self._verifier
        policy = verifier.policy_blob(policy_blob).signed
        max_size = policy.limits.max_file_size
        allowed = attestations.allowed_keys(policy, path[: -len(".sig")], verifier.context)
        try:
            attestations.statement_signer(
                policy, allowed, blob=blob, sig_blob=sig_blob,
                data=lambda: verifier.source.blob(blob, max_size),
                signature=verifier.source.blob(sig_blob, max_size), cache=verifier.cache,
                at=verifier.context.at, commit="merge", path=path)
        except PolicyViolationError:
            return False
        return True


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
