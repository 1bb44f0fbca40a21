"""An endorser's ``main`` that is gitreg's merge gives way to the replicas' canonical state.

``publish --push`` merges a replica that moved *forward* into the working
copy's ``main``; the replicas then take the canonical merge of the signed
commits instead (docs/format.md, "Replication"). Before ``publish`` signs
anything new on such a ``main`` it moves to what the replicas hold
(gitreg/publish/give_way.py), so the forward merge never enters history.
Real hook-guarded bare replicas, pushes and fetches with the git CLI.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitreg.gitstore.acceptance import MERGE_IDENTITY
from tests.fixtures.git_server import git
from tests.fixtures.ssh_keys import SSHKeyFiles
from tests.site_registry import SiteWorld, tree_listing


def _main(path: Path) -> str:
    return git("-C", path, "rev-parse", "main").stdout.strip()


def _parents(path: Path, commit: str) -> list[str]:
    return git("-C", path, "log", "-1", "--format=%P", commit).stdout.split()


def _merges(path: Path) -> list[str]:
    return git("-C", path, "log", "--merges", "--format=%H", "main").stdout.split()


def _is_ancestor(path: Path, old: str, new: str = "main") -> bool:
    return git("-C", path, "merge-base", "--is-ancestor", old, new,
               check=False).returncode == 0


def _refs(path: Path) -> str:
    return git("-C", path, "for-each-ref", "--format=%(refname) %(objectname)").stdout


def _files(path: Path) -> dict[str, bytes]:
    return {name: data for name, data in tree_listing(path).items()
            if not name.startswith(".git/")}


def _publish(world: SiteWorld, cwd: Path, message: str, *, key: SSHKeyFiles | None = None,
             push: bool = True) -> subprocess.CompletedProcess[str]:
    args = ["publish", "--key", (key or world.endorser_key).private, "-m", message]
    return world.run_cli([*args, *(["--push"] if push else [])], cwd=cwd)


def _sync_peers(world: SiteWorld, replica: str) -> dict[str, object]:
    peers = [a for name, path in world.servers.items() if name != replica
             for a in ("--peer", str(path))]
    done = world.run_cli(["server", "sync-peers", world.servers[replica], "--json", *peers])
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def _registry_on(world: SiteWorld, *replicas: str) -> str:
    """One published list ("One", image one-a); hooked bare replicas seeded with it."""
    list_one = world.new_list("One")
    world.add_image(list_one, "one-a", b"one a\n" * 9)
    world.publish("one")
    for name in replicas:
        world.bare(name)
    return list_one


def _bob_merges_carols_push(world: SiteWorld) -> tuple[str, str, str, str]:
    """Replicas a and b; carol pushes her list to b only, bob then publishes his with
    ``--push`` and is refused by b: his ``main`` becomes the merge M of the two.
    List One, carol's list, bob's list and M."""
    list_one = _registry_on(world, "a", "b")
    world.cli("replica", "add", world.servers["a"], "--name", "a")
    world.cli("replica", "add", world.servers["b"], "--name", "b")
    _, carols, carol_commit = world.push_new_list("carol", "b", "Carol's", "carol-1",
                                                  b"carol 1\n" * 9)
    bobs = world.new_list("Bob's")
    world.add_image(bobs, "bob-1", b"bob 1\n" * 9)
    done = _publish(world, world.work, "bob")
    assert done.returncode == 0, done.stderr
    assert "merged it deterministically" in done.stderr
    merge = _main(world.work)
    assert carol_commit in _parents(world.work, merge)
    assert _main(world.servers["a"]) == _main(world.servers["b"]) == merge
    return list_one, carols, bobs, merge


@dataclass
class Round:
    carol: Path  # carol's working copy (remotes origin = b, and c)
    bobs: str
    carols: str
    signed: tuple[str, str, str]  # x (bob), y (carol), z (dave)
    m1: str  # bob's forward merge, of m2
    m2: str  # carol's forward merge


def _round_with_two_refusals(world: SiteWorld) -> Round:
    """Replicas a, b, c; one round of three concurrent pushes in which bob and carol
    are both refused and both merge forward."""
    _registry_on(world, "a", "b", "c")
    world.cli("replica", "add", world.servers["a"], "--name", "a")
    world.cli("replica", "add", world.servers["b"], "--name", "b")
    carol = world.clone("carol", "b")
    git("-C", carol, "remote", "add", "c", world.servers["c"])
    carols = world.new_list("Carol's", cwd=carol)
    world.add_image(carols, "carol-1", b"carol 1\n" * 9, cwd=carol)
    bobs = world.new_list("Bob's")
    world.add_image(bobs, "bob-1", b"bob 1\n" * 9)
    # Dave's push lands on c first.
    *_, z = world.push_new_list("dave", "c", "Dave's", "dave-1", b"dave 1\n" * 9)
    # Carol is refused by c and merges forward (M2); bob is refused by b (which took
    # M2) and merges forward too, a merge of M2 (M1): two endorser merges in one round.
    done = _publish(world, carol, "carol", key=world.second_key)
    assert done.returncode == 0 and "merged it deterministically" in done.stderr, done.stderr
    y, m2 = done.stdout.strip(), _main(carol)
    done = _publish(world, world.work, "bob")
    assert done.returncode == 0 and "merged it deterministically" in done.stderr, done.stderr
    x, m1 = done.stdout.strip(), _main(world.work)
    assert sorted(_parents(carol, m2)) == sorted([y, z]) and m2 in _parents(world.work, m1)
    return Round(carol, bobs, carols, (x, y, z), m1, m2)


@pytest.mark.slow
def test_two_endorsers_refused_in_one_round_leave_one_merge(world: SiteWorld) -> None:
    played = _round_with_two_refusals(world)
    carol, bobs, carols, m1, m2 = (played.carol, played.bobs, played.carols, played.m1,
                                   played.m2)
    x, y, z = played.signed

    # The replicas converge on the one canonical merge of the three signed commits.
    for name in ("a", "b", "c"):
        _sync_peers(world, name)
    canonical = _main(world.servers["a"])
    assert _main(world.servers["b"]) == _main(world.servers["c"]) == canonical
    assert sorted(_parents(world.servers["a"], canonical)) == sorted([x, y, z])

    # Bob builds on top: his main gives way to the replicas' state first.
    world.add_image(bobs, "bob-2", b"bob 2\n" * 9)
    done = _publish(world, world.work, "bob again")
    assert done.returncode == 0, done.stderr
    assert f"main was {m1[:12]}, the merge gitreg made" in done.stderr
    assert f"hold it in {canonical[:12]}" in done.stderr
    w1 = done.stdout.strip()
    assert _parents(world.work, w1) == [canonical]
    assert "merged it" not in done.stderr  # every replica took it as a fast-forward

    # Carol too, with plain `publish` from what she fetched (no network), then pushes.
    git("-C", carol, "fetch", "--quiet", "origin")
    world.add_image(carols, "carol-2", b"carol 2\n" * 9, cwd=carol)
    done = _publish(world, carol, "carol again", key=world.second_key, push=False)
    assert done.returncode == 0, done.stderr
    assert f"main was {m2[:12]}" in done.stderr and f"hold it in {w1[:12]}" in done.stderr
    w2 = done.stdout.strip()
    assert _parents(carol, w2) == [w1]
    done = _publish(world, carol, "nothing", key=world.second_key)
    assert done.returncode == 0 and "nothing to publish" in done.stderr, done.stderr
    assert "main was" not in done.stderr

    for name in ("a", "b", "c"):
        _sync_peers(world, name)
    assert {_main(world.servers[n]) for n in ("a", "b", "c")} == {w2}
    # One merge in history, of the signed commits; the forward merges are not in it.
    assert _merges(world.servers["a"]) == [canonical]
    assert not _is_ancestor(world.servers["a"], m1)
    assert not _is_ancestor(world.servers["a"], m2)
    # Both working copies sit on a signed commit now: the next publish moves nothing.
    for copy in (world.work, carol):
        before = (_main(copy), _files(copy))
        done = _publish(world, copy, "again", push=False,
                        key=world.endorser_key if copy == world.work else world.second_key)
        assert done.returncode == 0 and "nothing to publish" in done.stderr
        assert (_main(copy), _files(copy)) == before


@pytest.mark.slow
def test_giving_way_keeps_drafts_or_names_those_in_the_way(world: SiteWorld) -> None:
    _, carols, bobs, merge = _bob_merges_carols_push(world)
    # Dave (carol's key) publishes on top of bob's merge, which both replicas hold.
    dave = world.clone("dave", "a")
    world.add_image(carols, "carol-2", b"carol 2\n" * 9, cwd=dave)
    on_top = world.publish("dave", cwd=dave, key=world.second_key)
    assert _parents(dave, on_top) == [merge]
    world.push("a", cwd=dave)
    world.push("b", cwd=dave)

    # Bob has drafts of both lists; moving to dave's commit changes carol's list.
    world.add_image(carols, "bob-in-carols", b"bob c\n" * 9)
    world.add_image(bobs, "bob-2", b"bob 2\n" * 9)
    files = _files(world.work)
    done = _publish(world, world.work, "bob")
    assert done.returncode == 2, done.stderr
    assert f"imagelists/{carols}.json, which you have unpublished drafts of" in done.stderr
    assert f"imagelists/{bobs}.json" not in done.stderr
    assert "nothing was published" in done.stderr and "Traceback" not in done.stderr
    assert f"git -C {world.work} checkout -- imagelists/{carols}.json" in done.stderr
    assert _main(world.work) == merge and _files(world.work) == files
    assert _main(world.servers["a"]) == _main(world.servers["b"]) == on_top

    # Without the draft in the way, main moves and bob's other draft is published on top;
    # a replica that cannot be reached is reported and skipped (and the push exits 3).
    git("-C", world.work, "checkout", "--", f"imagelists/{carols}.json")
    git("-C", world.work, "remote", "add", "vanished", world.root / "no-such-replica.git")
    done = _publish(world, world.work, "bob")
    assert done.returncode == 3, done.stderr
    assert "warning: cannot fetch from remote vanished: no git repository at " \
        f"{world.root / 'no-such-replica.git'}; skipped" in done.stderr
    assert f"hold it in {on_top[:12]}" in done.stderr
    head = done.stdout.strip()
    assert _parents(world.work, head) == [on_top]
    published = git("-C", world.work, "show", f"main:imagelists/{bobs}.json").stdout
    assert "bob-2" in published
    carols_now = (world.work / "imagelists" / f"{carols}.json").read_text()
    assert "carol-2" in carols_now  # the working tree shows dave's version
    assert git("-C", world.work, "status", "--porcelain").stdout == ""
    assert _main(world.servers["a"]) == _main(world.servers["b"]) == head


def _forge_merge(world: SiteWorld, merge: str, list_id: str) -> str:
    """A commit that claims to be the merge of ``merge``'s parents, with a list changed
    in its tree (no signature can make that valid), in gitreg's merge identity."""
    forger = world.root / "forger"
    git("clone", "--quiet", world.servers["a"], forger)
    path = forger / "imagelists" / f"{list_id}.json"
    path.write_text(path.read_text().replace("one-a", "forged"))
    git("-C", forger, "add", "-A")
    tree = git("-C", forger, "write-tree").stdout.strip()
    parents = [a for p in _parents(forger, merge) for a in ("-p", p)]
    name, email = MERGE_IDENTITY
    ident = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
             "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
    return git("-C", forger, "commit-tree", tree, *parents, "-m", "forged merge",
               env=ident).stdout.strip()


