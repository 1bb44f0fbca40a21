"""Fetch every remote of one registry, verify each head, pick the state to apply.

Each remote is fetched into ``refs/gitreg/remotes/<n>/main`` of the
registry's local bare repository and its head judged by the acceptance rule
(``gitreg.gitstore.acceptance``, docs/format.md "Replication") from the last
trusted commit (the first sync verifies from the root commit against the
pinned policy fingerprint). A remote is then:

- ``unreachable``: the fetch failed (skipped);
- ``invalid``: its head broke a rule or shares no history (reported with
  commit and rule, ignored);
- ``stale``: its head is the trusted commit's ancestor or behind another
  valid head (it changes nothing: rollback is impossible);
- ``current``: its head is the newest valid state;
- ``forked``: several valid heads (a fork of the trusted history among
  them) that none contains all of; they are combined by the deterministic
  merge, the same commit every site and replica builds from those heads.

Equivocations (one list at one ``hv:version`` with two contents) found in
the merges verified or built are kept as structured findings, which the sync
records in the site state (``gitreg site status`` shows them).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2

from gitreg.errors import GitregError, RejectedError, UnreachableError
from gitreg.gitstore.acceptance import build_merge, choose, holds, judge_head, merged_heads
from gitreg.gitstore.locks import clear_stale_locks
from gitreg.gitstore.remote import fetch
from gitreg.gitstore.store import RegistryStore
from gitreg.model.policy import fingerprint
from gitreg.site.config import RegistryConfig
from gitreg.site.crash import crash_point
from gitreg.site.records import RemoteState
from gitreg.verify.history import Verifier
from gitreg.verify.merge import Equivocation

MERGE_REF = "refs/gitreg/merged/main"
FETCH_TIMEOUT = 300.0


@dataclass
class RemoteOutcome:
    """How one remote looked at this sync."""

    url: str
    state: RemoteState
    detail: str = ""
    commit: str | None = None
    rule: str | None = None
    findings: list[Equivocation] = field(default_factory=list)
    # Set when the head forked from the trusted history: their merge base.
    fork_base: str | None = None


@dataclass
class RegistryOutcome:
    """The state of one registry to apply, and what each remote contributed."""

    name: str
    trusted: str | None
    target: str | None
    remotes: list[RemoteOutcome] = field(default_factory=list)
    # In the merges verified from the remotes and in the site's own merge.
    equivocations: list[Equivocation] = field(default_factory=list)
    # Why valid heads could not be merged (they are then reported invalid).
    merge_error: str | None = None
    merged: bool = False
    # The sorted parents when ``target`` is this site's own merge.
    merge_parents: tuple[str, ...] = ()
    # What the sync had to repair before it could judge the remotes.
    recovery: list[str] = field(default_factory=list)
    # Set by the sync from the trust core's StateVerdict: why the target state is
    # not applied ("... [rule: policy-expired]"), and messages about inert lists.
    refused: str | None = None
    state_findings: list[str] = field(default_factory=list)
    # Set by the sync's freeze check (gitreg.site.freshness): why the site stays at
    # its trusted state, the verdict as JSON, and heartbeats ignored or skewed.
    freeze: str | None = None
    freshness: dict[str, Any] | None = None
    heartbeat_findings: list[str] = field(default_factory=list)

    @property
    def any_valid(self) -> bool:
        return any(r.state in ("current", "stale", "forked") for r in self.remotes)

    @property
    def any_invalid(self) -> bool:
        return any(r.state == "invalid" for r in self.remotes)


def pinned_fingerprint(registry: RegistryConfig) -> str:
    """The trust root as ``sha256:<hex>``, reading the policy file if a path was given."""
    if registry.trust_root_is_fingerprint:
        return registry.trust_root.lower()
    path = Path(registry.trust_root)
    try:
        return fingerprint(path.read_bytes())
    except OSError as exc:
        raise GitregError(f"registry {registry.name}: cannot read trust root {path}: "
                          f"{exc.strerror or exc}") from None


def open_local_repository(path: Path) -> RegistryStore:
    """The registry's local bare repository (created on first use; never a working tree)."""
    if not (path / "HEAD").exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            pygit2.init_repository(str(path), bare=True, initial_head="main")
        except (pygit2.GitError, OSError) as exc:
            raise GitregError(f"cannot create the local repository {path}: {exc}") from None
    return RegistryStore.open(path)


