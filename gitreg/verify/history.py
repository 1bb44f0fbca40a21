"""The verifier: is candidate head H a valid successor of trusted commit T?

Pure with respect to I/O: it reads objects through ``ObjectSource`` and
remembers verdicts through ``VerificationCache``. The pre-receive hook, the
mirror, the site and ``gitreg verify`` all call ``Verifier.verify_range``.

Every commit is judged under the policy at its first parent (authorisation by
position in history, never by date), at the reference time of the run's
``VerifyContext``; a merge commit is valid iff its tree is the deterministic
merge of its parents. This module walks the history and keeps the caches;
the rules live one family a module: ``layout`` (paths, modes, sizes),
``commits`` (descent, roots, signatures, authorisation), ``lists``,
``attestations`` (sites' signed statements about images), ``policy_rules``
(thresholds, transitions, expiry), ``merge`` and ``state`` (expiry as a
property of the state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from gitreg.errors import InvalidDocumentError, PolicyViolationError
from gitreg.model.policy import Policy, PolicyEnvelope, parse_policy
from gitreg.model.registry_info import RegistryInfo
from gitreg.verify import attestations, commits, layout, lists, policy_rules
from gitreg.verify.cache import VerificationCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.facts import ListFacts, list_facts
from gitreg.verify.source import CommitFacts, Entry, ObjectSource
from gitreg.verify.state import StateVerdict, judge_state, judge_state_since


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
        preverify: Callable[[Verifier, list[str]], None] | None = None,
    ) -> None:
        """``context``: the reference time and mode of this run (``gitreg.verify.context``).
        ``pinned_policy``: ``sha256:<hex>`` the root commit's policy must match.
        ``preverify``: fills the cache for a range before the walk
        (``gitreg.verify.batch.Preverifier``: parallel list checks).
        """
        self.source = source
        self.cache = cache
        self.context = context
        self.pinned_policy = pinned_policy
        self.observer = observer
        self.preverify = preverify
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
            commits.check_descent(descends=self.source.is_ancestor(trusted, head),
                                  trusted=trusted, head=head)
            self._ensure_indexed(self.source.commit(trusted).tree)
        oids = self.source.commits_between(trusted, head)
        if self.preverify is not None:
            self.preverify(self, oids)
        # A verdict that checked expiry against this run's clock may not hold
        # at another time: a commit of a refused push, pushed again once its
        # lists expired, must be judged again.
        reusable = not self.context.refuses_expired_at_commit
        roots_seen = 0
        for index, oid in enumerate(oids):
            if self.observer:
                self.observer(oid, index, len(oids))
            # The one-root rule is about this range, so it holds for cached commits too.
            facts = self.source.commit(oid)
            roots_seen += not facts.parents
            commits.check_one_root(facts, trusted=trusted, roots_seen=roots_seen)
            if reusable and self.cache.is_commit_verified(oid):
                report.skipped_cached += 1
                continue
            self._time_dependent = False
            report.equivocations.extend(self.verify_commit(facts))
            # A verdict resting on a key with a validity period holds only at this time.
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

    def judge_state(self, commit: str, *, with_lists: bool = False,
                    previous: StateVerdict | None = None) -> StateVerdict:
        """What verified ``commit`` is worth at the context's reference time
        (``gitreg.verify.state``): policy expired, inert lists, expired lists.

        ``previous``: the verdict of an earlier verified state (of this
        registry), carried forward over the lists that changed since.
        """
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
                return self._list_signer(policy, keys, entry.oid, sig_entry.oid,
                                         commit=commit, path=sig_path)
            except PolicyViolationError:
                return None  # signed by nobody this policy allows: not an expiry matter

        def facts(entry: Entry) -> ListFacts:
            return self.facts(entry.oid, path=entry.path, max_size=max_size)

        old_tree = self.source.commit(previous.commit).tree if previous is not None else None
        # Carried forward only under the very same policy document.
        if previous is not None and old_tree is not None and not with_lists and \
                self.state(old_tree).policy_blob == self.state(tree).policy_blob:
            changed, removed = self._changed_lists(old_tree, tree)
            verdict = judge_state_since(previous, commit, policy, self.context.at,
                                        changed=changed, removed=removed, list_signer=signer)
            if verdict is not None:
                return verdict
        return judge_state(commit, policy, self.context.at, entries=_Entries(self.source, tree),
                           list_signer=signer, list_facts=facts if with_lists else None)

    def _changed_lists(self, old_tree: str, tree: str) -> tuple[list[Entry], list[str]]:
        """The list entries of ``tree`` whose list or signature differs from
        ``old_tree``'s, and the list UUIDs it no longer has."""
        changed: dict[str, Entry] = {}
        removed: list[str] = []
        for change in self.source.changes(old_tree, tree) if old_tree != tree else ():
            list_id = layout.list_id_of(change.path)
            if list_id is None or list_id in changed:
                continue
            entry = self.source.entry(tree, layout.list_path(list_id))
            if entry is None:
                removed.append(list_id)
            else:
                changed[list_id] = entry
        return list(changed.values()), removed

    def state(self, tree: str, *, commit: str = "") -> TreeState:
        """Registry identity and policy at ``tree`` (cached per tree)."""
        cached = self._states.get(tree)
        if cached is not None:
            return cached
        info_entry = self.source.entry(tree, layout.REGISTRY_FILE)
        policy_entry = self.source.entry(tree, layout.POLICY_FILE)
        info_entry, policy_entry = layout.check_required(info_entry, policy_entry,
                                                         commit=commit or None)
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

    # --- applying the rules (each rule lives in its family's module) ----------

    def _verify_root(self, facts: CommitFacts) -> None:
        for entry in self.source.entries(facts.tree):
            layout.check_root_entry(entry, commit=facts.oid,
                                    size=partial(self.source.blob_size, entry.oid))
        state = self.state(facts.tree, commit=facts.oid)
        commits.check_trust_root(self.source.blob(state.policy_blob, layout.BOOTSTRAP_MAX_SIZE),
                                 pinned=self.pinned_policy, commit=facts.oid)
        self._check_policy_change(None, state, facts)
        commits.commit_signer(facts, state.policy.signed, cache=self.cache,
                              context=self.context)
        self.cache.mark_tree_indexed(facts.tree)

    def _check_policy_change(self, old: TreeState | None, new: TreeState,
                             facts: CommitFacts) -> None:
        policy_rules.check_policy_registry(new.policy.signed, new.info, commit=facts.oid)
        policy_rules.verify_policy_transition(old.policy if old else None, new.policy,
                                              at=self.context.at, commit=facts.oid)

    def _verify_ordinary(self, facts: CommitFacts) -> None:
        parent = self.source.commit(facts.parents[0])
        before = self.state(parent.tree, commit=parent.oid)
        policy = before.policy.signed
        self._ensure_indexed(parent.tree)
        signer = commits.commit_signer(facts, policy, cache=self.cache, context=self.context)
        max_size = policy.limits.max_file_size

        lists: set[str] = set()
        statements: set[str] = set()
        policy_changed = False
        for change in self.source.changes(parent.tree, facts.tree):
            size = partial(self.source.blob_size, change.new.oid) if change.new else None
            layout.check_change(change, commit=facts.oid, max_size=max_size, size=size)
            if change.path == layout.POLICY_FILE:
                policy_changed = True
                continue
            if (owner := layout.attestation_of(change.path)) is not None:
                attestations.check_authorisation(policy, signer=signer, path=change.path,
                                                  context=self.context, commit=facts.oid)
                statements.add(layout.attestation_path(*owner))
                continue
            list_id = layout.list_id_of(change.path)
            assert list_id is not None  # check_change enforced the layout
            endorser = commits.check_path_authorisation(policy, signer=signer,
                                                        path=change.path, commit=facts.oid)
            commits.check_endorser_expiry(policy, endorser, context=self.context,
                                          commit=facts.oid, path=change.path)
            lists.add(list_id)

        if policy_changed:
            after = self.state(facts.tree, commit=facts.oid)
            self._check_policy_change(before, after, facts)
            policy_rules.check_policy_expiry(after.policy.signed, context=self.context,
                                             commit=facts.oid)
        elif lists or statements:
            # Endorsers act under a live policy; renewing it is always possible.
            policy_rules.check_policy_expiry(policy, context=self.context, commit=facts.oid)
        for list_id in sorted(lists):
            self._check_list(list_id, parent, facts, policy)
        self._check_unique_images(lists, parent, facts, max_size)
        for path in sorted(statements):
            self._check_attestation(path, parent, facts, policy)
        self.cache.mark_tree_indexed(facts.tree)

    def _check_attestation(self, path: str, parent: CommitFacts, facts: CommitFacts,
                           policy: Policy) -> None:
        sig_path = path + ".sig"
        entry, sig_entry = attestations.check_pair(
            self.source.entry(facts.tree, path), self.source.entry(facts.tree, sig_path),
            path=path, sig_path=sig_path, commit=facts.oid)
        max_size = policy.limits.max_file_size
        key_id = attestations.statement_signer(
            policy, attestations.allowed_keys(policy, path, self.context), blob=entry.oid,
            sig_blob=sig_entry.oid, data=lambda: self.source.blob(entry.oid, max_size),
            signature=self.source.blob(sig_entry.oid, max_size), cache=self.cache,
            at=self.context.at, commit=facts.oid, path=sig_path)
        if policy.keys[key_id].get("scheme") == "x509":
            self._time_dependent = True
        new = attestations.parse(self.source.blob(entry.oid, max_size), commit=facts.oid,
                                 path=path, max_size=max_size)
        old_entry = self.source.entry(parent.tree, path)
        old = None
        if old_entry is not None and old_entry.oid != entry.oid:
            old = attestations.parse(self.source.blob(old_entry.oid, max_size),
                                     commit=facts.oid, path=path, max_size=max_size)
        attestations.check_statement(
            new, old, path=path, digest=self.image_digest(new.image, facts.tree, max_size),
            context=self.context, commit=facts.oid)

    def image_digest(self, image: str, tree: str, max_size: int) -> str | None:
        """The SHA-512 of ``image`` in the list of ``tree`` that carries it (indexed trees)."""
        for blob in sorted(self.cache.blobs_with_image(image)):
            found = self.cache.list_facts(blob)
            if found is None:
                continue
            path = layout.list_path(found.identifier)
            current = self.source.entry(tree, path)
            if current is not None and current.oid == blob:
                return attestations.image_digest(self.source.blob(blob, max_size), image,
                                                 source=path, max_size=max_size)
        return None

    def _check_list(self, list_id: str, parent: CommitFacts, facts: CommitFacts,
                    policy: Policy) -> None:
        path, sig_path = layout.list_path(list_id), layout.sig_path(list_id)
        entry, sig_entry = lists.check_pair(
            self.source.entry(facts.tree, path), self.source.entry(facts.tree, sig_path),
            path=path, sig_path=sig_path, commit=facts.oid)
        max_size = policy.limits.max_file_size
        try:
            new = self.facts(entry.oid, path=path, max_size=max_size)
        except InvalidDocumentError as exc:
            raise lists.format_error(exc, commit=facts.oid, path=path) from exc
        old_entry = self.source.entry(parent.tree, path)
        old = None
        if old_entry is not None and old_entry.oid != entry.oid:
            old = self.facts(old_entry.oid, path=path, max_size=max_size)
        lists.check_content(new, old, list_id=list_id, limits=policy.limits,
                            context=self.context, commit=facts.oid, path=path)
        key_id = self._list_signer(policy, lists.allowed_keys(policy, path, self.context),
                                   entry.oid, sig_entry.oid, commit=facts.oid, path=sig_path)
        lists.check_binding(policy, key_id, new, commit=facts.oid, path=path)

    def _list_signer(self, policy: Policy, allowed: list[str], blob: str, sig_blob: str,
                     *, commit: str, path: str) -> str:
        max_size = policy.limits.max_file_size
        key_id = lists.list_signer(
            policy, allowed, blob=blob, sig_blob=sig_blob,
            data=lambda: self.source.blob(blob, max_size),
            # Read only if the cache does not know it (pre-verification read it).
            signature=lambda: self.source.blob(sig_blob, max_size), cache=self.cache,
            context=self.context, commit=commit, path=path)
        if not policy.public_key(key_id).timeless:
            self._time_dependent = True
        return key_id

    def _check_unique_images(self, changed: set[str], parent: CommitFacts, facts: CommitFacts,
                             max_size: int) -> None:
        for list_id in sorted(changed):
            path = layout.list_path(list_id)
            entry = self.source.entry(facts.tree, path)
            assert entry is not None
            old = self.source.entry(parent.tree, path)
            # Only a new claim is refused: a list may keep an image that a merge
            # left in two lists (an image conflict) until one of them drops it.
            kept = set(self.facts(old.oid, path=path, max_size=max_size).images) if old else set()
            for image in self.facts(entry.oid, path=path, max_size=max_size).images:
                if image in kept:
                    continue
                lists.check_unique_image(image, self._owner_elsewhere(image, list_id,
                                                                      facts.tree),
                                         commit=facts.oid, path=path)

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
        from gitreg.verify.merge import check_merge_tree, deterministic_merge

        result = deterministic_merge(self, facts.parents)
        check_merge_tree(self.source.entries(facts.tree), result, commit=facts.oid)
        self.cache.mark_tree_indexed(facts.tree)
        return result.equivocations


class _Entries:
    """A tree's entries, read only if the rule iterates them (most states need none)."""

    def __init__(self, source: ObjectSource, tree: str) -> None:
        self.source = source
        self.tree = tree

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.source.entries(self.tree))
