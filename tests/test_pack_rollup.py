"""Fetches keep a pack each; past a bound they are rolled up, losing no object.

Real git throughout: a source repository grown commit by commit, fetched by
``gitreg.gitstore.remote.fetch`` into a bare repository after each commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitreg.gitstore.remote import MAX_PACKS, fetch, roll_up_packs


def _git(*args: str | Path) -> str:
    return subprocess.run(["git", *map(str, args)], capture_output=True, text=True,
                          check=True).stdout.strip()


def _packs(repo: Path) -> int:
    return len(list((repo / "objects" / "pack").glob("*.pack")))


def _commit(source: Path, n: int) -> str:
    blob = subprocess.run(["git", "-C", str(source), "hash-object", "-w", "--stdin"],
                          input=f"content {n}\n" * 50, capture_output=True, text=True,
                          check=True).stdout.strip()
    tree = subprocess.run(["git", "-C", str(source), "mktree"],
                          input=f"100644 blob {blob}\tfile-{n}.json\n", capture_output=True,
                          text=True, check=True).stdout.strip()
    parent = ["-p", "main"] if n else []
    commit = _git("-C", source, "commit-tree", tree, *parent, "-m", f"commit {n}")
    _git("-C", source, "update-ref", "refs/heads/main", commit)
    return commit


def test_fetches_roll_up_packs_and_keep_unreachable_commits(tmp_path: Path) -> None:
    source, local = tmp_path / "source.git", tmp_path / "local.git"
    _git("init", "-q", "--bare", "-b", "main", source)
    _git("init", "-q", "--bare", "-b", "main", local)
    commits = []
    most = 0
    for n in range(MAX_PACKS + 4):
        commits.append(_commit(source, n))
        assert fetch(local, str(source), name="r0").new == commits[-1]
        most = max(most, _packs(local))
        if n == 5:
            # The remote rewinds: commit 5 stays only in the local packs.
            _git("-C", source, "update-ref", "refs/heads/main", commits[4])
            assert fetch(local, str(source), name="r0").new == commits[4]

    assert most == MAX_PACKS  # one pack a fetch; the one past the bound rolls them up
    assert _packs(local) < MAX_PACKS // 2
    for commit in commits:  # every commit and its tree, the rewound one too
        assert _git("-C", local, "cat-file", "-t", commit) == "commit"
        _git("-C", local, "ls-tree", "-r", commit)
    _git("-C", local, "fsck", "--no-dangling", "--strict")


def test_few_packs_are_left_alone(tmp_path: Path) -> None:
    local = tmp_path / "local.git"
    _git("init", "-q", "--bare", local)
    assert roll_up_packs(local) is False
    assert roll_up_packs(tmp_path / "not-a-repository") is False
