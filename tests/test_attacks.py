"""Attacks on a registry: each is refused by the pre-receive hook AND by `gitreg verify`.

One registry is built per module (roots r1..r3 with a 2-of-3 threshold;
endorsers alice, bob and dave, each owning one list; dave revoked in policy
version 5) and served by a `gitreg server init` repository. Each test forges
one commit in a copy of the registry (the "client"), then:

- pushes it with the git CLI to a copy of the server (a local path, or
  http:// through gitreg's smart-HTTP server) and checks the hook refused it
  naming the rule, that the server's main did not move and that the forged
  object did not stay in the server's object store;
- points the client's main at it with pygit2 (what a server without the hook
  would end up with) and checks `gitreg verify` refuses it naming the rule.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitreg.errors import PolicyViolationError
from gitreg.gitstore.acceptance import build_merge
from gitreg.gitstore.verify_cache import SqliteCache
from gitreg.model.policy import PolicyEnvelope
from gitreg.model.registry_info import RegistryInfo
from gitreg.publish import policy_edit
from gitreg.publish.policy_edit import add_signature
from gitreg.server.init import init_server
from gitreg.signing.interface import NAMESPACE_IMAGELIST, Signer
from gitreg.signing.ssh import SSHSigner
from gitreg.verify import layout
from gitreg.verify.cache import MemoryCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from tests.fixtures.env import RunCli
from tests.fixtures.git_server import ServeRepository, git
from tests.registry_simulator import (
    MODE_EXEC,
    MODE_GITLINK,
    MODE_LINK,
    TEST_LIMITS,
    RegistrySimulator,
    new_id,
    ssh_signer,
)


@dataclass(frozen=True)
class Base:
    """The module's registry: its simulator, served copy and who is who."""

    sim: RegistrySimulator
    server: Path
    roots: list[SSHSigner]
    alice: SSHSigner
    bob: SSHSigner
    dave: SSHSigner
    list_a: str
    list_b: str
    list_d: str
    image_a: str
    image_b: str
    revoked_at: datetime


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    directory = tmp_path_factory.mktemp("attack-base")
    roots = [ssh_signer(f"root{i}") for i in (1, 2, 3)]
    alice, bob, dave = ssh_signer("alice"), ssh_signer("bob"), ssh_signer("dave")
    # An hour in the past, so that no commit is ever ahead of the hook's clock.
    start = datetime.now(UTC) - timedelta(hours=1)
    sim = RegistrySimulator.create(directory / "registry.git", roots=roots, threshold=2,
                                   start=start)
    list_a, list_b, list_d = new_id(), new_id(), new_id()
    image_a, image_b = new_id(), new_id()
    sim.add_endorser("alice", [alice.public_key()], [layout.list_path(list_a)])
    sim.add_endorser("bob", [bob.public_key()], [layout.list_path(list_b)])
    sim.add_endorser("dave", [dave.public_key()], [layout.list_path(list_d)])
    sim.publish(alice, {list_a: [image_a]})
    sim.publish(bob, {list_b: [image_b]})
    sim.publish(dave, {list_d: [new_id()]})
    sim.clock += timedelta(minutes=10)
    revoked_at = sim.clock
    sim.remove_endorser("dave")
    assert sim.policy.version == 5
    server = directory / "server.git"
    init_server(server, source=sim.path)
    return Base(sim=sim, server=server, roots=roots, alice=alice, bob=bob, dave=dave,
                list_a=list_a, list_b=list_b, list_d=list_d, image_a=image_a,
                image_b=image_b, revoked_at=revoked_at)


