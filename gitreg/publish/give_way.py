"""Before publishing: a ``main`` that is gitreg's own merge gives way to the canonical state.

``gitreg publish --push`` merges a replica that moved *forward* into the
local ``main`` (what it pushes must descend from the replica's ``main``).
Replicas, mirrors and sites do not keep such a merge: they take the
canonical state (``gitreg.gitstore.acceptance.choose``), in which a merge
that no signed commit builds on gives way to its parents. If the endorser's
next signed commit were built on the forward merge, that merge would enter
history for good, and two endorsers refused in one round would leave two
merges. So ``publish`` first moves such a ``main`` to what the replicas
hold:

- only a ``main`` that is an unsigned merge made by gitreg
  (``MERGE_IDENTITY``) moves; a signed commit or a hand-made merge stays;
- the candidates are the replicas' ``main`` heads: fetched first (one fetch
  each, an unreachable replica reported and skipped) for ``publish
  --push``, the remote-tracking refs already there for plain ``publish``;
- each is verified from the local ``main`` as a moved replica is
  (``judge_head``), and only those that *hold* the local ``main``
  (``holds``: they descend from it or from all of its signed tips; even an
  ancestor does, when the merge added nothing to it) count;
- the new ``main`` is the canonical state of those heads and the local
  ``main`` (``choose(covered=True)``): when several replicas hold it, the
  state every replica converges on, so no replica wins by its name or its
  order; it must hold the local ``main`` too, or nothing moves;
- the working tree follows as after a merge; a draft of a file the move
  changes refuses the whole publication, naming the files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gitreg.errors import GitregError, UsageError
from gitreg.gitstore.store import RegistryStore
from gitreg.publish.workcopy import BRANCH, WorkingCopy
from gitreg.verify.history import Verifier

Notice = Callable[[str], None]
# git's own remote-tracking ref, which `git fetch` and `git push` keep current.
_GIT_TRACKING = "refs/remotes/{name}/" + BRANCH


@dataclass(frozen=True)
class Offer:
    """One replica's ``main`` as the working copy sees it (``head`` None: not known)."""

    remote: str
    head: str | None
    problem: str = ""


@dataclass
class Successor:
    """What the verified offers make of the local ``main``."""

    target: str | None  # the canonical state to move to; None: stay
    holders: tuple[str, ...] = ()  # the offered heads that hold the local main
    invalid: dict[str, str] = field(default_factory=dict)  # head -> why


def canonical_successor(store: RegistryStore, verifier: Verifier, local: str,
                        heads: Iterable[str]) -> Successor:
    """The canonical state of the valid ``heads`` that hold ``local``, if it moves ``local``."""
    from gitreg.gitstore.acceptance import choose, holds, judge_head

    holders: list[str] = []
    invalid: dict[str, str] = {}
    for head in dict.fromkeys(heads):
        verdict = judge_head(store, verifier, local, head)
        if verdict.verdict == "invalid":
            invalid[head] = verdict.detail
        # Any other head counts if it holds the merge; a stale one (an ancestor)
        # holds a merge that adds nothing to it.
        elif holds(store, head, local):
            holders.append(head)
    if not holders:
        return Successor(None, invalid=invalid)
    choice = choose(store, verifier, local, holders, covered=True)
    target = choice.target
    if target is None or target == local or not holds(store, target, local):
        target = None
    return Successor(target, tuple(holders), invalid)


def offers(copy: WorkingCopy, *, fetch: bool) -> list[Offer]:
    """Every replica's ``main``: fetched now (``fetch``), else the tracking refs there are."""
    from gitreg.gitstore.remote import fetch as fetch_main
    from gitreg.publish.replicas import remotes

    found: list[Offer] = []
    for name, _url in remotes(copy):
        if fetch:
            try:
                found.append(Offer(name, fetch_main(copy.git_dir, name, name=name).new))
            except GitregError as exc:
                found.append(Offer(name, None, exc.message))
            continue
        heads = [_tracking(copy, name, gitreg=True), _tracking(copy, name, gitreg=False)]
        found.extend(Offer(name, head) for head in dict.fromkeys(heads) if head is not None)
    return found


def _tracking(copy: WorkingCopy, name: str, *, gitreg: bool) -> str | None:
    """Remote ``name``'s ``main`` as gitreg's fetch or git's own last saw it (None: never)."""
    from gitreg.gitstore.remote import remote_ref

    try:  # a remote name no ref can carry has never been fetched
        return copy.store.ref(remote_ref(name) if gitreg else _GIT_TRACKING.format(name=name))
    except UsageError:
        return None


def give_way(copy: WorkingCopy, *, fetch: bool, inform: Notice | None = None,
             warn: Notice | None = None) -> str | None:
    """Move a ``main`` that is gitreg's merge to the canonical state the replicas hold.

    Returns the ``main`` to build on (moved or not; None only without a
    commit). Raises ``UsageError`` (nothing changed) when the move would
    overwrite drafts.
    """
    from gitreg.gitstore.acceptance import is_gitreg_merge
    from gitreg.publish.replicas import advance_working_copy, drafts_in_the_way, verifier_for

    local = copy.head()
    if local is None or not is_gitreg_merge(copy.store, local):
        return local
    offered = offers(copy, fetch=fetch)
    for offer in offered:
        if offer.head is None and warn:
            warn(f"{offer.problem}; skipped")  # the problem names the remote
    heads = [o.head for o in offered if o.head is not None]
    if not heads:
        return local
    with verifier_for(copy) as verifier:
        successor = canonical_successor(copy.store, verifier, local, heads)
    for offer in offered:
        if offer.head in successor.invalid and warn:
            warn(f"replica {offer.remote}: main {offer.head[:12]} is not a valid successor "
                 f"of your main: {successor.invalid[offer.head]}; not followed")
    target = successor.target
    if target is None:
        return local
    names = sorted({o.remote for o in offered if o.head in successor.holders})
    drafts = drafts_in_the_way(copy, local, target)
    if drafts:
        raise UsageError(
            f"{copy.workdir}: main is {local[:12]}, the merge gitreg made of a replica that "
            f"moved; {', '.join(names)} hold it in {target[:12]}, which changes "
            f"{', '.join(drafts)}, which you have unpublished drafts of; nothing was "
            "published",
            hint=f"keep a copy of those drafts, discard them (git -C {copy.workdir} checkout "
                 f"-- {' '.join(drafts)}), run `gitreg publish` again (main moves to "
                 f"{target[:12]}), then redo the changes")
    advance_working_copy(copy, local, target, "give way to the replicas' canonical state")
    if inform:
        inform(f"main was {local[:12]}, the merge gitreg made of a replica that moved; "
               f"{', '.join(names)} hold it in {target[:12]}: main moved there first, so "
               "the new commit builds on the replicas' state, not on that merge")
    return target
