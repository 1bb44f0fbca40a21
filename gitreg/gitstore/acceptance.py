"""The acceptance rule for fetched heads, shared by sites, replicas and mirrors.

docs/format.md ("Replication") states the rule; in short, given the trusted
commit T of a local repository and a fetched head H:

- *stale*: H is T or an ancestor of T (nothing to do, reported);
- *valid*: every commit from the merge base of T and H to H verifies. If H
  contains T it is a fast-forward; otherwise it is a *fork*, merged with the
  trusted state, never a rollback (the merge takes the highest version per
  path);
- *invalid*: a commit fails, or H shares no history with T.

The new state is canonical: the deterministic merge of the newest signed
commits the heads and T hold (``signed_tips``: a merge that no signed commit
builds on gives way to its parents), or the one of them that holds all
others; an endorser's push merges forward instead (and its working copy gives
way to the canonical state before it signs again: gitreg/publish/give_way.py).
The merge commit is built from its inputs only (sorted parents, fixed
identity, the newest parent's time, a message naming the parent count), so
every party that merges the same heads writes the same commit id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pygit2

from gitreg.errors import GitregError, PolicyViolationError, RejectedError
from gitreg.gitstore.commits import write_tree
from gitreg.gitstore.store import RegistryStore
from gitreg.verify import layout
from gitreg.verify.history import Verifier, VerifyReport
from gitreg.verify.merge import Equivocation, deterministic_merge

Verdict = Literal["current", "ahead", "stale", "fork", "invalid"]
MERGE_IDENTITY = ("gitreg", "merge@gitreg.invalid")


@dataclass
class HeadVerdict:
    """How one fetched head relates to the trusted commit."""

    head: str
    verdict: Verdict
    detail: str
    rule: str | None = None
    # Where a fork left the trusted history (its merge base with the trusted commit).
    fork_base: str | None = None
    # The commit a rule failed at (the head itself if none is named).
    commit: str | None = None
    # Equivocations in the merges of the verified range (see range_findings).
    findings: list[Equivocation] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.verdict in ("current", "ahead", "fork")

    @property
    def equivocations(self) -> list[str]:
        return [f.describe() for f in self.findings]


@dataclass
class Choice:
    """The state to advance to and how it was reached."""

    target: str | None
    merged: bool = False
    parents: tuple[str, ...] = ()  # the merge's parents when ``merged``
    # The heads that are the target or were merged into it.
    maximal: tuple[str, ...] = ()
    findings: list[Equivocation] = field(default_factory=list)


def judge_head(store: RegistryStore, verifier: Verifier, trusted: str | None,
               head: str) -> HeadVerdict:
    """Classify ``head`` against ``trusted``, verifying its new commits."""
    try:
        if trusted is None:
            report = verifier.verify_range(None, head)
            return HeadVerdict(head, "ahead", f"verified {len(report.verified)} commit(s) "
                               "from the trust root",
                               findings=range_findings(store, verifier, report))
        if head == trusted:
            return HeadVerdict(head, "current", "at the trusted commit")
        if store.is_descendant(trusted, head):
            return HeadVerdict(head, "stale", f"behind the trusted commit {trusted[:12]}")
        if store.is_descendant(head, trusted):
            report = verifier.verify_range(trusted, head)
            return HeadVerdict(head, "ahead", f"verified {len(report.verified)} new commit(s)",
                               findings=range_findings(store, verifier, report))
        base = store.merge_base((trusted, head))
        if base is None:
            return HeadVerdict(head, "invalid",
                               f"head {head[:12]} shares no history with the trusted commit "
                               f"{trusted[:12]}", rule="unrelated-history", commit=head)
        report = verifier.verify_range(base, head)
    except PolicyViolationError as exc:
        # The rule is shown apart from the detail (``rule``), once.
        return HeadVerdict(head, "invalid", exc.located(commit=head), rule=exc.rule,
                           commit=exc.commit or head)
    except RejectedError as exc:
        return HeadVerdict(head, "invalid", f"head {head[:12]}: {exc.message}",
                           rule=type(exc).__name__, commit=head)
    return HeadVerdict(head, "fork",
                       f"forked from the trusted history at {base[:12]}; verified "
                       f"{len(report.verified)} commit(s) since", fork_base=base,
                       findings=range_findings(store, verifier, report))


def range_findings(store: RegistryStore, verifier: Verifier,
                   report: VerifyReport) -> list[Equivocation]:
    """The equivocations of the merges ``report`` verified, as structured findings.

    The verifier reports them as text only (its report is part of the rule
    modules); the merges that had any are merged again here, from the
    verifier's warm caches, to name path, version, blobs and commits.
    """
    if not report.equivocations:
        return []
    found: list[Equivocation] = []
    for oid in report.verified:
        parents = store.commit(oid).parents
        if len(parents) > 1:
            found.extend(deterministic_merge(verifier, tuple(parents)).findings)
    return list(dict.fromkeys(found))


def equivocation_json(finding: Equivocation) -> dict[str, Any]:
    """An equivocation as the ``--json`` reports show it."""
    list_id = layout.list_id_of(finding.path) if layout.is_list(finding.path) else None
    found: dict[str, Any] = {
        "path": finding.path, "list": list_id, "version": finding.version,
        "blobs": list(finding.blobs), "commits": list(finding.commits),
        "chosen": finding.chosen, "reason": finding.reason, "message": finding.describe()}
    if finding.image is not None:
        found["image"] = finding.image
        found["lists"] = [layout.list_id_of(p) for p in finding.claimants]
    return found


def merged_heads(store: RegistryStore, choice: Choice, heads: Sequence[str], *,
                 provisional: bool) -> set[str]:
    """The heads the chosen state merges (a provisional party's earlier merge included)."""
    if choice.merged:
        return set(choice.maximal)
    return own_merge_leaves(store, choice.target, heads) if provisional else set()


def choose(store: RegistryStore, verifier: Verifier, trusted: str | None,
           heads: Iterable[str], *, covered: bool = True) -> Choice:
    """The newest state made of ``trusted`` and ``heads``; merge if they diverged.

    ``heads``: every fetched head that is not invalid, stale ones included.

    ``covered`` (sites, mirrors, replicas): the state is canonical, a
    function of the commits offered only: the deterministic merge of the
    newest *signed tips* (``signed_tips``), or the one tip that holds all
    others. A merge carries nothing signed (its tree is a function of its
    parents), so a merge that no signed commit builds on gives way to its
    parents: the merge an endorser made of a replica's ``main`` and its own
    commit, a replica's merge of another view of the same pushes, a site's
    own merge. Every party that sees the same commits ends on one commit, a
    round of concurrent pushes makes one merge, and nobody merges merges.
    An existing verified merge of exactly those tips is taken as is.

    ``covered=False`` (an endorser's ``publish --push``): what it pushes must
    descend from the replica's ``main``, so every maximal head is merged as
    it is.
    """
    valid = sorted(set(heads))
    if covered:
        offered = {*valid, *([trusted] if trusted is not None else [])}
        return _choose_canonical(store, verifier, offered)
    candidates = set(valid)
    if trusted is not None:
        if all(store.is_descendant(trusted, h) for h in valid):
            return Choice(target=trusted, maximal=(trusted,))
        candidates.add(trusted)
    maximal = maximal_heads(store, candidates)
    if not maximal:
        return Choice(target=None)
    if len(maximal) == 1:
        return Choice(target=maximal[0], maximal=tuple(maximal))
    merge, result = build_merge(store, verifier, maximal)
    return Choice(target=merge, merged=True, parents=tuple(maximal), maximal=tuple(maximal),
                  findings=result)


def _choose_canonical(store: RegistryStore, verifier: Verifier, offered: set[str]) -> Choice:
    """The canonical state of the verified commits ``offered`` (see ``choose``)."""
    tips = maximal_heads(store, signed_tips(store, offered))
    if not tips:
        return Choice(target=None)
    if len(tips) == 1:
        return Choice(target=tips[0], maximal=(tips[0],))
    # A merge of exactly these tips that a party already holds (verified: its
    # tree is their merge) is the state; of two, the larger id, as everywhere.
    existing = [c for c in offered if sorted(store.commit(c).parents) == tips]
    if existing:
        return Choice(target=max(existing), maximal=(max(existing),))
    merge, result = build_merge(store, verifier, tips)
    return Choice(target=merge, merged=True, parents=tuple(tips), maximal=tuple(tips),
                  findings=result)


def signed_tips(store: RegistryStore, commits: Iterable[str]) -> set[str]:
    """The commits that are not merges, reached from ``commits`` through merges only.

    A merge is a function of its parents; what a state holds is its signed
    commits, and the newest of them (those at the end of a chain of merges)
    determine it.
    """
    return _leaves(store, commits, lambda merge: True)


def holds(store: RegistryStore, state: str, head: str) -> bool:
    """Whether ``state`` holds all that ``head`` offers: it descends from it, or
    ``head`` is a merge whose signed tips it descends from (the merge adds nothing)."""
    if state == head or store.is_descendant(state, head):
        return True
    if len(store.commit(head).parents) < 2:
        return False
    return all(t == state or store.is_descendant(state, t)
               for t in signed_tips(store, [head]))


def _expand(store: RegistryStore, commit: str, heads: Sequence[str]) -> set[str]:
    """``commit``, or, if it is a merge no head contains, the leaves of its merges."""
    return _leaves(store, [commit],
                   lambda merge: not any(store.is_descendant(h, merge) for h in heads))


def _leaves(store: RegistryStore, commits: Iterable[str],
            through: Callable[[str], bool]) -> set[str]:
    """What ``commits`` reach by going through the merges ``through`` accepts."""
    found: set[str] = set()
    todo, seen = list(commits), set()
    while todo:
        oid = todo.pop()
        if oid in seen:
            continue
        seen.add(oid)
        parents = store.commit(oid).parents
        if len(parents) > 1 and through(oid):
            todo.extend(parents)
        else:
            found.add(oid)
    return found


def own_merge_leaves(store: RegistryStore, target: str | None,
                     heads: Sequence[str]) -> set[str]:
    """The heads that ``target`` merges, if it is a merge none of ``heads`` contains."""
    if target is None or len(store.commit(target).parents) < 2 \
            or any(store.is_descendant(h, target) for h in heads):
        return set()
    return {h for h in heads if store.is_descendant(target, h)} & _expand(store, target, heads)


def maximal_heads(store: RegistryStore, heads: Iterable[str]) -> list[str]:
    """The heads that no other head descends from, sorted."""
    unique = sorted(set(heads))
    return [h for h in unique if not any(o != h and store.is_descendant(o, h) for o in unique)]


def merge_message(parents: Sequence[str]) -> str:
    return f"Deterministic merge of {len(parents)} diverged registry heads\n"


def is_gitreg_merge(store: RegistryStore, oid: str) -> bool:
    """Whether ``oid`` is an unsigned merge written by gitreg (``build_merge``)."""
    info = store.commit_info(oid)
    return (len(info.parents) > 1 and info.signature is None
            and (info.author.name, info.author.email) == MERGE_IDENTITY
            and (info.committer.name, info.committer.email) == MERGE_IDENTITY)


def build_merge(store: RegistryStore, verifier: Verifier,
                heads: Sequence[str]) -> tuple[str, list[Equivocation]]:
    """Write (idempotently) and verify the deterministic merge commit of ``heads``.

    The heads must be verified already; only the merge commit itself is
    checked here (its tree is the deterministic merge of its parents).
    """
    parents = tuple(sorted(set(heads)))
    result = deterministic_merge(verifier, parents)
    tree = write_tree(store, result.tree)
    when = max(verifier.source.commit(p).committer_time for p in parents)
    signature = pygit2.Signature(*MERGE_IDENTITY, when, 0)
    try:
        oid = store.repo.create_commit(None, signature, signature, merge_message(parents),
                                       pygit2.Oid(hex=tree),
                                       [pygit2.Oid(hex=p) for p in parents])
    except (pygit2.GitError, ValueError) as exc:
        raise GitregError(f"{store.path}: cannot write the merge commit: {exc}") from None
    merge = str(oid)
    verifier.verify_commit(verifier.source.commit(merge))
    return merge, result.findings