@dataclass
class World:
    """One test's copies: the server to push to and the client that forges."""

    base: Base
    sim: RegistrySimulator
    server: Path
    url: str
    run_cli: RunCli

    def main(self, repo: Path | None = None) -> str | None:
        found = git("-C", repo or self.server, "rev-parse", "--verify", "--quiet",
                    "refs/heads/main", check=False)
        return found.stdout.strip() or None

    def has_object(self, oid: str) -> bool:
        return git("-C", self.server, "cat-file", "-e", oid, check=False).returncode == 0

    def push(self, refspec: str, *, force: bool = False) -> subprocess.CompletedProcess[str]:
        flags = ["--force"] if force else []
        return git("-C", self.sim.path, "push", *flags, self.url, refspec, check=False)

    def assert_hook_rejects(self, oid: str | None, rule: str, *, refspec: str | None = None,
                            force: bool = False, path: str | None = None) -> str:
        """Push ``oid`` to main; the hook refuses it naming ``rule`` and nothing changes."""
        before = self.main()
        result = self.push(refspec or f"{oid}:refs/heads/main", force=force)
        assert result.returncode != 0, result.stderr
        assert "pre-receive hook declined" in result.stderr, result.stderr
        assert f"[rule: {rule}]" in result.stderr, result.stderr
        if path is not None:
            assert path in result.stderr, result.stderr
        assert self.main() == before
        if oid is not None:
            assert not self.has_object(oid), "the refused commit stayed in the server"
        return result.stderr

    def assert_hook_accepts(self, oid: str) -> None:
        result = self.push(f"{oid}:refs/heads/main")
        assert result.returncode == 0, result.stderr
        assert self.main() == oid

    def assert_rejected(self, oid: str, rule: str, *, path: str | None = None) -> str:
        """Both the server's hook and a client's `gitreg verify` refuse ``oid`` naming
        ``rule`` (and ``path``); the hook's message."""
        stderr = self.assert_hook_rejects(oid, rule, path=path)
        self.assert_verify_rejects(oid, rule, path=path)
        return stderr

    def verify(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run_cli(["verify", self.sim.path, *args])

    def assert_verify_rejects(self, oid: str, rule: str, *, path: str | None = None,
                              since: str | None = None, commit: str | None = None) -> str:
        """Force ``oid`` into the client's main; `gitreg verify` refuses it naming ``rule``."""
        self.sim.set_main(oid)
        result = self.verify(*(["--since", since] if since else []))
        assert result.returncode == 1, result.stderr
        assert f"[rule: {rule}]" in result.stderr, result.stderr
        assert f"commit {(commit or oid)[:12]}" in result.stderr, result.stderr
        if path is not None:
            assert path in result.stderr, result.stderr
        return result.stderr


@pytest.fixture(params=["path"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world(base: Base, tmp_path: Path, transport: str, run_cli: RunCli,
          git_http_server: ServeRepository) -> Iterator[World]:
    server = tmp_path / "server.git"
    shutil.copytree(base.server, server, symlinks=True)
    sim = base.sim.copy_to(tmp_path / "client.git")
    url = git_http_server(server) if transport == "http" else str(server)
    yield World(base=base, sim=sim, server=server, url=url, run_cli=run_cli)


# Attacks also tried over http:// (the hook runs under git http-backend too).
both_transports = pytest.mark.parametrize("transport", ["path", "http"], indirect=True)


# --- the control: what the attacks are measured against ------------------------------


@both_transports
def test_a_legitimate_publication_is_accepted(world: World) -> None:
    b = world.base
    oid = world.sim.publish(b.alice, {b.list_a: [b.image_a, new_id()]})
    world.assert_hook_accepts(oid)
    assert world.verify().returncode == 0


# --- commit signatures and authorisation ------------------------------------------------


@both_transports
def test_unsigned_commit(world: World) -> None:
    b = world.base
    oid = world.sim.publish(None, {b.list_a: [b.image_a]}, list_signer=b.alice, move=False)
    world.assert_rejected(oid, "commit-signature")


@both_transports
def test_commit_by_a_valid_key_not_allowed_for_the_path(world: World) -> None:
    b = world.base
    # bob is a valid endorser, but list A is alice's.
    oid = world.sim.publish(b.bob, {b.list_a: [b.image_a]}, move=False)
    path = layout.list_path(b.list_a)
    stderr = world.assert_rejected(oid, "path-authorisation", path=path)
    assert "endorser bob" in stderr


def test_commit_touching_two_lists_of_which_the_signer_owns_one(world: World) -> None:
    b = world.base
    oid = world.sim.publish(b.alice, {b.list_a: [b.image_a], b.list_b: [b.image_b]},
                            move=False)
    path = layout.list_path(b.list_b)
    world.assert_rejected(oid, "path-authorisation", path=path)


def test_commit_by_a_key_revoked_and_backdated_before_the_revocation(world: World) -> None:
    b = world.base
    # dave was removed in policy version 5; this commit sits on top of that
    # commit but claims a time before it: position in history decides.
    backdated = b.revoked_at - timedelta(minutes=5)
    oid = world.sim.publish(b.dave, {b.list_d: [new_id()]}, when=backdated, move=False)
    assert world.sim.store.commit_info(oid).time < int(b.revoked_at.timestamp())
    stderr = world.assert_rejected(oid, "commit-signature")
    assert b.dave.key_id in stderr


# --- policy changes -----------------------------------------------------------------


def _policy_edit(envelope: PolicyEnvelope) -> PolicyEnvelope:
    mallory = ssh_signer("mallory")
    return policy_edit.add_endorser(envelope, "mallory", [mallory.public_key()],
                                    allow=["imagelists/*"])


@both_transports
def test_policy_change_with_one_signature_under_a_2_of_3_threshold(world: World) -> None:
    b = world.base
    oid, _ = world.sim.change_policy(_policy_edit, signers=[b.roots[0]], move=False)
    stderr = world.assert_rejected(oid, "policy-threshold-old", path=layout.POLICY_FILE)
    assert "signed by 1 of 2" in stderr


def test_policy_change_with_two_signatures_from_the_same_key(world: World) -> None:
    b = world.base
    once = add_signature(_policy_edit(world.sim.policy), b.roots[0])
    twice = PolicyEnvelope(once.signed, once.signatures * 2)
    assert len(twice.signatures) == 2
    oid = world.sim.commit({layout.POLICY_FILE: twice.canonical_bytes()}, b.roots[0],
                           move=False)
    stderr = world.assert_rejected(oid, "policy-threshold-old", path=layout.POLICY_FILE)
    assert "signed by 1 of 2" in stderr


# --- history: force push, ref deletion, merges --------------------------------------


@both_transports
def test_force_push_rewriting_history(world: World) -> None:
    b = world.base
    trusted = world.sim.head
    # A valid commit, but on top of main's parent: it drops the revocation of dave.
    parent = world.sim.store.commit_info(trusted).parents[0]
    oid = world.sim.publish(b.alice, {b.list_a: [b.image_a]}, move=False)
    rewritten = world.sim.commit({}, b.alice, parents=[parent], move=False)
    assert rewritten != oid
    world.assert_hook_rejects(rewritten, "descent", force=True)
    world.assert_verify_rejects(rewritten, "descent", since=trusted)


@both_transports
def test_ref_deletion(world: World) -> None:
    world.assert_hook_rejects(None, "ref-delete", refspec=":refs/heads/main")
    # Forced in, there is no main left: verify refuses to call that valid.
    world.sim.repo.references.delete("refs/heads/main")
    result = world.verify()
    assert result.returncode == 1
    assert "refs/heads/main is missing" in result.stderr, result.stderr
    assert "[rule: ref-delete]" in result.stderr


def _diverged(world: World) -> tuple[str, str, dict[str, bytes | None]]:
    """Two valid heads from main: alice updates list A, bob updates list B."""
    b, sim = world.base, world.sim
    head = sim.head
    left = sim.publish(b.alice, {b.list_a: [b.image_a, new_id()]}, move=False)
    sim.head = head
    right = sim.publish(b.bob, {b.list_b: [b.image_b, new_id()]}, move=False)
    sim.head = head
    both: dict[str, bytes | None] = {}
    for side, list_id in ((left, b.list_a), (right, b.list_b)):
        tree = sim.store.commit_info(side).tree
        for path in (layout.list_path(list_id), layout.sig_path(list_id)):
            entry = sim.store.tree_entry(tree, path)
            assert entry is not None
            both[path] = sim.store.read_blob(entry.oid, 1 << 20)
    return left, right, both


@both_transports
def test_merge_equal_to_the_deterministic_merge_is_accepted(world: World) -> None:
    left, right, both = _diverged(world)
    # Merges need no signature: anyone can compute the same tree.
    merge = world.sim.commit(both, None, parents=[left, right], move=False)
    world.assert_hook_accepts(merge)
    world.sim.set_main(merge)
    assert world.verify().returncode == 0


@both_transports
def test_merge_whose_tree_differs_from_the_deterministic_merge(world: World) -> None:
    b = world.base
    left, right, both = _diverged(world)
    # The merge smuggles in a version of list A that no commit ever published.
    smuggled = world.sim.list_version(b.list_a, version="9", images=[b.image_a, new_id()])
    both.update(world.sim.signed_list(b.list_a, smuggled, b.alice))
    merge = world.sim.commit(both, None, parents=[left, right], move=False)
    path = layout.list_path(b.list_a)
    world.assert_rejected(merge, "merge-tree", path=path)


def test_push_to_another_ref(world: World) -> None:
    b = world.base
    oid = world.sim.publish(b.alice, {b.list_a: [b.image_a]}, move=False)
    world.assert_hook_rejects(oid, "ref-not-allowed", refspec=f"{oid}:refs/heads/staging")
    world.assert_hook_rejects(None, "ref-not-allowed",
                              refspec=f"{world.base.sim.head}:refs/tags/v1")


def test_merge_with_an_unrelated_history(world: World, tmp_path: Path) -> None:
    b, sim = world.base, world.sim
    other = RegistrySimulator.create(tmp_path / "other.git", roots=b.roots, threshold=2)
    fetched = git("-C", sim.path, "fetch", "--quiet", other.path,
                  "refs/heads/main:refs/heads/other", check=False)
    assert fetched.returncode == 0, fetched.stderr
    merge = sim.commit({}, b.roots[0], parents=[sim.head, other.head], move=False)
    world.assert_hook_rejects(merge, "unrelated-history")
    world.assert_verify_rejects(merge, "unrelated-history", commit=other.head)


def test_policy_version_that_skips_a_number(world: World) -> None:
    def skip(envelope: PolicyEnvelope) -> PolicyEnvelope:
        return policy_edit.with_version(_policy_edit(envelope), envelope.version + 2)

    oid, _ = world.sim.change_policy(skip, move=False)
    world.assert_rejected(oid, "policy-version", path=layout.POLICY_FILE)


def test_registry_identity_change(world: World) -> None:
    b = world.base
    renamed = RegistryInfo(b.sim.info.format_version, b.sim.info.registry_id, "Hijacked")
    oid = world.sim.commit({layout.REGISTRY_FILE: renamed.canonical_bytes()}, b.roots[0],
                           move=False)
    world.assert_rejected(oid, "registry-immutable", path=layout.REGISTRY_FILE)


# --- list content ---------------------------------------------------------------------


def _forge_list(world: World, *, version: str | None = None,
                images: list[str] | None = None, signer: Signer | None = None,
                created: datetime | None = None, expires: datetime | None = None) -> str:
    """Alice's commit of list A with the given content, signed by ``signer`` (alice)."""
    b, sim = world.base, world.sim
    data = sim.list_version(b.list_a, version=version or sim.next_version(b.list_a),
                            images=images if images is not None else [b.image_a],
                            created=created, expires=expires)
    return sim.commit(sim.signed_list(b.list_a, data, signer or b.alice), b.alice,
                      move=False)


def test_list_with_a_lower_version(world: World) -> None:
    oid = _forge_list(world, version="0")
    path = layout.list_path(world.base.list_a)
    world.assert_rejected(oid, "list-version", path=path)


def test_list_with_an_equal_version_and_different_content(world: World) -> None:
    b = world.base
    published = world.sim.lists[b.list_a][0]
    oid = _forge_list(world, version=published, images=[b.image_a, new_id()])
    path = layout.list_path(b.list_a)
    world.assert_rejected(oid, "list-version", path=path)


def test_expired_list(world: World) -> None:
    clock = world.sim.clock
    oid = _forge_list(world, created=clock - timedelta(days=10),
                      expires=clock - timedelta(days=1))
    path = layout.list_path(world.base.list_a)
    world.assert_hook_rejects(oid, "list-expired", path=path)
    # Elsewhere expiry is a property of the state: the list is reported expired
    # (a site retires its images), the history itself is valid.
    world.sim.set_main(oid)
    result = world.verify()
    assert result.returncode == 0, result.stderr
    assert f"{path}: list {world.base.list_a} expired" in result.stderr
    assert "[rule: list-expired]" in result.stderr


def test_expiry_beyond_the_policys_maximum_lifetime(world: World) -> None:
    clock = world.sim.clock
    days = TEST_LIMITS.max_list_lifetime_days + 1
    oid = _forge_list(world, created=clock, expires=clock + timedelta(days=days))
    path = layout.list_path(world.base.list_a)
    stderr = world.assert_rejected(oid, "list-lifetime", path=path)
    assert f"maximum of {TEST_LIMITS.max_list_lifetime_days} days" in stderr


def test_list_whose_signature_does_not_match_its_bytes(world: World) -> None:
    b, sim = world.base, world.sim
    data = sim.list_version(b.list_a, version=sim.next_version(b.list_a), images=[b.image_a])
    other = sim.list_version(b.list_a, version="99", images=[b.image_a])
    signature = b.alice.sign(other, namespace=NAMESPACE_IMAGELIST)
    oid = sim.commit({layout.list_path(b.list_a): data, layout.sig_path(b.list_a): signature},
                     b.alice, move=False)
    path = layout.sig_path(b.list_a)
    world.assert_rejected(oid, "list-signature", path=path)


def test_list_signed_by_another_endorser(world: World) -> None:
    b = world.base
    oid = _forge_list(world, signer=b.bob)
    path = layout.sig_path(b.list_a)
    stderr = world.assert_rejected(oid, "list-signature", path=path)
    assert "endorser bob" in stderr


def test_identifier_different_from_the_file_name(world: World) -> None:
    b, sim = world.base, world.sim
    data = sim.list_version(new_id(), version=sim.next_version(b.list_a), images=[b.image_a])
    oid = sim.commit(sim.signed_list(b.list_a, data, b.alice), b.alice, move=False)
    path = layout.list_path(b.list_a)
    world.assert_rejected(oid, "list-identifier", path=path)


def test_image_uuid_already_used_by_another_list(world: World) -> None:
    b = world.base
    # bob republishes his list carrying alice's image.
    oid = world.sim.publish(b.bob, {b.list_b: [b.image_b, b.image_a]}, move=False)
    path = layout.list_path(b.list_b)
    stderr = world.assert_rejected(oid, "image-unique", path=path)
    assert b.image_a in stderr


def test_image_uuid_of_another_list_in_upper_case(world: World) -> None:
    """Sites and statements name an image in lower case: the case makes no other image."""
    b = world.base
    oid = world.sim.publish(b.bob, {b.list_b: [b.image_b, b.image_a.upper()]}, move=False)
    world.assert_rejected(oid, "image-unique", path=layout.list_path(b.list_b))


def test_a_merge_keeps_an_image_conflict_and_no_commit_makes_a_new_claim(
        world: World) -> None:
    """Concurrent pushes put one new image in lists a and b: the merge keeps both (no
    list goes back). A later commit may keep its claim or drop it, never make one anew."""
    b, sim = world.base, world.sim
    shared = new_id()
    alice_side = sim.publish(b.alice, {b.list_a: [b.image_a, shared]}, move=False)
    bob_side = sim.publish(b.bob, {b.list_b: [b.image_b, shared]}, move=False)
    world.assert_hook_accepts(alice_side)
    verifier = Verifier(sim.store, MemoryCache(),
                        context=VerifyContext.for_site(datetime.now(UTC)))
    merge, findings = build_merge(sim.store, verifier, [alice_side, bob_side])
    assert [(f.reason, f.image) for f in findings] == [("image-conflict", shared)]
    world.assert_hook_accepts(merge)
    tree = sim.store.commit(merge).tree
    for list_id, side in ((b.list_a, alice_side), (b.list_b, bob_side)):
        path = layout.list_path(list_id)
        assert sim.store.entry(tree, path) == sim.store.entry(sim.store.commit(side).tree, path)

    # Bob's next version keeps the image: accepted (the conflict is not his to make).
    kept = sim.commit(sim.signed_list(b.list_b, sim.list_version(
        b.list_b, version="3", images=[b.image_b, shared, new_id()]), b.bob), b.bob,
        parents=[merge], move=False)
    world.assert_hook_accepts(kept)
    # He drops it, then claims it again while list a still carries it: refused.
    dropped = sim.commit(sim.signed_list(b.list_b, sim.list_version(
        b.list_b, version="4", images=[b.image_b]), b.bob), b.bob, parents=[kept], move=False)
    world.assert_hook_accepts(dropped)
    again = sim.commit(sim.signed_list(b.list_b, sim.list_version(
        b.list_b, version="5", images=[b.image_b, shared]), b.bob), b.bob,
        parents=[dropped], move=False)
    stderr = world.assert_rejected(again, "image-unique", path=layout.list_path(b.list_b))
    assert shared in stderr and b.list_a in stderr


def test_list_deleted_instead_of_decommissioned(world: World) -> None:
    b = world.base
    oid = world.sim.commit({layout.list_path(b.list_a): None, layout.sig_path(b.list_a): None},
                           b.alice, move=False)
    path = layout.list_path(b.list_a)
    world.assert_rejected(oid, "list-deleted", path=path)


def test_decommissioning_a_list_is_accepted(world: World) -> None:
    b = world.base
    oid = world.sim.publish(b.alice, {b.list_a: []})
    world.assert_hook_accepts(oid)
    assert world.verify().returncode == 0


# --- the tree layout --------------------------------------------------------------------


def _forge_entry(world: World, path: str, data: bytes, mode: int) -> str:
    """Alice's commit setting ``path`` to ``data`` (a blob) under ``mode``."""
    sim = world.sim
    tree = sim.tree_with_entry(sim.head_tree, path, sim.blob(data), mode)
    return sim.commit_tree(tree, world.base.alice, message="Forged entry", move=False)


@pytest.mark.parametrize(("mode", "what"), [(MODE_LINK, "symbolic link"),
                                            (MODE_EXEC, "executable")])
def test_symlink_and_executable_bit(world: World, mode: int, what: str) -> None:
    b, sim = world.base, world.sim
    path = layout.list_path(b.list_a)
    if mode == MODE_LINK:
        data = b"/etc/passwd"
    else:
        data = sim.list_version(b.list_a, version=sim.next_version(b.list_a),
                                images=[b.image_a])
    oid = _forge_entry(world, path, data, mode)
    stderr = world.assert_rejected(oid, "layout-mode", path=path)
    assert what in stderr


def test_submodule(world: World) -> None:
    sim = world.sim
    path = layout.list_path(world.base.list_a)
    # A gitlink names a commit that need not exist anywhere.
    tree = sim.tree_with_entry(sim.head_tree, path, "1" * 40, MODE_GITLINK)
    oid = sim.commit_tree(tree, world.base.alice, message="Forged submodule", move=False)
    stderr = world.assert_rejected(oid, "layout-mode", path=path)
    assert "submodule" in stderr


@pytest.mark.parametrize("path", ["README.md", "imagelists/notes.txt",
                                  "imagelists/sub/x.json"])
def test_path_outside_the_layout(world: World, path: str) -> None:
    oid = world.sim.commit({path: b"hello\n"}, world.base.alice, move=False)
    world.assert_rejected(oid, "layout-path", path=path)


def test_file_over_the_size_cap(world: World) -> None:
    b = world.base
    path = layout.sig_path(b.list_a)
    oversized = b"x" * (TEST_LIMITS.max_file_size + 1)
    oid = world.sim.commit({path: oversized}, b.alice, move=False)
    stderr = world.assert_rejected(oid, "size-limit", path=path)
    assert str(TEST_LIMITS.max_file_size) in stderr


# --- a valid commit does not launder an invalid one ------------------------------------


def test_invalid_commit_buried_under_a_valid_one(world: World) -> None:
    b, sim = world.base, world.sim
    bad = sim.publish(None, {b.list_a: [b.image_a]}, list_signer=b.alice)
    good = sim.publish(b.bob, {b.list_b: [b.image_b, new_id()]}, move=False)
    world.assert_hook_rejects(good, "commit-signature")
    assert not world.has_object(bad)
    world.assert_verify_rejects(good, "commit-signature", commit=bad)



@pytest.mark.parametrize(("mode", "what"), [(MODE_EXEC, "executable"),
                                            (MODE_LINK, "symbolic link"),
                                            (MODE_GITLINK, "submodule")])
def test_merge_with_the_right_contents_under_another_mode(world: World, mode: int,
                                                          what: str) -> None:
    b, sim = world.base, world.sim
    left, right, both = _diverged(world)
    honest = sim.store.commit_info(sim.commit(both, None, parents=[left, right],
                                              move=False)).tree
    # Same path -> object map as the deterministic merge; only the mode differs.
    path = layout.list_path(b.list_a)
    entry = sim.store.tree_entry(honest, path)
    assert entry is not None
    tree = sim.tree_with_entry(honest, path, entry.oid, mode)
    merge = sim.commit_tree(tree, None, message="Merge", parents=[left, right], move=False)
    stderr = world.assert_rejected(merge, "layout-mode", path=path)
    assert what in stderr


# --- the hook's cache must not launder what its clock would refuse ---------------------


def test_a_rejected_push_does_not_let_an_expired_list_in_later(world: World,
                                                              tmp_path: Path) -> None:
    """Push 1 carries a valid commit C1 under an unsigned C2 and is refused. Once
    C1's list has expired, C1 alone must be refused too, not waved through
    because the hook's persistent cache remembers C1 as verified at push 1."""
    b, sim = world.base, world.sim
    trusted = sim.head
    push_time = datetime.now(UTC).replace(microsecond=0)
    data = sim.list_version(b.list_a, version=sim.next_version(b.list_a), images=[b.image_a],
                            created=sim.clock, expires=push_time + timedelta(hours=1))
    c1 = sim.commit(sim.signed_list(b.list_a, data, b.alice), b.alice)
    c2 = sim.publish(None, {b.list_b: [b.image_b]}, list_signer=b.bob)
    # What the hook does (gitreg.server.hook.check_update), with its clock set.
    cache_path = tmp_path / "verify-cache.sqlite"
    for head, now, rule in ((c2, push_time, "commit-signature"),
                            (c1, push_time + timedelta(hours=2), "list-expired")):
        cache = SqliteCache(cache_path)
        try:
            with pytest.raises(PolicyViolationError) as refused:
                Verifier(sim.store, cache, context=VerifyContext.for_push(now)).verify_range(
                    trusted, head)
        finally:
            cache.close()
        assert refused.value.rule == rule, refused.value.message


def test_a_policy_may_open_other_refs(world: World) -> None:
    """`signed.refs` lets the hook accept tags; main's rules and other refs stay shut."""
    import json

    from gitreg.model.policy import parse_policy

    sim = world.sim

    def open_tags(envelope: PolicyEnvelope) -> PolicyEnvelope:
        doc = json.loads(envelope.canonical_bytes())
        doc["signed"]["version"] += 1
        doc["signatures"] = []
        doc["signed"]["refs"] = ["refs/tags/*"]
        return parse_policy(json.dumps(doc).encode())

    sim.change_policy(open_tags)
    assert world.push("refs/heads/main").returncode == 0
    assert world.push(f"{sim.head}:refs/tags/v1").returncode == 0
    refused = world.push(f"{sim.head}:refs/heads/staging")
    assert refused.returncode != 0
    assert "[rule: ref-not-allowed]" in refused.stderr
