"""What `gitreg server sync-peers` and `gitreg mirror sync` share.

Both keep a list of URLs in the repository's git config, hold one lock per
repository, and fetch each URL's ``main`` into its own tracking ref and judge
it by the acceptance rule (``gitreg.gitstore.acceptance``) from the
repository's own ``main``; they differ only in how they choose and move.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gitreg.errors import GitregError, RejectedError, UnreachableError, UsageError

if TYPE_CHECKING:
    from gitreg.gitstore.acceptance import Choice
    from gitreg.gitstore.store import RegistryStore
    from gitreg.verify.history import Verifier
    from gitreg.verify.merge import Equivocation


@dataclass
class UpstreamOutcome:
    """How one peer or upstream looked, judged against the repository's ``main``.

    ``state``, once ``settle`` ran: ``current`` (its head is ``main`` now),
    ``stale`` (behind ``main``), ``forked`` (diverged, merged into ``main``),
    ``invalid``, ``unreachable``; ``ahead`` only when a racing push kept
    ``main`` from moving to it.
    """

    url: str
    state: str
    detail: str
    commit: str | None = None
    rule: str | None = None
    fork_base: str | None = None


@dataclass
class JudgedUpstreams:
    outcomes: list[UpstreamOutcome] = field(default_factory=list)
    heads: list[str] = field(default_factory=list)  # valid or stale: what to choose from
    refused: list[str] = field(default_factory=list)  # fetch names of invalid heads
    findings: list[Equivocation] = field(default_factory=list)


def stored_urls(path: Path, key: str) -> list[str]:
    """The URLs stored under ``git config --get-all KEY`` of repository ``path``."""
    from gitreg.gitstore.command import run_git

    run = run_git(["-C", path, "config", "--get-all", key], timeout=60, what=str(path))
    return [line.strip() for line in run.stdout.splitlines() if line.strip()]


def tracking_name(prefix: str, url: str) -> str:
    """A fetch name for ``url`` that does not depend on the order of the URLs."""
    return f"{prefix}-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


@contextmanager
def exclusive(path: Path, lock_file: Path, busy: str, hint: str = "") -> Iterator[None]:
    """One run at a time per repository; a second one stops at once with ``busy``."""
    lock = path / lock_file
    lock.parent.mkdir(exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"{path}: {busy}", hint=hint) from None
        yield


def fetch_and_judge(path: Path, store: RegistryStore, verifier: Verifier, trusted: str | None,
                    urls: Sequence[str], *, name_of: Callable[[str], str],
                    timeout: float) -> JudgedUpstreams:
    """Fetch every URL's ``main`` and judge it against ``trusted``."""
    from gitreg.gitstore.acceptance import judge_head
    from gitreg.gitstore.remote import fetch

    judged = JudgedUpstreams()
    for url in urls:
        name = name_of(url)
        try:
            # Heartbeats are staged too; the caller carries the valid ones.
            head = fetch(path, url, name=name, timeout=timeout, heartbeats=True).new
        except UnreachableError as exc:
            judged.outcomes.append(UpstreamOutcome(url, "unreachable", exc.message))
            continue
        except RejectedError as exc:
            judged.outcomes.append(UpstreamOutcome(url, "invalid", exc.message, rule="objects"))
            continue
        except GitregError as exc:
            judged.outcomes.append(UpstreamOutcome(url, "unreachable", exc.message))
            continue
        verdict = judge_head(store, verifier, trusted, head)
        judged.outcomes.append(UpstreamOutcome(url, verdict.verdict, verdict.detail,
                                               commit=verdict.commit or head,
                                               rule=verdict.rule,
                                               fork_base=verdict.fork_base))
        judged.findings.extend(verdict.findings)
        if verdict.valid or verdict.verdict == "stale":
            judged.heads.append(head)
        else:
            judged.refused.append(name)
    return judged


def settle(store: RegistryStore, outcomes: Sequence[UpstreamOutcome], choice: Choice, *,
           applied: bool, provisional: bool) -> None:
    """Restate each judged head against the state ``main`` moved to (see UpstreamOutcome).

    ``applied``: ``main`` now names ``choice.target`` (no racing push).
    ``provisional``: a mirror, whose own earlier merge also counts as merging.
    """
    from gitreg.gitstore.acceptance import holds, merged_heads

    usable = ("current", "ahead", "stale", "forked")
    for outcome in outcomes:
        if outcome.state == "fork":
            outcome.state = "forked"
    heads = [o.commit for o in outcomes if o.commit and o.state in usable]
    merged = merged_heads(store, choice, heads, provisional=provisional)
    target = choice.target
    if not applied or target is None:
        return
    for outcome in outcomes:
        head = outcome.commit
        if outcome.state not in usable or head is None:
            continue
        # A head at the old ``main`` did not fork: it is merely behind now.
        if head in merged and outcome.state != "current":
            outcome.state, outcome.detail = "forked", f"{outcome.detail}; merged"
        elif head == target:
            if outcome.state == "ahead":
                outcome.detail = f"{outcome.detail}; fast-forwarded to it"
            outcome.state = "current"
        elif holds(store, target, head):
            if outcome.state != "stale":
                outcome.detail = ("behind the new main" if store.is_descendant(target, head)
                                  else "a merge of commits the new main holds")
            outcome.state = "stale"