@pytest.mark.slow
def test_a_forged_replica_head_never_moves_the_working_copy(world: SiteWorld) -> None:
    list_one, _, bobs, merge = _bob_merges_carols_push(world)
    forged = _forge_merge(world, merge, list_one)
    # A hookless replica serves it as its main: it "holds" bob's merge by its parents.
    rogue = world.root / "rogue.git"
    git("clone", "--quiet", "--bare", world.servers["a"], rogue)
    git("-C", world.root / "forger", "push", "--quiet", "--force", rogue, f"{forged}:main")
    git("-C", world.work, "remote", "add", "rogue", rogue)
    git("-C", world.work, "fetch", "--quiet", "rogue")
    # A name git allows but gitreg's own tracking refs cannot carry: no ref, no harm.
    git("-C", world.work, "remote", "add", "odd@name", world.servers["a"])
    assert git("-C", world.work, "rev-parse", "refs/remotes/rogue/main").stdout.strip() \
        == forged
    refs, files = _refs(world.work), _files(world.work)

    # Plain publish (tracking refs only): nothing to publish, nothing moves.
    done = _publish(world, world.work, "bob", push=False)
    assert done.returncode == 0, done.stderr
    assert f"replica rogue: main {forged[:12]} is not a valid successor" in done.stderr
    assert "not followed" in done.stderr and "main was" not in done.stderr
    assert _refs(world.work) == refs and _files(world.work) == files

    # With --push: rogue is fetched, judged, refused; main and files stay.
    done = _publish(world, world.work, "bob")
    assert done.returncode == 1, done.stderr
    assert f"replica rogue: main {forged[:12]} is not a valid successor" in done.stderr
    assert _main(world.work) == merge and _files(world.work) == files
    assert not _is_ancestor(world.work, forged)
    assert git("-C", rogue, "rev-parse", "main").stdout.strip() == forged

    # A draft is published on bob's merge itself, never on the forgery.
    world.add_image(bobs, "bob-2", b"bob 2\n" * 9)
    done = _publish(world, world.work, "bob", push=False)
    assert done.returncode == 0, done.stderr
    assert _parents(world.work, done.stdout.strip()) == [merge]
    assert not _is_ancestor(world.work, forged)


