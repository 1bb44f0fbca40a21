"""The Git access layer against real repositories made by the git CLI and pygit2."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pygit2.enums import FileMode

from gitreg.errors import RejectedError, SignatureError, UnreachableError, UsageError
from gitreg.gitstore import (
    Change,
    ConcurrentUpdateError,
    MissingObjectError,
    ObjectTooLargeError,
    RegistryStore,
    build_tree,
    create_signed_commit,
    fetch,
    identity,
    push,
    remote_ref,
    write_tree,
)
from gitreg.signing.ssh import SSHPublicKey, SSHSigner
from tests.fixtures.git_server import git, make_bare_repository, write_hook
from tests.fixtures.ssh_keys import write_allowed_signers

NOW = datetime.now(UTC)

MiB = 1024 * 1024


@pytest.fixture
def workcopy(tmp_path: Path) -> Path:
    path = tmp_path / "registry"
    git("init", "--quiet", "--initial-branch=main", path)
    return path


@pytest.fixture
def store(workcopy: Path) -> RegistryStore:
    return RegistryStore.open(workcopy)


@pytest.fixture(scope="session")
def alice_signer(ssh_keys) -> SSHSigner:
    return SSHSigner.from_file(ssh_keys["alice"].private)


def _commit_files(store: RegistryStore, files: dict[str, bytes | None], parents: list[str],
                  signer: SSHSigner, message: str = "change") -> str:
    base = store.commit_info(parents[0]).tree if parents else None
    tree = build_tree(store, base, files)
    return create_signed_commit(store, tree, parents, message, signer)


# --- capped reads ---------------------------------------------------------------


def _forge_loose_blob_header(repo: Path, claimed_size: int) -> str:
    """A loose object whose header claims ``claimed_size`` bytes but holds a few.

    Reading its header works; loading it fails (wrong length, wrong hash). So
    a reader that refuses it as too large provably never loaded it.
    """
    oid = "ab" + "cd" * 19
    directory = repo / ".git" / "objects" / oid[:2]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / oid[2:]).write_bytes(zlib.compress(b"blob %d\0tiny" % claimed_size))
    return oid


def test_read_blob_refuses_an_oversized_blob_from_its_header_alone(store, workcopy):
    oid = _forge_loose_blob_header(workcopy, 64 * MiB)
    assert store.object_header(oid) == ("blob", 64 * MiB)
    with pytest.raises(ObjectTooLargeError) as err:
        store.read_blob(oid, max_size=MiB)
    assert oid in str(err.value)
    assert f"{64 * MiB} bytes" in str(err.value)
    assert err.value.size == 64 * MiB
    # Control: had the blob been loaded, libgit2 would have failed instead.
    with pytest.raises(pygit2.GitError):
        store.repo.odb.read(pygit2.Oid(hex=oid))


def test_read_blob_returns_blobs_up_to_the_cap_and_refuses_one_byte_more(store):
    data = b"x" * 4096
    oid = str(store.repo.create_blob(data))
    assert store.read_blob(oid, max_size=4096) == data
    with pytest.raises(ObjectTooLargeError):
        store.read_blob(oid, max_size=4095)


def test_read_blob_refuses_other_types_and_missing_objects(store):
    tree = build_tree(store, None, {"a": b"1"})
    with pytest.raises(RejectedError, match="is a tree, not a blob"):
        store.read_blob(tree, max_size=MiB)
    with pytest.raises(MissingObjectError, match="0" * 40):
        store.read_blob("0" * 40, max_size=MiB)
    with pytest.raises(UsageError):
        store.read_blob("main", max_size=MiB)


def test_commit_over_the_commit_cap_is_refused_unread(store, alice_signer):
    head = _commit_files(store, {"a": b"1"}, [], alice_signer, message="x" * 5000)
    small = RegistryStore(store.repo, max_commit_size=1000)
    with pytest.raises(ObjectTooLargeError, match=head):
        small.commit_info(head)


# --- trees ----------------------------------------------------------------------


def _mktree_input(repo: Path, lines: list[str]) -> str:
    return subprocess.run(["git", "-C", str(repo), "mktree", "--missing"],
                          input="".join(line + "\n" for line in lines), text=True,
                          capture_output=True, check=True).stdout.strip()


def test_tree_entries_lists_every_mode_without_loading_blobs(store, workcopy):
    huge = _forge_loose_blob_header(workcopy, 10**9)
    blob = str(store.repo.create_blob(b"list"))
    sub = _mktree_input(workcopy, [f"100644 blob {blob}\tl.json",
                                   f"100755 blob {blob}\trun.sh"])
    root = _mktree_input(workcopy, [
        f"040000 tree {sub}\timagelists",
        f"100644 blob {huge}\tbig.bin",
        f"120000 blob {blob}\tlink",
        f"160000 commit {'12' * 20}\tsubmodule",
    ])
    entries = {e.path: (e.oid, e.filemode, e.type) for e in store.tree_entries(root)}
    assert entries == {
        "big.bin": (huge, 0o100644, "blob"),
        "imagelists/l.json": (blob, 0o100644, "blob"),
        "imagelists/run.sh": (blob, 0o100755, "blob"),
        "link": (blob, 0o120000, "blob"),
        "submodule": ("12" * 20, 0o160000, "commit"),
    }
    with_trees = [e.path for e in store.tree_entries(root, include_trees=True)]
    assert with_trees == ["big.bin", "imagelists", "imagelists/l.json", "imagelists/run.sh",
                          "link", "submodule"]
    assert store.tree_entry(root, "imagelists/run.sh").filemode == 0o100755
    assert store.tree_entry(root, "imagelists/none") is None
    assert store.tree_entry(root, "big.bin/x") is None


def test_an_empty_subtree_is_listed_so_a_layout_check_sees_it(store, workcopy):
    empty = _mktree_input(workcopy, [])
    blob = str(store.repo.create_blob(b"x"))
    root = _mktree_input(workcopy, [f"040000 tree {empty}\thidden",
                                    f"100644 blob {blob}\tgitreg.json"])
    paths = [(e.path, e.filemode) for e in store.tree_entries(root)]
    assert paths == [("gitreg.json", 0o100644), ("hidden", 0o040000)]
    base = _mktree_input(workcopy, [f"100644 blob {blob}\tgitreg.json"])
    assert [c.path for c in store.changed_paths(base, root)] == ["hidden"]


def test_a_malformed_tree_is_rejected(store, workcopy):
    # Written raw: a name with a slash, which git fsck and our parser refuse.
    blob = store.repo.create_blob(b"x")
    raw = b"100644 a/b\0" + blob.raw
    oid = store.repo.odb.write(pygit2.enums.ObjectType.TREE, raw)
    with pytest.raises(RejectedError, match="malformed"):
        list(store.tree_entries(str(oid)))
    dup = b"100644 a\0" + blob.raw + b"100644 a\0" + blob.raw
    oid = store.repo.odb.write(pygit2.enums.ObjectType.TREE, dup)
    with pytest.raises(RejectedError, match="same name"):
        list(store.tree_entries(str(oid)))
    dotgit = b"100644 .GIT\0" + blob.raw
    oid = store.repo.odb.write(pygit2.enums.ObjectType.TREE, dotgit)
    with pytest.raises(RejectedError, match="forbidden"):
        list(store.tree_entries(str(oid)))


def _big_registry(store: RegistryStore, n: int) -> tuple[str, str, str]:
    """Trees of ``n`` lists (+ .sig), and one where a single list changed."""
    repo = store.repo
    # The tree's size is what matters; its entries may share two blobs.
    a_list, a_sig = repo.create_blob(b"list\n"), repo.create_blob(b"sig\n")
    lists = repo.TreeBuilder()
    for i in range(n):
        lists.insert(f"{i:08x}-0000-4000-8000-000000000000.json", a_list, FileMode.BLOB)
        lists.insert(f"{i:08x}-0000-4000-8000-000000000000.json.sig", a_sig, FileMode.BLOB)
    before_lists = lists.write()
    changed = f"{n // 2:08x}-0000-4000-8000-000000000000.json"
    lists.insert(changed, repo.create_blob(b"list new\n"), FileMode.BLOB)
    after_lists = lists.write()

    def root(sub: pygit2.Oid) -> str:
        top = repo.TreeBuilder()
        top.insert("gitreg.json", repo.create_blob(b"{}\n"), FileMode.BLOB)
        top.insert("imagelists", sub, FileMode.TREE)
        top.insert("policy.json", repo.create_blob(b"{}\n"), FileMode.BLOB)
        return str(top.write())

    return root(before_lists), root(after_lists), f"imagelists/{changed}"


def test_changed_paths_in_a_10000_list_registry_reads_only_the_changed_trees(store):
    before, after, changed = _big_registry(store, 10_000)

    fresh = RegistryStore(store.repo)
    changes = fresh.changed_paths(before, after)
    assert [c.path for c in changes] == [changed]
    assert changes[0].old_oid != changes[0].new_oid
    assert changes[0].old_mode == changes[0].new_mode == 0o100644
    # Only the two roots and the two imagelists/ trees were parsed; no blob read.
    assert len(fresh._trees) == 4

    def best_of_three(action) -> float:
        times = []
        for _ in range(3):
            fresh_store = RegistryStore(store.repo)
            start = time.perf_counter()
            action(fresh_store)
            times.append(time.perf_counter() - start)
        return min(times)

    diff_time = best_of_three(lambda s: s.changed_paths(before, after))
    walk_time = best_of_three(lambda s: (list(s.tree_entries(before)),
                                         list(s.tree_entries(after))))
    print(f"changed_paths {diff_time * 1000:.1f} ms, full walk {walk_time * 1000:.1f} ms")
    assert diff_time < walk_time / 2, (diff_time, walk_time)


def test_changed_paths_reports_modes_types_and_whole_subtrees(store, workcopy):
    a = str(store.repo.create_blob(b"a"))
    b = str(store.repo.create_blob(b"b"))
    sub = _mktree_input(workcopy, [f"100644 blob {a}\tx", f"100644 blob {b}\ty"])
    old = _mktree_input(workcopy, [f"100644 blob {a}\tkeep", f"100644 blob {a}\tmode",
                                   f"100644 blob {a}\tbecomes-dir", f"040000 tree {sub}\tgone"])
    new = _mktree_input(workcopy, [f"100644 blob {a}\tkeep", f"100755 blob {a}\tmode",
                                   f"040000 tree {sub}\tbecomes-dir", f"120000 blob {b}\tnew"])
    assert store.changed_paths(old, new) == [
        Change("becomes-dir", a, None, 0o100644, None),
        Change("becomes-dir/x", None, a, None, 0o100644),
        Change("becomes-dir/y", None, b, None, 0o100644),
        Change("gone/x", a, None, 0o100644, None),
        Change("gone/y", b, None, 0o100644, None),
        Change("mode", a, a, 0o100644, 0o100755),
        Change("new", None, b, None, 0o120000),
    ]
    assert store.changed_paths(new, new) == []
    assert [c.path for c in store.changed_paths(None, old)] == [
        "becomes-dir", "gone/x", "gone/y", "keep", "mode"]


_names = st.sampled_from(["a", "b", "c", "d", "a.json", "a-b", "b0", "z"])
_contents = st.sampled_from([b"1", b"2", b"3"])
_tree_spec = st.recursive(
    st.tuples(st.sampled_from([0o100644, 0o100755, 0o120000]), _contents),
    lambda children: st.dictionaries(_names, children, max_size=5),
    max_leaves=12,
)


def _write_spec(repo: pygit2.Repository, spec: dict) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    for name, value in spec.items():
        if isinstance(value, dict):
            builder.insert(name, _write_spec(repo, value), FileMode.TREE)
        else:
            mode, content = value
            builder.insert(name, repo.create_blob(content), mode)
    return builder.write()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=st.dictionaries(_names, _tree_spec, max_size=6),
       new=st.dictionaries(_names, _tree_spec, max_size=6))
def test_changed_paths_agrees_with_comparing_full_listings(store, old, new):
    old_tree = str(_write_spec(store.repo, old))
    new_tree = str(_write_spec(store.repo, new))
    before = {e.path: (e.oid, e.filemode) for e in store.tree_entries(old_tree)}
    after = {e.path: (e.oid, e.filemode) for e in store.tree_entries(new_tree)}
    expected = []
    for path in sorted(before.keys() | after.keys()):
        if before.get(path) != after.get(path):
            old_oid, old_mode = before.get(path, (None, None))
            new_oid, new_mode = after.get(path, (None, None))
            expected.append(Change(path, old_oid, new_oid, old_mode, new_mode))
    assert store.changed_paths(old_tree, new_tree) == expected


def test_build_tree_nests_prunes_and_refuses_bad_paths(store):
    tree = build_tree(store, None, {"gitreg.json": b"g", "imagelists/a.json": b"a"})
    assert {e.path: e.filemode for e in store.tree_entries(tree)} == {
        "gitreg.json": 0o100644, "imagelists/a.json": 0o100644}
    pruned = build_tree(store, tree, {"imagelists/a.json": None, "missing": None})
    assert [e.path for e in store.tree_entries(pruned, include_trees=True)] == ["gitreg.json"]
    for bad in ["", "/abs", "a//b", "../x", "imagelists/.git", "a/./b"]:
        with pytest.raises(UsageError):
            build_tree(store, tree, {bad: b"x"})
    with pytest.raises(UsageError):
        build_tree(store, None, {"a": b"x", "a/b": b"y"})
    flat = write_tree(store, {"gitreg.json": store.entry(tree, "gitreg.json").oid,
                              "imagelists/a.json": store.entry(tree, "imagelists/a.json").oid})
    assert flat == tree
    blob = store.entry(tree, "gitreg.json").oid
    with pytest.raises(UsageError, match="also a directory in the same tree"):
        write_tree(store, {"a/b": blob, "a": blob})
    with pytest.raises(UsageError, match="conflicts with file 'a' in the same tree"):
        write_tree(store, {"a": blob, "a/b": blob})


# --- commits ----------------------------------------------------------------------


def test_create_signed_commit_passes_git_verify_commit_with_ssh(store, workcopy, ssh_keys,
                                                                alice_signer, tmp_path):
    first = _commit_files(store, {"gitreg.json": b"{}\n"}, [], alice_signer, "init")
    second = _commit_files(store, {"imagelists/a.json": b"a"}, [first], alice_signer, "add")
    assert store.ref("refs/heads/main") == second
    allowed = write_allowed_signers(tmp_path / "allowed", [ssh_keys["alice"]])
    ok = git("-c", "gpg.format=ssh", "-c", f"gpg.ssh.allowedSignersFile={allowed}",
             "verify-commit", "-v", second, cwd=workcopy, check=False)
    assert ok.returncode == 0, ok.stderr
    assert 'Good "git" signature for alice@example.org' in ok.stderr
    # The same check fails for a key git was not told about.
    other = write_allowed_signers(tmp_path / "other", [ssh_keys["bob"]])
    bad = git("-c", "gpg.format=ssh", "-c", f"gpg.ssh.allowedSignersFile={other}",
              "verify-commit", second, cwd=workcopy, check=False)
    assert bad.returncode != 0
    info = store.commit_info(second)
    assert info.parents == (first,)
    assert info.summary == "add"
    assert info.author.email == "endorser@example.org"
    assert SSHPublicKey.from_file(ssh_keys["alice"].public).verify(
        info.signed_payload, info.signature, namespace="git", at=NOW).key_id == alice_signer.key_id


def test_create_signed_commit_passes_git_verify_commit_with_openpgp(store, workcopy,
                                                                    openpgp_keyring,
                                                                    monkeypatch):
    from gitreg.signing.openpgp import OpenPGPSigner

    monkeypatch.setenv("GNUPGHOME", str(openpgp_keyring.gnupghome))
    signer = OpenPGPSigner(openpgp_keyring.fingerprints["alice"],
                           gnupghome=str(openpgp_keyring.gnupghome))
    tree = build_tree(store, None, {"gitreg.json": b"{}\n"})
    head = create_signed_commit(store, tree, [], "init", signer)
    ok = git("verify-commit", "--raw", head, cwd=workcopy, check=False)
    assert ok.returncode == 0, ok.stderr
    assert f"VALIDSIG {openpgp_keyring.fingerprints['alice']}" in ok.stderr
    assert store.commit_info(head).signature.startswith(b"-----BEGIN PGP SIGNATURE-----")


def test_git_made_ssh_signed_commit_is_extracted_as_signature_and_payload(
        store, workcopy, ssh_keys, tmp_path):
    (workcopy / "gitreg.json").write_text("{}\n")
    git("add", "gitreg.json", cwd=workcopy)
    git("-c", "gpg.format=ssh", "-c", f"user.signingkey={ssh_keys['bob'].private}",
        "commit", "-q", "-S", "-m", "signed by git", cwd=workcopy)
    head = store.resolve("HEAD")
    info = store.commit_info(head)
    assert info.signature is not None
    assert b"gpgsig" not in info.signed_payload
    assert info.signed_payload.startswith(b"tree ")
    assert info.signed_payload.endswith(b"signed by git\n")
    bob = SSHPublicKey.from_file(ssh_keys["bob"].public)
    assert bob.verify(info.signed_payload, info.signature, namespace="git",
                      at=NOW).key_id == bob.key_id
    with pytest.raises(SignatureError):
        bob.verify(info.signed_payload.replace(b"signed", b"forged"), info.signature,
                   namespace="git", at=NOW)
    # ssh-keygen agrees on what was signed.
    allowed = write_allowed_signers(tmp_path / "allowed", [ssh_keys["bob"]])
    (tmp_path / "payload").write_bytes(info.signed_payload)
    (tmp_path / "sig").write_bytes(info.signature)
    with (tmp_path / "payload").open("rb") as payload:
        verified = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I",
                                   "bob@example.org", "-n", "git", "-s", str(tmp_path / "sig")],
                                  stdin=payload, capture_output=True, check=False)
    assert verified.returncode == 0, verified.stderr


def test_unsigned_commit_has_no_signature_and_its_raw_bytes_as_payload(store, workcopy):
    (workcopy / "f").write_text("x")
    git("add", "f", cwd=workcopy)
    git("commit", "-q", "-m", "plain", cwd=workcopy)
    info = store.commit_info(store.resolve("main"))
    assert info.signature is None
    assert info.signed_payload == store.repo.odb.read(pygit2.Oid(hex=info.oid))[1]


def test_ref_moves_only_from_the_expected_commit(store, alice_signer):
    first = _commit_files(store, {"a": b"1"}, [], alice_signer)
    second = _commit_files(store, {"a": b"2"}, [first], alice_signer)
    tree = build_tree(store, store.commit_info(first).tree, {"a": b"3"})
    # A writer who still believes main is at `first` loses the race.
    with pytest.raises(ConcurrentUpdateError, match=second):
        create_signed_commit(store, tree, [first], "stale", alice_signer)
    assert store.ref("refs/heads/main") == second
    with pytest.raises(ConcurrentUpdateError):
        create_signed_commit(store, tree, [], "root again", alice_signer)
    loose = create_signed_commit(store, tree, [first], "no ref", alice_signer, update_ref=None)
    assert store.ref("refs/heads/main") == second
    assert store.commit_info(loose).parents == (first,)


def test_identity_comes_from_the_environment_then_git_config(store, monkeypatch):
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0130")
    person = identity(store, "committer")
    assert (person.name, person.email, person.time, person.offset) == (
        "Test Endorser", "endorser@example.org", 1700000000, 90)
    monkeypatch.delenv("GIT_AUTHOR_NAME")
    monkeypatch.delenv("GIT_AUTHOR_EMAIL")
    with pytest.raises(UsageError, match="author identity"):
        identity(store, "author")
    git("config", "--global", "user.name", "Config Name")
    git("config", "--global", "user.email", "config@example.org")
    assert identity(store, "author").name == "Config Name"
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
    assert identity(store, "author").time == 1704164645
    monkeypatch.setenv("GIT_AUTHOR_DATE", "not a date at all")
    with pytest.raises(UsageError, match="author identity"):
        identity(store, "author")


# --- history ------------------------------------------------------------------------


def test_commits_between_lists_every_branch_parents_first(store, alice_signer):
    a = _commit_files(store, {"f": b"a"}, [], alice_signer, "A")
    b = _commit_files(store, {"f": b"b"}, [a], alice_signer, "B")
    c = _commit_files(store, {"f": b"c"}, [b], alice_signer, "C")
    tree_d = build_tree(store, store.commit_info(a).tree, {"g": b"d"})
    d = create_signed_commit(store, tree_d, [a], "D", alice_signer, update_ref=None)
    m = create_signed_commit(store, store.commit_info(c).tree, [c, d], "M", alice_signer)

    order = store.commits_between(a, m)
    assert set(order) == {b, c, d, m}
    for commit in order:
        for parent in store.commit_info(commit).parents:
            if parent in order:
                assert order.index(parent) < order.index(commit)
    assert order[-1] == m
    assert store.commits_between(c, m) == [d, m]
    assert store.commits_between(None, m)[0] == a
    assert store.commits_between(m, m) == []
    assert store.is_descendant(m, d) and store.is_descendant(m, m)
    assert not store.is_descendant(c, d)
    assert store.merge_base((c, d)) == a
    assert store.merge_base((b, c, d)) == a


def test_unrelated_histories_have_no_merge_base(store, alice_signer):
    a = _commit_files(store, {"f": b"a"}, [], alice_signer)
    tree = build_tree(store, None, {"f": b"other"})
    other = create_signed_commit(store, tree, [], "root 2", alice_signer, update_ref=None)
    assert store.merge_base((a, other)) is None
    assert not store.is_descendant(other, a)


# --- hooks see quarantined objects -------------------------------------------------


HOOK_READING_QUARANTINE = """#!{python}
import sys
from gitreg.gitstore.store import RegistryStore
store = RegistryStore.open_from_env()
for line in sys.stdin:
    old, new, ref = line.split()
    info = store.commit_info(new)
    entry = store.tree_entry(new, "imagelists/a.json")
    data = store.read_blob(entry.oid, 1024)
    print(f"hook read {{info.summary!r}} {{data.decode()}} from {{ref}}", flush=True)
