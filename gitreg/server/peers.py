"""`gitreg server sync-peers`: a replica fetches its peers and advances ``main``.

Every peer's ``main`` is fetched into ``refs/gitreg/peers/<id>/main`` and
judged by the acceptance rule (``gitreg.gitstore.acceptance``) from the
replica's own ``main``; the replica then moves ``main`` to the newest valid
state, the canonical one (``gitreg.gitstore.acceptance.choose``): a peer's
head that contains it, or the deterministic merge of the newest signed
commits (usually a descendant of the old ``main``, so a fast-forward). The
one move that is not a fast-forward: a ``main`` that is a merge no signed
commit builds on (an endorser's merge of this ``main`` and a stale commit,
or a merge of another view of the same pushes) gives way to the canonical
merge of the same signed commits and more, so a round of concurrent pushes
yields one merge and replicas never merge their merges.
The move is a compare-and-swap (``git update-ref NEW OLD``):
a push that lands meanwhile makes it fail, nothing is lost, and the next run
merges that push too. Verification is the hook's verifier, judging expiry as
a property of the state (as a site does): a list that expired after a peer
accepted it does not stop the replicas from converging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitreg.errors import (
    EXIT_OK,
    EXIT_OPERATIONAL,
    EXIT_REJECTED,
    GitregError,
    UsageError,
)
from gitreg.gitstore.command import absolute_remote
from gitreg.server.hook import CACHE_FILE, MAIN, TRUST_ROOT_KEY
from gitreg.server.upstreams import (
    UpstreamOutcome,
    exclusive,
    fetch_and_judge,
    settle,
    stored_urls,
    tracking_name,
)

PEER_KEY = "gitreg.peer"
PEER_REF_PREFIX = "refs/gitreg/peers"
LOCK_FILE = Path("gitreg") / "sync-peers.lock"
FETCH_TIMEOUT = 300.0


@dataclass
class PeersReport:
    repository: str
    before: str | None
    after: str | None
    peers: list[UpstreamOutcome] = field(default_factory=list)
    merged: bool = False
    merge_parents: tuple[str, ...] = ()
    equivocations: list[dict[str, Any]] = field(default_factory=list)
    # Why ``main`` did not move to the chosen state (a racing push), if it did not.
    raced: str = ""
    # The peers' heartbeats: carried, older, or invalid (gitreg.server.heartbeat.carry).
    heartbeats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def advanced(self) -> bool:
        return self.after != self.before

    @property
    def exit_code(self) -> int:
        """1 if a peer served an invalid head, 3 if one was unreachable or a push raced."""
        if any(p.state == "invalid" for p in self.peers):
            return EXIT_REJECTED
        if self.raced or any(p.state == "unreachable" for p in self.peers):
            return EXIT_OPERATIONAL
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository, "before": self.before, "after": self.after,
            "advanced": self.advanced, "merged": self.merged,
            "merge_parents": list(self.merge_parents), "raced": self.raced,
            "exit_code": self.exit_code, "equivocations": self.equivocations,
            "heartbeats": self.heartbeats,
            "peers": [{"url": p.url, "state": p.state, "detail": p.detail,
                       "commit": p.commit, "rule": p.rule, "fork_base": p.fork_base}
                      for p in self.peers],
        }


def peer_ref(url: str) -> tuple[str, str]:
    """The fetch name and tracking ref of peer ``url`` (stable whatever the peer order)."""
    name = tracking_name("peer", url)
    return name, f"{PEER_REF_PREFIX}/{name}/main"


def configured_peers(path: Path) -> list[str]:
    """The peer URLs stored by ``gitreg server init --peer`` (``git config gitreg.peer``)."""
    return stored_urls(path, PEER_KEY)


def store_peers(path: Path, peers: Sequence[str]) -> None:
    """Replace the stored peer URLs of the repository ``path``."""
    from gitreg.gitstore.command import run_git

    run_git(["-C", path, "config", "--unset-all", PEER_KEY], timeout=60, what=str(path))
    for url in dict.fromkeys(absolute_remote(p, Path.cwd()) for p in peers):
        run = run_git(["-C", path, "config", "--add", PEER_KEY, url], timeout=60,
                      what=str(path))
        if run.returncode != 0:
            raise GitregError(f"{path}: cannot store peer {url}: {run.stderr.strip()}")


def sync_peers(path: Path, peers: Sequence[str] | None = None, *,
               timeout: float = FETCH_TIMEOUT) -> PeersReport:
    """Fetch every peer, verify, and advance ``main``; see the module docstring."""
    from gitreg.gitstore.acceptance import choose, equivocation_json
    from gitreg.gitstore.locks import clear_stale_locks
    from gitreg.gitstore.store import RegistryStore
    from gitreg.gitstore.verify_cache import SqliteCache
    from gitreg.model.dates import utcnow
    from gitreg.server.heartbeat import carry
    from gitreg.site.crash import crash_point
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    path = path.expanduser().absolute()
    try:
        store = RegistryStore.open(path)
    except GitregError:
        raise UsageError(f"{path}: not a registry server repository") from None
    urls = ([absolute_remote(p, Path.cwd()) for p in peers] if peers
            else configured_peers(path))
    if not urls:
        raise UsageError(f"{path}: no peers to sync from",
                         hint="give --peer URL, or store peers with "
                              "`gitreg server init PATH --from DIR --peer URL`")
    pinned = _config(store, TRUST_ROOT_KEY)
    if pinned is None:
        raise UsageError(f"{path}: no trust root configured (git config {TRUST_ROOT_KEY})",
                         hint="create the repository with `gitreg server init`")
    with exclusive(path, LOCK_FILE, "another sync-peers is running",
                   hint="it converges on its own; the next run picks up the rest"):
        clear_stale_locks(path)
        before = store.ref(MAIN)
        report = PeersReport(str(path), before, before)
        cache = SqliteCache(path / CACHE_FILE, trust_root=pinned)
        try:
            verifier = Verifier(store, cache, context=VerifyContext.for_site(utcnow()),
                                pinned_policy=pinned)
            judged = fetch_and_judge(path, store, verifier, before, urls,
                                     name_of=lambda url: peer_ref(url)[0],
                                     timeout=timeout)
            report.peers = judged.outcomes
            # main moves forward, or off a merge no signed commit builds on
            # (docs/format.md, "Replication"): one merge a round, no merges of merges.
            choice = choose(store, verifier, before, judged.heads)
        finally:
            cache.close()
        report.merged = choice.merged
        report.merge_parents = choice.parents
        # Those of the peers' own merges first, then those of this run's merge.
        report.equivocations = [equivocation_json(f) for f in
                                dict.fromkeys([*judged.findings, *choice.findings])]
        if choice.target is not None and choice.target != before:
            crash_point("peers-merged")
            report.raced = _advance(path, choice.target, before)
            if not report.raced:
                report.after = choice.target
        settle(store, report.peers, choice, applied=not report.raced, provisional=False)
        report.heartbeats = carry(path, store, VerifyContext.for_site(utcnow()))
    return report


def _advance(path: Path, new: str, old: str | None) -> str:
    """Compare-and-swap ``main`` from ``old`` to ``new``; the reason if it moved meanwhile."""
    from gitreg.gitstore.command import run_git

    expected = old if old is not None else "0" * 40
    run = run_git(["-C", path, "update-ref", "-m", "gitreg sync-peers", MAIN, new, expected],
                  timeout=60, what=str(path))
    if run.returncode != 0:
        return (f"main moved while syncing (a push landed): {run.stderr.strip()}; "
                "the next run merges it")
    return ""


def _config(store: Any, key: str) -> str | None:
    try:
        value = store.repo.config[key]
    except KeyError:
        return None
    return str(value) or None