@pytest.mark.slow
def test_a_replica_still_on_a_merge_leaves_no_merge_of_merges(world: SiteWorld) -> None:
    played = _round_with_two_refusals(world)
    # b runs no sync-peers: it still serves bob's forward merge M1.
    for name in ("a", "c"):
        _sync_peers(world, name)
    canonical = _main(world.servers["a"])
    assert _main(world.servers["b"]) == played.m1

    # Bob gives way to the canonical merge; b refuses his commit (not a descendant of
    # M1), but a took it and M1 adds nothing to it: b is left pending, not merged.
    world.add_image(played.bobs, "bob-2", b"bob 2\n" * 9)
    done = _publish(world, world.work, "bob again")
    assert done.returncode == 0, done.stderr
    assert f"hold it in {canonical[:12]}" in done.stderr
    w1 = done.stdout.strip()
    assert _parents(world.work, w1) == [canonical] and _main(world.work) == w1
    assert f"warning: b ({world.servers['b']}): pending (behind)" in done.stderr
    assert f"b still serves {played.m1[:12]}, a merge your main {w1[:12]} already " \
        "holds" in done.stderr
    assert "merged it" not in done.stderr
    assert _main(world.servers["a"]) == w1 and _main(world.servers["b"]) == played.m1

    # With a out of reach nobody took bob's next commit, so b's merge is merged
    # forward once more (E: a merge that adds nothing, the one way left to push).
    world.add_image(played.bobs, "bob-3", b"bob 3\n" * 9)
    git("-C", world.work, "remote", "set-url", "a", world.root / "gone.git")
    done = _publish(world, world.work, "bob a third time")
    assert done.returncode == 3 and "merged it deterministically" in done.stderr, done.stderr
    w2 = done.stdout.strip()
    forward = _main(world.work)
    assert sorted(_parents(world.work, forward)) == sorted([w2, played.m1])
    assert _main(world.servers["b"]) == forward
    git("-C", world.work, "remote", "set-url", "a", world.servers["a"])

    # The replicas give way to bob's signed commit, and so does his working copy, though
    # what holds E is an ancestor of it.
    for name in ("b", "a", "c"):
        _sync_peers(world, name)
    assert {_main(world.servers[n]) for n in ("a", "b", "c")} == {w2}
    world.add_image(played.bobs, "bob-4", b"bob 4\n" * 9)
    done = _publish(world, world.work, "bob a fourth time")
    assert done.returncode == 0 and f"main was {forward[:12]}" in done.stderr, done.stderr
    assert f"a, b hold it in {w2[:12]}" in done.stderr
    w3 = done.stdout.strip()
    assert _parents(world.work, w3) == [w2] and "merged it" not in done.stderr
    assert _main(world.servers["a"]) == _main(world.servers["b"]) == w3
    assert _merges(world.servers["a"]) == [canonical]


