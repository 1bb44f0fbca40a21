"""A search finds the head of a plain repository from its files; libgit2 for the rest."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitreg.catalogue.sources import snapshots
from gitreg.gitstore.store import RegistryStore
from tests.catalogue_world import standard_world


def _git(*args: str | Path) -> None:
    subprocess.run(["git", *map(str, args)], check=True, capture_output=True)


def test_the_head_is_read_from_loose_and_packed_refs(tmp_path: Path) -> None:
    catalogue, _ids = standard_world(tmp_path / "r.git")
    head = RegistryStore.open(catalogue.sim.path).ref("refs/heads/main")
    [loose] = snapshots([catalogue.sim.path])
    assert (loose.head, loose.opened) == (head, None)  # no repository opened for it
    _git("-C", catalogue.sim.path, "pack-refs", "--all", "--prune")
    assert not (catalogue.sim.path / "refs/heads/main").exists()
    [packed] = snapshots([catalogue.sim.path])
    assert (packed.head, packed.opened) == (head, None)
    assert packed.cache_file == catalogue.sim.path / "gitreg-catalogue.cache"
    assert packed.store.ref("refs/heads/main") == head  # opened when needed


def test_a_working_copy_and_a_linked_worktree_give_the_same_head(tmp_path: Path) -> None:
    catalogue, _ids = standard_world(tmp_path / "r.git")
    head = RegistryStore.open(catalogue.sim.path).ref("refs/heads/main")
    clone = tmp_path / "clone"
    _git("clone", "-q", catalogue.sim.path, clone)
    [working] = snapshots([clone])
    assert (working.head, working.opened) == (head, None)
    assert working.cache_file == clone / ".git" / "gitreg-catalogue.cache"
    linked = tmp_path / "linked"
    _git("-C", clone, "worktree", "add", "-q", "--detach", linked)
    [other] = snapshots([linked])  # a .git file: left to libgit2
    assert other.head == head and other.opened is not None