sys.exit(1)
"""


def test_a_pre_receive_hook_reads_pushed_objects_from_quarantine(store, workcopy, tmp_path,
                                                                 alice_signer):
    server = make_bare_repository(tmp_path / "server.git")
    write_hook(server, HOOK_READING_QUARANTINE.format(python=sys.executable))
    head = _commit_files(store, {"imagelists/a.json": b"payload-42"}, [], alice_signer, "hello")
    result = push(workcopy, str(server), "main", timeout=60)
    assert not result.accepted
    assert "hook read 'hello' payload-42 from refs/heads/main" in result.message
    assert "pre-receive hook declined" in result.summary
    # Rejected: the objects stayed in quarantine and were thrown away.
    assert git("-C", server, "cat-file", "-e", head, check=False).returncode != 0


# --- push and fetch ------------------------------------------------------------------


def test_push_then_fetch_into_a_tracking_ref(store, workcopy, tmp_path, alice_signer):
    server = make_bare_repository(tmp_path / "server.git")
    head = _commit_files(store, {"gitreg.json": b"{}"}, [], alice_signer)
    result = push(workcopy, str(server), timeout=60)
    assert result.accepted and result.summary == "[new branch]"
    mirror = make_bare_repository(tmp_path / "mirror.git")
    fetched = fetch(mirror, str(server), name="origin", timeout=60)
    assert (fetched.ref, fetched.old, fetched.new) == (remote_ref("origin"), None, head)
    assert fetched.updated
    again = fetch(mirror, str(server), name="origin", timeout=60)
    assert not again.updated
    assert RegistryStore.open(mirror).ref("refs/gitreg/remotes/origin/main") == head
    assert RegistryStore.open(mirror).ref("refs/heads/main") is None


def test_fetch_from_a_dead_port_is_unreachable_and_names_the_remote(tmp_path):
    mirror = make_bare_repository(tmp_path / "mirror.git")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://user:secret@127.0.0.1:{port}/registry.git"
    with pytest.raises(UnreachableError) as err:
        fetch(mirror, url, name="dead", timeout=30)
    assert f"127.0.0.1:{port}/registry.git" in str(err.value)
    assert "secret" not in str(err.value)
    assert RegistryStore.open(mirror).ref(remote_ref("dead")) is None


def test_fetch_from_a_repository_without_main_is_unreachable(tmp_path):
    empty = make_bare_repository(tmp_path / "empty.git")
    mirror = make_bare_repository(tmp_path / "mirror.git")
    with pytest.raises(UnreachableError, match="no branch main"):
        fetch(mirror, str(empty), name="empty", timeout=30)
    with pytest.raises(UnreachableError):
        fetch(mirror, str(tmp_path / "nowhere.git"), name="nowhere", timeout=30)


def test_push_to_a_dead_port_is_unreachable(store, workcopy, alice_signer):
    _commit_files(store, {"a": b"1"}, [], alice_signer)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UnreachableError, match=f"127.0.0.1:{port}"):
        push(workcopy, f"http://127.0.0.1:{port}/x.git", timeout=30)


def test_remote_names_and_missing_branches_are_usage_errors(store, workcopy, tmp_path):
    mirror = make_bare_repository(tmp_path / "mirror.git")
    for bad in ["", "../x", "a b", "-x", "x.lock"]:
        with pytest.raises(UsageError):
            fetch(mirror, str(workcopy), name=bad, timeout=30)
    with pytest.raises(UsageError):
        push(workcopy, str(mirror), "main", timeout=30)  # workcopy has no commit yet
