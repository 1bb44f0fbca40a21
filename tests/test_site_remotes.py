"""Per-remote fetch, verification and classification (gitreg.site.remotes)."""

from __future__ import annotations

import shutil

import pytest

from gitreg.gitstore.verify_cache import SqliteCache
from gitreg.model.dates import utcnow
from gitreg.site.config import RegistryConfig
from gitreg.site.remotes import (
    RegistryOutcome,
    fetch_registry,
    open_local_repository,
    pinned_fingerprint,
)
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from tests.fixtures.git_server import git
from tests.site_registry import (
    SiteWorld,
)


@pytest.fixture
def world(world: SiteWorld) -> SiteWorld:
    """tests/site_registry.py's world, with one published list."""
    world.new_list("Only list")
    world.publish("first list")
    return world


def _fetch(world: SiteWorld, remotes: list[str], trusted: str | None,
           trust_root: str | None = None) -> RegistryOutcome:
    registry = RegistryConfig(name="test", remotes=tuple(remotes),
                              trust_root=trust_root or world.fingerprint)
    pinned = pinned_fingerprint(registry)
    store = open_local_repository(world.root / "site-repos" / "test.git")
    cache = SqliteCache(world.root / "site-repos" / "verify.sqlite", trust_root=pinned)
    try:
        return fetch_registry(store, registry,
                              Verifier(store, cache, context=VerifyContext.for_site(utcnow()),
                                       pinned_policy=pinned),
                              trusted, timeout=60)
    finally:
        cache.close()


def test_current_remote_gives_its_head(world: SiteWorld) -> None:
    path = world.bare("a")
    head = git("-C", path, "rev-parse", "main").stdout.strip()
    outcome = _fetch(world, [str(path)], None)
    assert outcome.target == head
    assert [r.state for r in outcome.remotes] == ["current"]
    # Nothing new: the same head is current and the target does not move.
    again = _fetch(world, [str(path)], head)
    assert again.target == head and [r.state for r in again.remotes] == ["current"]


def test_remote_behind_trusted_is_stale(world: SiteWorld) -> None:
    old = world.bare("old")
    world.new_list("Second list")
    head = world.publish("second list")
    new = world.bare("new")
    outcome = _fetch(world, [str(old), str(new)], None)
    assert outcome.target == head
    assert [r.state for r in outcome.remotes] == ["stale", "current"]
    # Later, with the head trusted, the old replica alone changes nothing.
    alone = _fetch(world, [str(old)], head)
    assert alone.target == head and alone.remotes[0].state == "stale"


def test_rewritten_history_is_invalid_with_rule(world: SiteWorld) -> None:
    path = world.bare("a")
    trusted = git("-C", path, "rev-parse", "main").stdout.strip()
    assert _fetch(world, [str(path)], None).target == trusted
    # A hookless copy whose main was rewritten to another commit on the parent.
    rogue = world.root / "rogue.git"
    shutil.copytree(path, rogue)
    (rogue / "hooks" / "pre-receive").unlink()
    git("-C", rogue, "update-ref", "refs/heads/main", f"{trusted}~1")
    work = world.root / "rewrite"
    git("clone", "--quiet", rogue, work)
    (work / "README").write_text("rewritten\n")
    git("-C", work, "add", "README")
    git("-C", work, "commit", "--quiet", "-m", "rewrite")
    git("-C", work, "push", "--quiet", "--force", rogue, "main:main")

    outcome = _fetch(world, [str(rogue)], trusted)

    assert outcome.target == trusted
    [remote] = outcome.remotes
    # It shares history: a fork, whose unsigned commit breaks a rule.
    assert remote.state == "invalid" and remote.rule == "commit-signature"
    assert remote.commit is not None and remote.commit[:12] in remote.detail


def test_wrong_trust_root_is_invalid(world: SiteWorld) -> None:
    path = world.bare("a")
    outcome = _fetch(world, [str(path)], None, trust_root="sha256:" + "0" * 64)
    assert outcome.target is None
    assert outcome.remotes[0].state == "invalid"
    assert outcome.remotes[0].rule == "trust-root"


def test_unreachable_and_missing_remotes(world: SiteWorld) -> None:
    path = world.bare("a")
    outcome = _fetch(world, [str(world.root / "nowhere.git"), "http://127.0.0.1:9/x.git",
                             str(path)], None)
    assert [r.state for r in outcome.remotes] == ["unreachable", "unreachable", "current"]
    assert outcome.target is not None and outcome.any_valid
