"""The verifier: is candidate head H a valid successor of trusted commit T?

Pure with respect to I/O: it reads objects through ``ObjectSource`` and
remembers verdicts through ``VerificationCache``. The pre-receive hook, the
mirror, the site and ``gitreg verify`` all call ``Verifier.verify_range``.

Every commit is judged under the policy at its first parent (authorisation by
position in history, never by date); a merge commit is valid iff its tree is
the deterministic merge of its parents (``gitreg.verify.merge``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from gitreg.errors import ExpiredError, InvalidDocumentError, PolicyViolationError
from gitreg.model.policy import Policy, PolicyEnvelope, fingerprint, parse_policy
from gitreg.model.registry_info import RegistryInfo
from gitreg.model.versions import compare_versions
from gitreg.signing.interface import NAMESPACE_GIT, NAMESPACE_IMAGELIST
from gitreg.verify import layout
from gitreg.verify.cache import VerificationCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.facts import CREATED_SKEW, ListFacts, list_facts
from gitreg.verify.signatures import check_signature
from gitreg.verify.source import Change, CommitFacts, Entry, ObjectSource
from gitreg.verify.state import StateVerdict, judge_state


def _date(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}" if moment is not None else "never"


@dataclass(frozen=True)
class TreeState:
    """The registry identity and policy in effect at one tree."""

    tree: str
    info: RegistryInfo
    policy: PolicyEnvelope
    policy_blob: str


@dataclass
class VerifyReport:
    """What a run verified, for callers that report progress or findings."""

    head: str
    verified: list[str] = field(default_factory=list)
    skipped_cached: int = 0
    equivocations: list[str] = field(default_factory=list)


Observer = Callable[[str, int, int], None]


class Verifier:
    """Verifies commits of one registry against one trust root."""

    def __init__(
        self,
        source: ObjectSource,
        cache: VerificationCache,
        *,
        context: VerifyContext,
        pinned_policy: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        """``context``: the reference time and mode of this run (``gitreg.verify.context``).
        ``pinned_policy``: ``sha256:<hex>`` the root commit's policy must match.
        """
        self.source = source
        self.cache = cache
        self.context = context
        self.pinned_policy = pinned_policy
        self.observer = observer
        self._states: dict[str, TreeState] = {}
        self._policies: dict[str, PolicyEnvelope] = {}
        self._facts: dict[str, ListFacts] = {}
        self._time_dependent = False

    # --- public entry points --------------------------------------------

    def verify_range(self, trusted: str | None, head: str) -> VerifyReport:
        """Verify every commit from ``trusted`` (exclusive) to ``head``.

        ``trusted=None`` verifies the whole history from the root commit,
        whose policy must match ``pinned_policy`` when one is given.
        """
        report = VerifyReport(head=head)
        if trusted is not None:
            if trusted == head:
                return report
            if not self.source.is_ancestor(trusted, head):
                raise PolicyViolationError(
                    f"does not descend from the trusted commit {trusted[:12]} "
                    "(history rewrite or rollback)", rule="descent", commit=head)
            self._ensure_indexed(self.source.commit(trusted).tree)
        commits = self.source.commits_between(trusted, head)
        # A verdict that checked expiry against this run's clock may not hold
        # at another time: a commit of a refused push, pushed again once its
        # lists expired, must be judged again.
        reusable = not self.context.refuses_expired_at_commit
        roots_seen = 0
        for index, oid in enumerate(commits):
            if self.observer:
                self.observer(oid, index, len(commits))
            # The one-root rule is about this range, so it holds for cached commits too.
            facts = self.source.commit(oid)
            if not facts.parents:
                roots_seen += 1
                if trusted is not None or roots_seen > 1:
                    raise PolicyViolationError(
                        "a second root commit (unrelated history) is not allowed",
                        rule="unrelated-history", commit=oid)
            if reusable and self.cache.is_commit_verified(oid):
                report.skipped_cached += 1
                continue
            self._time_dependent = False
            report.equivocations.extend(self.verify_commit(facts))
            # A verdict resting on an X.509 chain holds only at this reference time.
            if reusable and not self._time_dependent:
                self.cache.mark_commit_verified(oid)
            report.verified.append(oid)
        return report

    def verify_commit(self, facts: CommitFacts) -> list[str]:
        """Verify one commit whose parents are already verified; return findings."""
        if not facts.parents:
            self._verify_root(facts)
            return []
        if len(facts.parents) > 1:
            return self._verify_merge(facts)
        self._verify_ordinary(facts)
        return []

    def judge_state(self, commit: str, *, with_lists: bool = False) -> StateVerdict:
        """What verified ``commit`` is worth at the context's reference time
        (``gitreg.verify.state``): policy expired, inert lists, expired lists."""
        tree = self.source.commit(commit).tree
        policy = self.state(tree, commit=commit).policy.signed
        max_size = policy.limits.max_file_size

        def signer(list_id: str) -> str | None:
            path, sig_path = layout.list_path(list_id), layout.sig_path(list_id)
            entry, sig_entry = self.source.entry(tree, path), self.source.entry(tree, sig_path)
            if entry is None or sig_entry is None:
                return None
            keys = [k for name in sorted(policy.endorsers_for_path(path))
                    for k in policy.endorser_keys(name)]
            try:
                return self._list_signature(policy, keys, entry.oid, sig_entry.oid,
                                            commit=commit, path=sig_path)
            except PolicyViolationError:
                return None  # signed by nobody this policy allows: not an expiry matter

        def facts(entry: Entry) -> ListFacts:
            return self.facts(entry.oid, path=entry.path, max_size=max_size)

        return judge_state(commit, policy, self.context.at, entries=self.source.entries(tree),
                           list_signer=signer, list_facts=facts if with_lists else None)

    def state(self, tree: str, *, commit: str = "") -> TreeState:
        """Registry identity and policy at ``tree`` (cached per tree)."""
        cached = self._states.get(tree)
        if cached is not None:
            return cached
        info_entry = self.source.entry(tree, layout.REGISTRY_FILE)
        policy_entry = self.source.entry(tree, layout.POLICY_FILE)
        if info_entry is None or policy_entry is None:
            missing = layout.REGISTRY_FILE if info_entry is None else layout.POLICY_FILE
            raise PolicyViolationError(f"{missing} is missing", rule="layout-required",
                                       commit=commit or None, path=missing)
        info = RegistryInfo.parse(self.source.blob(info_entry.oid, layout.BOOTSTRAP_MAX_SIZE),
                                  source=layout.REGISTRY_FILE)
        policy = self.policy_blob(policy_entry.oid)
        state = TreeState(tree=tree, info=info, policy=policy, policy_blob=policy_entry.oid)
        self._states[tree] = state
        return state

    def policy_blob(self, oid: str) -> PolicyEnvelope:
        cached = self._policies.get(oid)
        if cached is None:
            cached = parse_policy(self.source.blob(oid, layout.BOOTSTRAP_MAX_SIZE),
                                  source=layout.POLICY_FILE)
            self._policies[oid] = cached
        return cached

    def facts(self, blob: str, *, path: str, max_size: int) -> ListFacts:
        """Facts of a list blob, parsed once (memory, then the persistent cache)."""
        found = self._facts.get(blob) or self.cache.list_facts(blob)
        if found is None:
            found = list_facts(self.source.blob(blob, max_size), source=path, max_size=max_size)
            self.cache.put_list_facts(blob, found)
        self._facts[blob] = found
        return found

    # --- the rules ---------------------------------------------------------

    def _verify_root(self, facts: CommitFacts) -> None:
        entries = self.source.entries(facts.tree)
        for entry in entries:
            layout.check_entry(entry, commit=facts.oid, max_size=layout.BOOTSTRAP_MAX_SIZE,
                               size=partial(self.source.blob_size, entry.oid))
            if entry.path not in (layout.REGISTRY_FILE, layout.POLICY_FILE):
                raise PolicyViolationError(
                    "the root commit may hold only gitreg.json and policy.json",
                    rule="root-layout", commit=facts.oid, path=entry.path)
        state = self.state(facts.tree, commit=facts.oid)
        policy_bytes = self.source.blob(state.policy_blob, layout.BOOTSTRAP_MAX_SIZE)
        if self.pinned_policy is not None and fingerprint(policy_bytes) != self.pinned_policy:
            raise PolicyViolationError(
                f"the initial policy has fingerprint {fingerprint(policy_bytes)}, "
                f"not the pinned {self.pinned_policy}", rule="trust-root", commit=facts.oid,
                path=layout.POLICY_FILE)
        self._check_policy_change(None, state, facts)
        self._commit_signer(facts, state)
        self.cache.mark_tree_indexed(facts.tree)

    def _check_policy_change(self, old: TreeState | None, new: TreeState,
                             facts: CommitFacts) -> None:
        from gitreg.model.policy import verify_policy_transition

        if new.policy.signed.registry != new.info.registry_id:
            raise PolicyViolationError(
                f"policy is for registry {new.policy.signed.registry}, "
                f"this is {new.info.registry_id}", rule="policy-registry",
                commit=facts.oid, path=layout.POLICY_FILE)
        verify_policy_transition(old.policy if old else None, new.policy,
                                 at=self.context.at, commit=facts.oid)

    def _check_policy_expiry(self, state: TreeState, ref_time: datetime, commit: str) -> None:
        if not self.context.refuses_expired_at_commit:
            return
        try:
            state.policy.signed.check_expiry(ref_time)
        except ExpiredError as exc:
            raise PolicyViolationError(exc.message, rule="policy-expired", commit=commit,
                                       path=layout.POLICY_FILE, hint=exc.hint) from exc

    def _check_endorser_expiry(self, policy: Policy, endorser: str, ref_time: datetime,
                               commit: str, path: str) -> None:
        # Only push time is trustworthy; elsewhere the expiry makes the list inert.
        if not self.context.refuses_expired_at_commit or policy.is_endorser_active(
                endorser, ref_time):
            return
        raise PolicyViolationError(
            f"endorser {endorser} expired at {_date(policy.endorsers[endorser].expires)} "
            f"(reference time {_date(ref_time)})", rule="endorser-expired", commit=commit,
            path=path)

    def _commit_signer(self, facts: CommitFacts, state: TreeState) -> str:
        """The policy key that signed the commit (any key of the policy in effect)."""
        if facts.signature is None:
            raise PolicyViolationError("commit is not signed", rule="commit-signature",
                                       commit=facts.oid)
        policy = state.policy.signed
        payload = facts.signed_payload
        return check_signature(
            policy, allowed=list(policy.keys), data_id=facts.oid, data=lambda: payload,
            signature_id=f"commit:{facts.oid}", signature=facts.signature,
            namespace=NAMESPACE_GIT, cache=self.cache, at=self.context.at,
            rule="commit-signature",
            commit=facts.oid, path=None, what="commit")

    def _verify_ordinary(self, facts: CommitFacts) -> None:
        parent = self.source.commit(facts.parents[0])
        before = self.state(parent.tree, commit=parent.oid)
        policy = before.policy.signed
        self._ensure_indexed(parent.tree)
        signer = self._commit_signer(facts, before)
        endorser = policy.endorser_of_key(signer)
        ref_time = self.context.at
        max_size = policy.limits.max_file_size

        changes = self.source.changes(parent.tree, facts.tree)
        lists: set[str] = set()
        policy_changed = False
        for change in changes:
            self._check_change(change, facts.oid, max_size)
            if change.path == layout.POLICY_FILE:
                policy_changed = True
                continue
            list_id = layout.list_id_of(change.path)
            assert list_id is not None  # check_change enforced the layout
            allowed = policy.endorsers_for_path(change.path)
            if endorser is None or endorser not in allowed:
                who = f"endorser {endorser}" if endorser else "a key of no endorser"
                raise PolicyViolationError(
                    f"commit signed by {signer} ({who}), who may not change this path",
                    rule="path-authorisation", commit=facts.oid, path=change.path)
            self._check_endorser_expiry(policy, endorser, ref_time, facts.oid, change.path)
            lists.add(list_id)

        if policy_changed:
            after = self.state(facts.tree, commit=facts.oid)
            self._check_policy_change(before, after, facts)
            self._check_policy_expiry(after, ref_time, facts.oid)
        elif lists:
            # Endorsers act under a live policy; renewing it is always possible.
            self._check_policy_expiry(before, ref_time, facts.oid)
        for list_id in sorted(lists):
            self._check_list(list_id, parent, facts, before, ref_time)
        self._check_unique_images(lists, facts, max_size)
        self.cache.mark_tree_indexed(facts.tree)

    def _check_change(self, change: Change, commit: str, max_size: int) -> None:
        if change.new is None:
            if layout.list_id_of(change.path) is not None:
                raise PolicyViolationError(
                    "lists are never deleted; decommission one by publishing a newer "
                    "version with no images", rule="list-deleted", commit=commit,
                    path=change.path)
            if change.path in (layout.REGISTRY_FILE, layout.POLICY_FILE):
                raise PolicyViolationError(f"{change.path} may not be removed",
                                           rule="layout-required", commit=commit,
                                           path=change.path)
            return  # removing a stray path is how a bad tree gets repaired
        layout.check_entry(change.new, commit=commit, max_size=max_size,
                           size=partial(self.source.blob_size, change.new.oid))
        if change.path == layout.REGISTRY_FILE:
            raise PolicyViolationError("gitreg.json (the registry identity) never changes",
                                       rule="registry-immutable", commit=commit,
                                       path=change.path)

    def _check_list(self, list_id: str, parent: CommitFacts, facts: CommitFacts,
                    before: TreeState, ref_time: datetime) -> None:
        policy = before.policy.signed
        path, sig_path = layout.list_path(list_id), layout.sig_path(list_id)
        entry = self.source.entry(facts.tree, path)
        sig_entry = self.source.entry(facts.tree, sig_path)
        if entry is None or sig_entry is None:
            missing = path if entry is None else sig_path
            raise PolicyViolationError("a list and its .sig are published together",
                                       rule="list-signature", commit=facts.oid, path=missing)
        max_size = policy.limits.max_file_size
        try:
            new = self.facts(entry.oid, path=path, max_size=max_size)
        except InvalidDocumentError as exc:
            raise PolicyViolationError(exc.diagnostics(), rule="list-format",
                                       commit=facts.oid, path=path) from exc
        if new.identifier != list_id:
            raise PolicyViolationError(
                f"dc:identifier {new.identifier!r} differs from the file name",
                rule="list-identifier", commit=facts.oid, path=path)
        limit = policy.limits.max_images_per_list
        if len(new.images) > limit:
            raise PolicyViolationError(
                f"the list has {len(new.images)} images; the policy allows at most {limit} "
                "(limits.max_images_per_list)", rule="list-images", commit=facts.oid,
                path=path)
        old_entry = self.source.entry(parent.tree, path)
        if old_entry is not None and old_entry.oid != entry.oid:
            old = self.facts(old_entry.oid, path=path, max_size=max_size)
            if compare_versions(new.version, old.version) <= 0:
                raise PolicyViolationError(
                    f"hv:version {new.version!r} is not higher than the published "
                    f"{old.version!r}", rule="list-version", commit=facts.oid, path=path)
        self._check_dates(new, policy.limits.max_list_lifetime_days, ref_time,
                          commit=facts.oid, path=path)
        allowed_keys = [key for name in sorted(policy.endorsers_for_path(path))
                        if not self.context.refuses_expired_at_commit
                        or policy.is_endorser_active(name, ref_time)
                        for key in policy.endorser_keys(name)]
        key_id = self._list_signature(policy, allowed_keys, entry.oid, sig_entry.oid,
                                      commit=facts.oid, path=sig_path)
        if policy.keys[key_id].get("scheme") == "x509" and new.endorser_dn != key_id:
            raise PolicyViolationError(
                f"signed by {key_id} but hv:dn is {new.endorser_dn!r}",
                rule="list-signature", commit=facts.oid, path=path)

    def _list_signature(self, policy: Policy, allowed: list[str], blob: str, sig_blob: str,
                        *, commit: str, path: str) -> str:
        max_size = policy.limits.max_file_size
        key_id = check_signature(
            policy, allowed=allowed, data_id=blob,
            data=lambda: self.source.blob(blob, max_size), signature_id=sig_blob,
            signature=self.source.blob(sig_blob, max_size), namespace=NAMESPACE_IMAGELIST,
            cache=self.cache, at=self.context.at, rule="list-signature", commit=commit,
            path=path, what="the list")
        if policy.keys[key_id].get("scheme") == "x509":
            self._time_dependent = True
        return key_id

    def _check_dates(self, new: ListFacts, max_days: int, ref_time: datetime, *,
                     commit: str, path: str) -> None:
        if new.expires <= new.created:
            raise PolicyViolationError("dc:date:expires is not after dc:date:created",
                                       rule="list-dates", commit=commit, path=path)
        if new.expires - new.created > timedelta(days=max_days):
            raise PolicyViolationError(
                f"lifetime {(new.expires - new.created).days} days exceeds the policy's "
                f"maximum of {max_days} days", rule="list-lifetime", commit=commit, path=path)
        if not self.context.refuses_expired_at_commit:
            return
        # A minute of clock skew between an endorser and a server is tolerated.
        if new.created > ref_time + CREATED_SKEW:
            raise PolicyViolationError(
                f"dc:date:created {new.created:%Y-%m-%dT%H:%M:%SZ} is in the future",
                rule="list-dates", commit=commit, path=path)
        if new.expires <= ref_time:
            raise PolicyViolationError(
                f"list expired at {new.expires:%Y-%m-%dT%H:%M:%SZ} "
                f"(reference time {ref_time:%Y-%m-%dT%H:%M:%SZ})", rule="list-expired",
                commit=commit, path=path)

    def _check_unique_images(self, lists: set[str], facts: CommitFacts, max_size: int) -> None:
        """No image UUID of a changed list is carried by another list of the new tree."""
        for list_id in sorted(lists):
            path = layout.list_path(list_id)
            entry = self.source.entry(facts.tree, path)
            assert entry is not None
            for image in self.facts(entry.oid, path=path, max_size=max_size).images:
                other = self._owner_elsewhere(image, list_id, facts.tree)
                if other is not None:
                    raise PolicyViolationError(
                        f"image {image} is already published in list {other}",
                        rule="image-unique", commit=facts.oid, path=path)

    def _owner_elsewhere(self, image: str, list_id: str, tree: str) -> str | None:
        for blob in sorted(self.cache.blobs_with_image(image)):
            other = self.cache.list_facts(blob)
            if other is None or other.identifier == list_id:
                continue
            current = self.source.entry(tree, layout.list_path(other.identifier))
            if current is not None and current.oid == blob:
                return other.identifier
        return None

    def _ensure_indexed(self, tree: str) -> None:
        """Record the facts of every list of ``tree`` (once per tree and cache)."""
        if self.cache.is_tree_indexed(tree):
            return
        policy = self.state(tree).policy.signed
        for entry in self.source.entries(tree):
            if layout.is_list(entry.path):
                self.facts(entry.oid, path=entry.path, max_size=policy.limits.max_file_size)
        self.cache.mark_tree_indexed(tree)

    def _verify_merge(self, facts: CommitFacts) -> list[str]:
        from gitreg.verify.merge import deterministic_merge

        result = deterministic_merge(self, facts.parents)
        entries = self.source.entries(facts.tree)
        for entry in entries:
            # The merge is a path -> blob map; a mode (symlink, executable bit,
            # gitlink) over the right object id must not slip past the comparison.
            layout.check_mode(entry, commit=facts.oid)
        actual = {entry.path: entry.oid for entry in entries}
        if actual != result.tree:
            differing = sorted(p for p in set(actual) | set(result.tree)
                               if actual.get(p) != result.tree.get(p))
            raise PolicyViolationError(
                "merge commit's tree is not the deterministic merge of its parents "
                f"(differs at {', '.join(differing[:5])})", rule="merge-tree",
                commit=facts.oid, path=differing[0] if differing else None)
        self.cache.mark_tree_indexed(facts.tree)
        return result.equivocations