def fetch_registry(store: RegistryStore, registry: RegistryConfig, verifier: Verifier,
                   trusted: str | None, *, timeout: float = FETCH_TIMEOUT,
                   merge_parents: Sequence[str] = ()) -> RegistryOutcome:
    """Fetch and verify every remote; choose (and if needed merge) the target state.

    The acceptance rule is ``gitreg.gitstore.acceptance`` (docs/format.md,
    "Replication"): a remote that forked from the trusted history is merged,
    never called a rollback. ``merge_parents``: the recorded parents if
    ``trusted`` is the site's own merge, used to rebuild it when the local
    repository lost it.
    """
    outcome = RegistryOutcome(name=registry.name, trusted=trusted, target=trusted)
    clear_stale_locks(store.path)
    if trusted is not None and not has_commit(store, trusted):
        trusted = _recover_trusted(store, registry, verifier, trusted,
                                   merge_parents=merge_parents, outcome=outcome,
                                   timeout=timeout)
        outcome.target = trusted
    valid: dict[str, list[RemoteOutcome]] = {}
    for index, url in enumerate(registry.remotes):
        remote = _fetch_and_verify(store, url, f"r{index}", verifier, trusted=trusted,
                                   timeout=timeout)
        outcome.remotes.append(remote)
        if remote.state == "current" and remote.commit is not None:
            valid.setdefault(remote.commit, []).append(remote)
        outcome.equivocations.extend(remote.findings)
    try:
        # Stale heads too: they bound how far the site's own merge is taken apart.
        heads = [*valid, *(r.commit for r in outcome.remotes if r.state == "stale" and r.commit)]
        choice = choose(store, verifier, trusted, heads)
    except RejectedError as exc:
        # Valid heads that cannot be merged (different registries): keep the trusted state.
        outcome.merge_error = f"the valid heads cannot be merged: {exc.message}"
        for remotes in valid.values():
            for remote in remotes:
                remote.state, remote.detail = "invalid", f"cannot be merged: {exc.message}"
        return outcome
    outcome.target = choice.target
    # Heads the target merges (now, or in an earlier sync of the site's own merge).
    fetched = [r for r in outcome.remotes if r.state in ("current", "stale") and r.commit]
    merged = merged_heads(store, choice, [r.commit for r in fetched if r.commit],
                          provisional=True)
    for remote in fetched:
        head = remote.commit
        assert head is not None
        if head in merged:
            remote.state = "forked"
            remote.detail = f"{remote.detail}; diverged from another head, merged"
        elif remote.state == "current" and head != choice.target \
                and choice.target is not None and holds(store, choice.target, head):
            remote.state = "stale"
            remote.detail = "behind another valid remote"
    if choice.target is not None and (choice.merged or merged):
        # The target is the site's own merge (built now or by an earlier sync).
        _keep_merge(store, choice.target)
        outcome.merged = True
        outcome.merge_parents = tuple(sorted(store.commit(choice.target).parents))
        outcome.equivocations.extend(choice.findings)
    outcome.equivocations = list(dict.fromkeys(outcome.equivocations))
    return outcome


def _keep_merge(store: RegistryStore, merge: str) -> None:
    """Name the site's merge with a ref, so that no git maintenance drops it."""
    try:
        store.repo.references.create(MERGE_REF, pygit2.Oid(hex=merge), force=True)
    except (pygit2.GitError, ValueError) as exc:
        raise GitregError(f"{store.path}: cannot record the merge commit: {exc}") from None


def has_commit(store: RegistryStore, oid: str) -> bool:
    """Whether the local repository holds commit ``oid``."""
    try:
        return store.object_header(oid)[0] == "commit"
    except GitregError:
        return False