@pytest.mark.slow
def test_an_attestation_on_gitregs_merge_gives_way_first(world: SiteWorld,
                                                         ssh_mallory: SSHKeyFiles) -> None:
    # Attester site-a (mallory's key) is in the policy the replicas are seeded with.
    world.cli("policy", "add-attester", "site-a", "--key", ssh_mallory.public,
              "--email", "cloud@site-a.example.org")
    world.cli("policy", "sign", "--key", world.root_key.private)
    world.cli("publish", "--policy-only", "--key", world.root_key.private, "-m", "attester")
    played = _round_with_two_refusals(world)
    for name in ("a", "b", "c"):
        _sync_peers(world, name)
    canonical = _main(world.servers["a"])
    assert _main(world.work) == played.m1 != canonical

    # The statement's commit is signed on the replicas' canonical merge, not on M1.
    done = world.run_cli(["attest", "bob-1", "--result", "passed", "--key",
                          ssh_mallory.private, "--push"], cwd=world.work)
    assert done.returncode == 0, done.stderr
    assert f"main was {played.m1[:12]}, the merge gitreg made" in done.stderr
    assert f"hold it in {canonical[:12]}" in done.stderr
    statement = done.stdout.strip()
    assert _parents(world.work, statement) == [canonical]
    for name in ("a", "b", "c"):
        _sync_peers(world, name)
    assert {_main(world.servers[n]) for n in ("a", "b", "c")} == {statement}
    assert _merges(world.servers["a"]) == [canonical]
    assert not _is_ancestor(world.servers["a"], played.m1)
