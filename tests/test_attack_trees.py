"""Hostile tree objects against the store's byte-level tree reading.

The store compares two trees on their raw bytes (common prefix and suffix,
then only the entries between) and finds an entry by searching the bytes for
its name. Names and object ids below are drawn from a tiny alphabet of space,
NUL, mode digits and name characters, so that the searched bytes keep turning
up inside other names and inside binary ids: every answer must still equal
the one a full parse of both trees gives.
"""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pygit2.enums import ObjectType

from gitreg.errors import RejectedError
from gitreg.gitstore.store import Change, RegistryStore, TreeEntry

_MODES = [b"100644", b"100755", b"120000"]
# Characters a name shares with the separators around it (space, digits).
_names = st.text(alphabet="a0 1.-", min_size=1, max_size=5).filter(
    lambda n: n not in {".", ".."})
_oids = st.lists(st.sampled_from(list(b" a\x000-1.")), min_size=20, max_size=20).map(bytes)
_entry = st.tuples(st.sampled_from(_MODES), _oids)
_trees = st.dictionaries(_names, _entry, max_size=12)


def _write(repo: pygit2.Repository, tree: dict[str, tuple[bytes, bytes]]) -> str:
    raw = b"".join(mode + b" " + name.encode() + b"\0" + oid
                   for name, (mode, oid) in sorted(tree.items(), key=lambda i: i[0].encode()))
    return str(repo.odb.write(ObjectType.TREE, raw))


def _reference_changes(old: dict[str, tuple[bytes, bytes]],
                       new: dict[str, tuple[bytes, bytes]]) -> list[Change]:
    changes = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        changes.append(Change(name, before[1].hex() if before else None,
                              after[1].hex() if after else None,
                              int(before[0], 8) if before else None,
                              int(after[0], 8) if after else None))
    return changes


def _expected_entry(tree: dict[str, tuple[bytes, bytes]], name: str) -> TreeEntry | None:
    found = tree.get(name)
    if found is None:
        return None
    mode = int(found[0], 8)
    return TreeEntry(name, found[1].hex(), mode, "blob")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> pygit2.Repository:
    path: Path = tmp_path_factory.mktemp("hostile-trees")
    return pygit2.init_repository(str(path), bare=True)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=_trees, edits=_trees, removed=st.sets(_names, max_size=4),
       probes=st.lists(_names, max_size=6))
def test_byte_level_comparison_and_lookup_agree_with_a_full_parse(
        repo: pygit2.Repository, old: dict[str, tuple[bytes, bytes]],
        edits: dict[str, tuple[bytes, bytes]], removed: set[str], probes: list[str]) -> None:
    new = {name: entry for name, entry in {**old, **edits}.items() if name not in removed}
    old_oid, new_oid = _write(repo, old), _write(repo, new)

    store = RegistryStore(repo)
    assert store.changed_paths(old_oid, new_oid) == _reference_changes(old, new)
    assert store.changed_paths(new_oid, old_oid) == _reference_changes(new, old)
    # Lookups after a comparison (entries remembered from the windows) and in a
    # fresh store (found by searching the bytes) both answer as a full parse does.
    for lookups in (store, RegistryStore(repo)):
        for name in [*old, *new, *probes]:
            for tree, oid in ((old, old_oid), (new, new_oid)):
                assert lookups.tree_entry(oid, name) == _expected_entry(tree, name)


def test_a_name_hidden_inside_another_name_is_not_found(repo: pygit2.Repository) -> None:
    oid = bytes(20)
    # " x.json\0" occurs inside the entry named "a x.json"; no entry is named x.json.
    tree = _write(repo, {"a x.json": (b"100644", oid), "b": (b"100644", b" x.json\0" + oid[:12])})
    assert RegistryStore(repo).tree_entry(tree, "x.json") is None
    assert RegistryStore(repo).tree_entry(tree, "a x.json") == TreeEntry(
        "a x.json", oid.hex(), 0o100644, "blob")


def test_duplicate_names_in_the_changed_window_are_refused(repo: pygit2.Repository) -> None:
    oid = bytes(20)
    old = str(repo.odb.write(ObjectType.TREE, b"100644 a\0" + oid))
    dup = str(repo.odb.write(ObjectType.TREE, b"100644 a\0" + oid + b"100644 b\0" + oid
                             + b"100644 b\0" + bytes([1]) * 20))
    with pytest.raises(RejectedError, match="same name"):
        RegistryStore(repo).changed_paths(old, dup)


def test_a_common_tail_that_starts_inside_a_name_is_realigned(repo: pygit2.Repository) -> None:
    """An entry's last bytes spell a whole other entry: ``q100644 r`` ends with the
    bytes of entry ``r`` (same id), so the trees' common tail starts on an entry
    boundary in one tree and inside a name in the other."""
    same, other = bytes([7]) * 20, bytes([9]) * 20
    old = {"q100644 r": (b"100644", same), "s": (b"100644", other)}
    new = {"p": (b"100644", other), "r": (b"100644", same), "s": (b"100644", other)}
    old_oid, new_oid = _write(repo, old), _write(repo, new)
    assert RegistryStore(repo).changed_paths(old_oid, new_oid) == _reference_changes(old, new)
    assert RegistryStore(repo).changed_paths(new_oid, old_oid) == _reference_changes(new, old)


@pytest.mark.parametrize("where", ["window", "tail", "head"])
def test_a_malformed_tree_is_refused_by_a_comparison(repo: pygit2.Repository,
                                                     where: str) -> None:
    """Trees are checked to tile whichever way they are read: by a comparison that
    parses only its window as much as by a full parse."""
    oid = bytes(20)
    good = [b"100644 a\0" + oid, b"100644 m\0" + oid, b"100644 z\0" + oid]
    bad_entry = b"100644 q/r\0" + oid  # a slash in a name: no tree git writes
    old_raw = b"".join(good)
    if where == "window":
        new_raw = good[0] + bad_entry + good[2]
    elif where == "tail":
        old_raw = b"".join(good) + bad_entry
        new_raw = good[0] + b"100644 n\0" + oid + good[2] + bad_entry
    else:
        old_raw = bad_entry + b"".join(good)
        new_raw = bad_entry + good[0] + b"100644 n\0" + oid + good[2]
    old = str(repo.odb.write(ObjectType.TREE, old_raw))
    new = str(repo.odb.write(ObjectType.TREE, new_raw))
    with pytest.raises(RejectedError, match="malformed"):
        RegistryStore(repo).changed_paths(old, new)
    with pytest.raises(RejectedError, match="malformed"):
        RegistryStore(repo).tree_entry(new, "a")
