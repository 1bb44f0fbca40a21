"""Pushing ``main`` to every replica the working copy knows (its git remotes).

Each remote answers on its own: accepted, rejected (with the hook's
message), or unreachable. One bad replica never stops the push to the others.
A replica that moved (git's ``fetch first``: another endorser pushed there)
is fetched, its head judged by the acceptance rule from the local ``main``,
and merged deterministically (no signature needed); ``main`` is pushed again
to every replica. When that cannot be done safely, the verdict says exactly
what to do instead. The next ``publish`` does not build on that merge: it
first gives way to the replicas' canonical state (``give_way``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gitreg.errors import EXIT_OK, EXIT_OPERATIONAL, EXIT_REJECTED, GitregError, UnreachableError
from gitreg.publish.workcopy import BRANCH, WorkingCopy

if TYPE_CHECKING:
    from gitreg.verify.history import Verifier

Status = Literal["accepted", "pending", "rejected", "unreachable", "failed"]
# How many times a push round may merge a replica that moved before giving up.
MAX_ROUNDS = 4
_MOVED = ("fetch first", "non-fast-forward")


@dataclass(frozen=True)
class RemoteVerdict:
    remote: str
    url: str
    status: Status
    summary: str
    message: str = ""

    def describe(self) -> str:
        text = f"{self.remote} ({self.url}): {self.status}"
        if self.summary:
            text += f" {self.summary}"
        if self.message:
            text += "\n  " + self.message.replace("\n", "\n  ")
        return text


def add_replica(copy: WorkingCopy, url: str, name: str | None = None) -> str:
    """Add replica ``url`` as a git remote (``name``, default ``replica-<n>``); its name."""
    import re

    from gitreg.errors import UsageError
    from gitreg.gitstore.command import redact, run_git

    known = dict(remotes(copy))
    if any(u == redact(url) for u in known.values()):
        raise UsageError(f"{redact(url)} is already a replica of {copy.workdir}")
    if name is None:
        number = 1
        while f"replica-{number}" in known:
            number += 1
        name = f"replica-{number}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name) or name in known:
        raise UsageError(f"{name!r} is not a free remote name",
                         hint="use letters, digits, '.', '_' and '-', not an existing remote")
    run = run_git(["-C", copy.workdir, "remote", "add", name, url], timeout=60,
                  what=f"repository {copy.workdir}")
    if run.returncode != 0:
        raise GitregError(f"cannot add remote {name}: {run.stderr.strip()}")
    return name


def remotes(copy: WorkingCopy) -> list[tuple[str, str]]:
    """(name, URL) of every configured git remote, in name order."""
    from gitreg.gitstore.command import redact

    found = []
    for remote in copy.repo.remotes:
        url = remote.push_url or remote.url or ""
        found.append((str(remote.name), redact(str(url))))
    return sorted(found)


def push_main(copy: WorkingCopy, *, notice: Callable[[str], None] | None = None,
              ) -> list[RemoteVerdict]:
    """Push ``main`` to every remote with the git CLI (so the remotes' hooks run).

    A remote that refuses because it moved is merged and pushed again, and so
    is every remote that took the older ``main``; ``notice`` hears each merge.
    A remote that still serves a merge ``main`` already holds is left
    ``pending`` when another remote took ``main``: a merge of it would add
    nothing, and its next ``sync-peers`` gives way to ``main``.
    """
    verdicts: dict[str, RemoteVerdict] = {}
    for _ in range(MAX_ROUNDS):
        head = copy.head()
        pending = [(n, u) for n, u in remotes(copy)
                   if n not in verdicts or verdicts[n].status != "unreachable"]
        refused = []
        for name, url in pending:
            verdict = _push_one(copy, name, url)
            verdicts[name] = verdict
            if verdict.status == "rejected" and any(m in verdict.summary for m in _MOVED):
                refused.append((name, url))
        # Judged after every push of the round, so the order of remotes does not
        # decide whether a replica that gives way later is merged now.
        taken = any(v.status == "accepted" for v in verdicts.values())
        moved = False
        for name, url in refused:
            merged = merge_moved_replica(copy, name, url, defer=taken)
            if merged.status == "accepted":
                if notice:
                    notice(merged.message)
                moved = True
            else:
                verdicts[name] = merged
        if not moved and copy.head() == head:
            break
    return [verdicts[n] for n, _ in remotes(copy) if n in verdicts]


def _push_one(copy: WorkingCopy, name: str, url: str) -> RemoteVerdict:
    from gitreg.gitstore.remote import push

    try:
        result = push(copy.workdir, name, BRANCH)
    except UnreachableError as exc:
        return RemoteVerdict(name, url, "unreachable", "", exc.message)
    except GitregError as exc:
        return RemoteVerdict(name, url, "failed", "", exc.message)
    return RemoteVerdict(name, url, "accepted" if result.accepted else "rejected",
                         result.summary, result.message)


def merge_moved_replica(copy: WorkingCopy, name: str, url: str, *,
                        defer: bool = False) -> RemoteVerdict:
    """Fetch remote ``name``, verify its head and merge it into ``main``.

    ``accepted`` (with a message) when ``main`` now contains the remote's
    head; otherwise ``rejected`` with the reason and the commands to run.
    ``defer`` (another remote took ``main``): a head that ``main`` already
    holds is not merged but left ``pending``.
    """
    from gitreg.gitstore.acceptance import choose, holds, judge_head
    from gitreg.gitstore.remote import fetch

    by_hand = (f"git -C {copy.workdir} pull --no-rebase {name} {BRANCH}, check the "
               f"result with `gitreg verify`, then `git push {name} {BRANCH}`")
    try:
        head = fetch(copy.git_dir, name, name=name).new
    except GitregError as exc:
        return RemoteVerdict(name, url, "rejected", "(fetch first)",
                             f"{name} moved and could not be fetched: {exc.message}; "
                             f"fetch it later and push again ({by_hand})")
    local = copy.head()
    assert local is not None
    with verifier_for(copy) as verifier:
        verdict = judge_head(copy.store, verifier, local, head)
        if not verdict.valid:
            return RemoteVerdict(name, url, "rejected", "(fetch first)",
                                 f"{name} moved to {head[:12]}, which is not a valid "
                                 f"successor of your main: {verdict.detail}; not merged. "
                                 "Tell the replica's operator; the other replicas have "
                                 "your commit")
        if defer and holds(copy.store, local, head):
            return RemoteVerdict(name, url, "pending", "(behind)",
                                 f"{name} still serves {head[:12]}, a merge your main "
                                 f"{local[:12]} already holds; the other replicas have "
                                 f"your commit, and {name} takes it at its next `gitreg "
                                 "server sync-peers`")
        choice = choose(copy.store, verifier, local, [head], covered=False)
    target = choice.target
    if target is None or target == local:
        return RemoteVerdict(name, url, "rejected", "(fetch first)",
                             f"{name} moved to {head[:12]} but there is nothing to merge")
    drafts = drafts_in_the_way(copy, local, target)
    if drafts:
        return RemoteVerdict(name, url, "rejected", "(fetch first)",
                             f"{name} moved to {head[:12]} and changed "
                             f"{', '.join(drafts)}, which you have unpublished drafts of; "
                             f"publish or discard them, then run `gitreg publish --push` "
                             f"again (or by hand: {by_hand})")
    advance_working_copy(copy, local, target, "merge a replica that moved")
    how = (f"merged it deterministically into {target[:12]}" if choice.merged
           else f"fast-forwarded main to {target[:12]}")
    return RemoteVerdict(name, url, "accepted", "",
                         f"{name} had moved to {head[:12]} ({verdict.verdict}); {how}")


def _changed_paths(copy: WorkingCopy, old: str | None, new: str) -> dict[str, str | None]:
    store = copy.store
    old_tree = store.commit(old).tree if old else None
    return {c.path: (c.new.oid if c.new else None)
            for c in store.changes(old_tree, store.commit(new).tree)}


def drafts_in_the_way(copy: WorkingCopy, old: str | None, new: str) -> list[str]:
    """Paths the merge changes whose working-tree file is not what ``old`` published."""
    return sorted(path for path in _changed_paths(copy, old, new)
                  if copy.draft_bytes(path) != copy.published(path))


def advance_working_copy(copy: WorkingCopy, old: str | None, new: str, summary: str) -> None:
    """Files first, then ``main`` (compare-and-swap), then the index, as publish does."""
    from gitreg.publish.publication import move_main, sync_index
    from gitreg.publish.workcopy import write_file_atomic

    for path, blob in _changed_paths(copy, old, new).items():
        if blob is None:
            copy.path(path).unlink(missing_ok=True)
        else:
            copy.path(path).parent.mkdir(parents=True, exist_ok=True)
            write_file_atomic(copy.path(path), copy.store.blob(blob, copy.max_file_size()))
    move_main(copy, old, new, summary)
    sync_index(copy)


@contextmanager
def verifier_for(copy: WorkingCopy) -> Iterator[Verifier]:
    """The trust core as the working copy judges replicas' heads (its verdict cache kept)."""
    from gitreg.gitstore.verify_cache import SqliteCache
    from gitreg.model.dates import utcnow
    from gitreg.publish.publication import VERIFY_CACHE
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    cache = SqliteCache(copy.git_dir / VERIFY_CACHE)
    try:
        yield Verifier(copy.store, cache, context=VerifyContext.for_site(utcnow()))
    finally:
        cache.close()


def exit_code(verdicts: list[RemoteVerdict]) -> int:
    """1 if any remote rejected, 3 if any could not be reached (or failed), else 0
    (a ``pending`` remote included: another one took ``main``)."""
    if any(v.status == "rejected" for v in verdicts):
        return EXIT_REJECTED
    if any(v.status in ("unreachable", "failed") for v in verdicts):
        return EXIT_OPERATIONAL
    return EXIT_OK
