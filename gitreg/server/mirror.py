"""`gitreg mirror`: a verifying copy of a registry that any static web server can serve.

A mirror is a bare repository whose ``main`` only ever names a verified
state: each upstream's ``main`` is fetched, judged by the acceptance rule
(``gitreg.gitstore.acceptance``) from the mirror's own ``main``, and the
mirror moves to the newest valid state (merging diverged upstreams
deterministically, the same commit the replicas and sites compute). Like a
site, the mirror holds its state provisionally: its own merge gives way to
what the replicas converge on. After each sync ``git update-server-info``
refreshes the files a dumb-HTTP client reads, so ``python3 -m http.server``,
nginx or a CDN serves the directory as it is. A forged upstream head changes
nothing and is reported; its tracking ref is dropped, so the mirror never
advertises it.
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
from gitreg.server.hook import CACHE_FILE, MAIN, TRUST_ROOT_KEY
from gitreg.server.upstreams import (
    UpstreamOutcome,
    exclusive,
    fetch_and_judge,
    settle,
    stored_urls,
    tracking_name,
)

UPSTREAM_KEY = "gitreg.upstream"
UPSTREAM_REF_PREFIX = "refs/gitreg/upstreams"
LOCK_FILE = Path("gitreg") / "mirror-sync.lock"
FETCH_TIMEOUT = 300.0


@dataclass
class MirrorReport:
    repository: str
    before: str | None
    after: str | None
    upstreams: list[UpstreamOutcome] = field(default_factory=list)
    merged: bool = False
    # As ``equivocation_json`` shows them (path, version, blobs, commits, chosen).
    equivocations: list[dict[str, Any]] = field(default_factory=list)
    # The upstreams' heartbeats: carried, older, or invalid (gitreg.server.heartbeat.carry).
    heartbeats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 if an upstream served an invalid head, 3 if none was usable, else 0."""
        if any(u.state == "invalid" for u in self.upstreams):
            return EXIT_REJECTED
        if not any(u.state not in ("unreachable",) for u in self.upstreams):
            return EXIT_OPERATIONAL
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"repository": self.repository, "before": self.before, "after": self.after,
                "advanced": self.after != self.before, "merged": self.merged,
                "equivocations": self.equivocations, "exit_code": self.exit_code,
                "heartbeats": self.heartbeats,
                "upstreams": [{"url": u.url, "state": u.state, "detail": u.detail,
                               "commit": u.commit, "rule": u.rule, "fork_base": u.fork_base}
                              for u in self.upstreams]}


def _git(args: list[str | Path], what: str) -> str:
    from gitreg.gitstore.command import GitCommandError, run_git

    run = run_git(args, timeout=120, what=what)
    if run.returncode != 0:
        raise GitCommandError(f"{what}: `git {' '.join(map(str, args))}` failed: "
                              f"{run.stderr.strip()}", stderr=run.stderr)
    return run.stdout


def init_mirror(path: Path, upstreams: Sequence[str], trust_root: str) -> None:
    """Create (or reconfigure) the mirror repository ``path``; refs are never touched."""
    import re

    path = path.expanduser().absolute()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", trust_root.lower()):
        raise UsageError(f"--trust-root {trust_root!r} is not sha256:<64 hex digits>",
                         hint="the fingerprint `gitreg init` printed (or `gitreg verify` shows)")
    if not upstreams:
        raise UsageError("give at least one --from URL")
    if path.exists() and not (path / "HEAD").exists() \
            and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{path}: exists and is not a bare Git repository")
    if not (path / "HEAD").exists():
        _git(["init", "--quiet", "--bare", "--initial-branch=main", path], str(path))
    existing = _git(["-C", path, "config", "--default", "", "--get", TRUST_ROOT_KEY],
                    str(path)).strip()
    if existing and existing != trust_root.lower():
        raise UsageError(f"{path}: already mirrors the registry with trust root {existing}",
                         hint="a mirror follows one registry; create another for this one")
    _git(["-C", path, "config", TRUST_ROOT_KEY, trust_root.lower()], str(path))
    from gitreg.gitstore.command import absolute_remote, run_git

    # Exit status 5 when there is nothing to unset: fine on a first init.
    run_git(["-C", path, "config", "--unset-all", UPSTREAM_KEY], timeout=60, what=str(path))
    for url in dict.fromkeys(absolute_remote(u, Path.cwd()) for u in upstreams):
        _git(["-C", path, "config", "--add", UPSTREAM_KEY, url], str(path))
    # Nobody pushes to a mirror; dumb-HTTP clients need the info files at once.
    _git(["-C", path, "config", "receive.denyNonFastForwards", "true"], str(path))
    _git(["-C", path, "update-server-info"], str(path))


def upstreams_of(path: Path) -> list[str]:
    """The upstream URLs stored by ``gitreg mirror init`` (``git config gitreg.upstream``)."""
    return stored_urls(path, UPSTREAM_KEY)


def upstream_ref(url: str) -> tuple[str, str]:
    name = tracking_name("up", url)
    return name, f"{UPSTREAM_REF_PREFIX}/{name}/main"


def sync_mirror(path: Path, *, timeout: float = FETCH_TIMEOUT) -> MirrorReport:
    """Fetch every upstream, verify, advance ``main`` to the newest valid state."""
    from gitreg.gitstore.acceptance import choose, equivocation_json
    from gitreg.gitstore.locks import clear_stale_locks
    from gitreg.gitstore.remote import remote_ref
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
        pinned = str(store.repo.config[TRUST_ROOT_KEY])
    except (GitregError, KeyError):
        raise UsageError(f"{path}: not a gitreg mirror",
                         hint="create it with `gitreg mirror init PATH --from URL "
                              "--trust-root sha256:...`") from None
    urls = upstreams_of(path)
    if not urls:
        raise UsageError(f"{path}: no upstreams configured",
                         hint="add them with `gitreg mirror init PATH --from URL ...`")
    with exclusive(path, LOCK_FILE, "another mirror sync is running"):
        clear_stale_locks(path)
        before = store.ref(MAIN)
        report = MirrorReport(str(path), before, before)
        cache = SqliteCache(path / CACHE_FILE, trust_root=pinned)
        try:
            verifier = Verifier(store, cache, context=VerifyContext.for_site(utcnow()),
                                pinned_policy=pinned)
            judged = fetch_and_judge(path, store, verifier, before, urls,
                                     name_of=lambda url: upstream_ref(url)[0],
                                     timeout=timeout)
            report.upstreams = judged.outcomes
            for name in judged.refused:
                # Never advertise a forged head (info/refs lists every ref).
                _git(["-C", path, "update-ref", "-d", remote_ref(name)], str(path))
            choice = choose(store, verifier, before, judged.heads)
        finally:
            cache.close()
        report.merged = choice.merged
        report.equivocations = [equivocation_json(f) for f in
                                dict.fromkeys([*judged.findings, *choice.findings])]
        if choice.target is not None and choice.target != before:
            expected = before or "0" * 40
            _git(["-C", path, "update-ref", "-m", "gitreg mirror sync", MAIN, choice.target,
                  expected], str(path))
            report.after = choice.target
            crash_point("mirror-advanced")
        settle(store, report.upstreams, choice, applied=True, provisional=True)
        # Judged under the policy of the new main; dumb HTTP serves them after this.
        report.heartbeats = carry(path, store, VerifyContext.for_site(utcnow()))
        _git(["-C", path, "update-server-info"], str(path))
    return report