def _recover_trusted(store: RegistryStore, registry: RegistryConfig, verifier: Verifier,
                     trusted: str, *, merge_parents: Sequence[str],
                     outcome: RegistryOutcome, timeout: float) -> str | None:
    """Bring back a trusted commit the local repository lacks (repos/ lost or replaced).

    Every remote is fetched once. If that brought the commit back, nothing
    else is needed. If it is the site's own merge, it is rebuilt from its
    recorded parents and verified from the pinned trust root; it must come
    out as the very same commit. Otherwise the sync starts over as a first
    sync would (verification from the trust root), and says so: the trusted
    commit can then no longer stop a rollback to an older valid state.
    """
    for index, url in enumerate(registry.remotes):
        with contextlib.suppress(GitregError):
            fetch(store.path, url, name=f"r{index}", timeout=timeout)
    missing = f"the trusted commit {trusted[:12]} was not in the local repository {store.path}"
    if has_commit(store, trusted):
        outcome.recovery.append(f"{missing}; fetched it again from the remotes")
        return trusted
    if merge_parents and all(has_commit(store, p) for p in merge_parents):
        try:
            rebuilt, _ = merge_heads(store, verifier, list(merge_parents))
            verifier.verify_range(None, rebuilt)
        except RejectedError as exc:
            rebuilt = None
            missing += f"; rebuilding the merge failed: {exc}"
        if rebuilt == trusted:
            outcome.recovery.append(
                f"{missing}; rebuilt the local merge of "
                f"{', '.join(p[:12] for p in merge_parents)} and verified it again from "
                "the trust root")
            return trusted
        if rebuilt is not None:
            missing += f"; the merge of its recorded parents is {rebuilt[:12]}, not it"
        with contextlib.suppress(KeyError, pygit2.GitError):
            store.repo.references.delete(MERGE_REF)
    elif merge_parents:
        missing += "; no remote has the parents of the site's merge any more"
    outcome.recovery.append(f"{missing}; every remote was verified again from the pinned "
                            "trust root, as on a first sync")
    return None


def prepare_dry_run(repositories: Path, scratch: Path, name: str) -> None:
    """Set up ``scratch`` so a dry run of registry ``name`` changes nothing under ``repositories``.

    The scratch repository borrows the real one's objects read-only (git's
    alternates) and starts from copies of its ``refs/gitreg/`` refs, so the
    dry run fetches only what is new and writes objects, refs and merges in
    ``scratch``; the verification and list caches beside it are copied.
    """
    real = repositories / f"{name}.git"
    target = scratch / f"{name}.git"
    try:
        pygit2.init_repository(str(target), bare=True, initial_head="main")
        if not (real / "HEAD").exists():
            return
        info = target / "objects" / "info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "alternates").write_text(f"{(real / 'objects').absolute()}\n", encoding="utf-8")
        source = pygit2.Repository(str(real))
        copy = pygit2.Repository(str(target))
        for ref in source.references:
            if ref.startswith("refs/gitreg/"):
                copy.references.create(ref, source.references[ref].resolve().target, force=True)
        # No sync is writing them (the caller holds the sync lock): a plain
        # copy of a database and its WAL is a consistent snapshot.
        for derived in repositories.glob(f"{name}.*.sqlite"):
            for part in (derived, Path(f"{derived}-wal")):
                if part.exists():
                    shutil.copyfile(part, scratch / part.name)
    except (pygit2.GitError, KeyError, ValueError, OSError) as exc:
        raise GitregError(f"cannot prepare a dry run of registry {name} from {real}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None


def _fetch_and_verify(store: RegistryStore, url: str, name: str, verifier: Verifier, *,
                      trusted: str | None, timeout: float) -> RemoteOutcome:
    try:
        # Its heartbeats come along, for the freeze check (gitreg.site.freshness).
        head = fetch(store.path, url, name=name, timeout=timeout, heartbeats=True).new
    except UnreachableError as exc:
        return RemoteOutcome(url, "unreachable", exc.message)
    except RejectedError as exc:
        return RemoteOutcome(url, "invalid", exc.message, rule="objects")
    except GitregError as exc:
        # Any other git failure (a timeout, a broken server): nothing usable came.
        return RemoteOutcome(url, "unreachable", exc.message)
    crash_point("fetch")
    verdict = judge_head(store, verifier, trusted, head)
    if verdict.verdict == "invalid":
        return RemoteOutcome(url, "invalid", verdict.detail, commit=verdict.commit,
                             rule=verdict.rule)
    state: RemoteState = "stale" if verdict.verdict == "stale" else "current"
    return RemoteOutcome(url, state, verdict.detail, commit=head,
                         findings=verdict.findings, fork_base=verdict.fork_base)


def merge_heads(store: RegistryStore, verifier: Verifier, heads: list[str],
                ) -> tuple[str, list[str]]:
    """Build, store and verify the deterministic merge of verified ``heads``."""
    merge, findings = build_merge(store, verifier, heads)
    _keep_merge(store, merge)
    return merge, [f.describe() for f in findings]
