"""Read access to a registry's Git object database (pygit2), with size caps.

Every object is sized from its header before it is loaded, so a hostile push
or remote cannot make gitreg inflate a huge blob, tree or commit. Trees are
parsed by gitreg (gitreg/gitstore/tree_bytes.py, not libgit2's tree cache) so
that one parser decides what a tree holds, and tree comparison costs what
the change costs.

No working tree is ever checked out: everything is read from the object
database. ``RegistryStore`` also implements ``gitreg.verify.source.ObjectSource``.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import pygit2
from pygit2.enums import ObjectType, RepositoryOpenFlag, SortMode

from gitreg.errors import RejectedError, UsageError
from gitreg.gitstore.tree_bytes import ParsedTree, RawEntry, differing_window
from gitreg.verify import source as _source

if TYPE_CHECKING:
    from gitreg.verify.source import ObjectSource

ObjectKind = Literal["blob", "tree", "commit", "tag"]

MODE_TREE = 0o040000
MODE_BLOB = 0o100644
MODE_GITLINK = 0o160000

# A 10,000-list registry's imagelists/ tree is about 1.4 MB; the default
# leaves two orders of magnitude of headroom and still bounds memory.
DEFAULT_MAX_TREE_SIZE = 128 * 1024 * 1024
# Commits are a few hundred bytes plus a signature (RSA 16384 < 8 KiB).
DEFAULT_MAX_COMMIT_SIZE = 1024 * 1024
# The layout is two levels deep; anything far deeper is hostile.
MAX_TREE_DEPTH = 64
# Tree diffs kept per store (each a pair of tree ids; trees never change).
_KEPT_DIFFS = 16
_PARSED_TREE_CACHE = 64
# Object headers kept per store (an object's type and size never change): a
# cold verification asks for each list's and signature's several times.
_KEPT_HEADERS = 1 << 16

_KIND: dict[int, ObjectKind] = {
    int(ObjectType.BLOB): "blob",
    int(ObjectType.TREE): "tree",
    int(ObjectType.COMMIT): "commit",
    int(ObjectType.TAG): "tag",
}
_HEX_OID = re.compile(r"[0-9a-f]{40}")


class ObjectTooLargeError(RejectedError):
    """An object is over the size cap; it was refused before being loaded."""

    def __init__(self, oid: str, kind: str, size: int, limit: int) -> None:
        self.oid = oid
        self.size = size
        self.limit = limit
        super().__init__(f"{kind} {oid} is {size} bytes, over the limit of {limit} bytes")


class MissingObjectError(RejectedError):
    """An object the history refers to is not in the repository."""


@dataclass(frozen=True)
class TreeEntry:
    """One entry below a tree, found without loading its object."""

    path: str
    oid: str
    filemode: int
    type: ObjectKind


@dataclass(frozen=True)
class Change:
    """A path whose entry differs between two trees (``None`` where absent)."""

    path: str
    old_oid: str | None
    new_oid: str | None
    old_mode: int | None
    new_mode: int | None


@dataclass(frozen=True)
class Person:
    """An author or committer line of a commit."""

    name: str
    email: str
    time: int
    offset: int  # minutes east of UTC


@dataclass(frozen=True)
class CommitInfo:
    """What a commit claims, and the exact bytes its signature covers."""

    oid: str
    parents: tuple[str, ...]
    tree: str
    author: Person
    committer: Person
    time: int  # committer time, seconds since the epoch
    message: str
    # The gpgsig header (SSHSIG or OpenPGP armour), or None if unsigned.
    signature: bytes | None
    # The commit object without its gpgsig header: what the signature signs.
    signed_payload: bytes

    @property
    def summary(self) -> str:
        return self.message.split("\n", 1)[0]


# (mode, name, id) exactly as the tree object spells them.
class RegistryStore:
    """One registry repository (bare or not), read through pygit2."""

    def __init__(self, repo: pygit2.Repository, *,
                 max_tree_size: int = DEFAULT_MAX_TREE_SIZE,
                 max_commit_size: int = DEFAULT_MAX_COMMIT_SIZE) -> None:
        self._repo = repo
        self.max_tree_size = max_tree_size
        self.max_commit_size = max_commit_size
        self._trees: OrderedDict[str, ParsedTree] = OrderedDict()
        # The same two trees are diffed several times (pre-verification and the
        # walk; a site's state verdict and list index): on a flat 20,000-entry
        # tree each diff costs milliseconds.
        self._diffs: OrderedDict[tuple[str, str], tuple[Change, ...]] = OrderedDict()
        self._headers: dict[str, tuple[ObjectKind, int]] = {}

    # --- opening ------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> RegistryStore:
        """Open the repository at ``path`` (a bare repository or a working copy)."""
        try:
            repo = pygit2.Repository(str(path), flags=RepositoryOpenFlag.NO_SEARCH)
        except (pygit2.GitError, KeyError, ValueError, OSError) as exc:
            raise UsageError(f"{path}: not a Git repository ({exc})") from exc
        return cls(repo)

    @classmethod
    def open_from_env(cls) -> RegistryStore:
        """Open the repository git points a hook at (GIT_DIR, quarantine directories).

        During pre-receive the pushed objects sit in a quarantine directory
        named by GIT_OBJECT_DIRECTORY, with the repository's own objects as
        GIT_ALTERNATE_OBJECT_DIRECTORIES; libgit2 honours both with FROM_ENV.
        """
        path = os.environ.get("GIT_DIR", ".")
        try:
            repo = pygit2.Repository(path, flags=RepositoryOpenFlag.FROM_ENV)
        except (pygit2.GitError, KeyError, ValueError, OSError) as exc:
            raise UsageError(f"no Git repository from the environment "
                             f"(GIT_DIR={path!r}): {exc}") from exc
        return cls(repo)

    @property
    def repo(self) -> pygit2.Repository:
        """The pygit2 repository, for writers (commits, trees) in this package."""
        return self._repo

    @property
    def path(self) -> Path:
        """The Git directory (``.git`` of a working copy, or the bare repository)."""
        return Path(self._repo.path)

    @property
    def is_bare(self) -> bool:
        return bool(self._repo.is_bare)

    # --- names ----------------------------------------------------------------

    def resolve(self, rev: str) -> str:
        """The object id a revision (``main``, ``HEAD~2``, an id) names."""
        try:
            obj = self._repo.revparse_single(rev)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise UsageError(f"{self.path}: unknown revision {rev!r}") from exc
        return str(obj.id)

    def ref(self, name: str) -> str | None:
        """The commit id a reference points at, or None if it does not exist."""
        try:
            ref = self._repo.references.get(name)
        except (ValueError, pygit2.GitError) as exc:
            raise UsageError(f"invalid reference name {name!r}") from exc
        if ref is None:
            return None
        return str(ref.resolve().target)

    # --- objects --------------------------------------------------------------

    def _oid(self, oid: str | pygit2.Oid) -> pygit2.Oid:
        if isinstance(oid, pygit2.Oid):
            return oid
        if not _HEX_OID.fullmatch(oid):
            raise UsageError(f"not a full object id: {oid!r}")
        return pygit2.Oid(hex=oid)

    def object_header(self, oid: str | pygit2.Oid) -> tuple[ObjectKind, int]:
        """The type and size of an object, read without loading it."""
        known = self._headers.get(str(oid))
        if known is not None:
            return known
        key = self._oid(oid)
        try:
            kind, size = self._repo.odb.read_header(key)
        except KeyError:
            raise MissingObjectError(f"object {key} is not in {self.path}") from None
        except pygit2.GitError as exc:
            raise RejectedError(f"object {key} in {self.path} cannot be read: {exc}") from exc
        name = _KIND.get(int(kind))
        if name is None:
            raise RejectedError(f"object {key} in {self.path} has an unknown type {kind}")
        if len(self._headers) >= _KEPT_HEADERS:
            self._headers.clear()
        self._headers[str(key)] = (name, int(size))
        return name, int(size)

    def _read(self, oid: str | pygit2.Oid, kind: ObjectKind, limit: int) -> bytes:
        key = self._oid(oid)
        actual, size = self.object_header(key)
        if actual != kind:
            raise RejectedError(f"object {key} is a {actual}, not a {kind}")
        if size > limit:
            raise ObjectTooLargeError(str(key), kind, size, limit)
        try:
            _kind, data = self._repo.odb.read(key)
        except (KeyError, pygit2.GitError) as exc:
            raise RejectedError(f"{kind} {key} in {self.path} cannot be read: {exc}") from exc
        return bytes(data)

    def read_blob(self, oid: str | pygit2.Oid, max_size: int) -> bytes:
        """A blob's bytes; refuses one over ``max_size`` before loading it."""
        return self._read(oid, "blob", max_size)

    def _tree(self, oid: str | pygit2.Oid) -> ParsedTree:
        key = str(oid)
        cached = self._trees.get(key)
        if cached is not None:
            self._trees.move_to_end(key)
            return cached
        raw = self._read(oid, "tree", self.max_tree_size)
        # Checked to tile before its first answer (a comparison checks two trees
        # in one pass over their shared bytes). Duplicate names are refused
        # wherever entries are parsed, and by git fsck, which receive.fsckObjects
        # and transfer.fsckObjects run on the way in.
        parsed = ParsedTree(key, raw)
        self._trees[key] = parsed
        if len(self._trees) > _PARSED_TREE_CACHE:
            self._trees.popitem(last=False)
        return parsed

    def _tree_of(self, commit_or_tree: str | pygit2.Oid) -> str:
        kind, _size = self.object_header(commit_or_tree)
        if kind == "tree":
            return str(commit_or_tree)
        if kind == "commit":
            return self.commit_info(commit_or_tree).tree
        raise RejectedError(f"object {commit_or_tree} is a {kind}, not a commit or tree")

    def tree_entries(self, commit_or_tree: str | pygit2.Oid, *,
                     include_trees: bool = False) -> Iterator[TreeEntry]:
        """Every entry below a tree (or a commit's tree), recursively, in tree order.

        Blobs are never loaded. Gitlinks (submodules) are listed, not followed.
        Subtrees are listed only with ``include_trees``, except empty ones,
        which are always listed so that a check of the layout sees them.
        """
        root = self._tree_of(commit_or_tree)
        # Depth-first with explicit iterators: tree order, no recursion limit.
        stack: list[tuple[str, str, int, Iterator[RawEntry]]] = [
            ("", root, 0, iter(self._tree(root).entries))]
        while stack:
            prefix, tree_oid, depth, pending = stack[-1]
            raw = next(pending, None)
            if raw is None:
                stack.pop()
                continue
            mode_b, name_b, id_b = raw
            path = prefix + _entry_name(name_b, tree_oid)
            mode = int(mode_b, 8)
            kind = _entry_kind(mode, path, tree_oid)
            oid = id_b.hex()
            if kind != "tree":
                yield TreeEntry(path, oid, mode, kind)
                continue
            if depth + 1 >= MAX_TREE_DEPTH:
                raise RejectedError(f"tree {root}: {path} is nested too deeply")
            children = self._tree(oid).entries
            if include_trees or not children:
                yield TreeEntry(path, oid, mode, kind)
            stack.append((path + "/", oid, depth + 1, iter(children)))

    def tree_entry(self, commit_or_tree: str | pygit2.Oid, path: str) -> TreeEntry | None:
        """The entry at ``path`` (``a/b/c``), or None if there is none."""
        tree_oid = self._tree_of(commit_or_tree)
        parts = path.split("/")
        for i, part in enumerate(parts):
            found = self._tree(tree_oid).lookup(part.encode("utf-8"))
            if found is None:
                return None
            mode = int(found[0], 8)
            kind = _entry_kind(mode, path, tree_oid)
            if i == len(parts) - 1:
                return TreeEntry(path, found[2].hex(), mode, kind)
            if kind != "tree":
                return None
            tree_oid = found[2].hex()
        return None

    def changed_paths(self, old_tree: str | pygit2.Oid | None,
                      new_tree: str | pygit2.Oid) -> list[Change]:
        """Paths whose entry differs between two trees (or commits), sorted by path.

        Subtrees with equal ids are skipped unread, and within two differing
        trees only the entries between their common head and tail are
        compared: the cost follows the change, not the size of the registry.
        A subtree that appears or disappears reports every entry below it.
        """
        new_root = self._tree_of(new_tree)
        if old_tree is None:
            return [Change(e.path, None, e.oid, None, e.filemode)
                    for e in self.tree_entries(new_root)]
        old_root = self._tree_of(old_tree)
        kept = self._diffs.get((old_root, new_root))
        if kept is not None:
            self._diffs.move_to_end((old_root, new_root))
            return list(kept)
        changes: list[Change] = []
        self._compare(old_root, new_root, "", 0, changes)
        changes.sort(key=lambda c: c.path)
        self._diffs[(old_root, new_root)] = tuple(changes)
        if len(self._diffs) > _KEPT_DIFFS:
            self._diffs.popitem(last=False)
        return changes

    def _compare(self, old_oid: str, new_oid: str, prefix: str, depth: int,
                 out: list[Change]) -> None:
        if old_oid == new_oid:
            return
        if depth >= MAX_TREE_DEPTH:
            raise RejectedError(f"tree {new_oid}: {prefix} is nested too deeply")
        old_tree, new_tree = self._tree(old_oid), self._tree(new_oid)
        old_window, new_window = differing_window(old_tree, new_tree)
        old_by_name = {e[1]: e for e in old_window}
        new_by_name = {e[1]: e for e in new_window}
        if len(old_by_name) != len(old_window) or len(new_by_name) != len(new_window):
            bad = old_oid if len(old_by_name) != len(old_window) else new_oid
            raise RejectedError(f"tree {bad} has two entries with the same name")
        old_tree.remember(old_window)
        new_tree.remember(new_window)
        for name_b in sorted(old_by_name.keys() | new_by_name.keys()):
            before, after = old_by_name.get(name_b), new_by_name.get(name_b)
            if before == after:
                continue
            path = prefix + _entry_name(name_b, new_oid if after else old_oid)
            old_mode = int(before[0], 8) if before else None
            new_mode = int(after[0], 8) if after else None
            old_kind = _entry_kind(old_mode, path, old_oid) if old_mode is not None else None
            new_kind = _entry_kind(new_mode, path, new_oid) if new_mode is not None else None
            if before and after and old_kind == "tree" and new_kind == "tree":
                old_sub, new_sub = before[2].hex(), after[2].hex()
                # An empty tree is itself an entry (see tree_entries); filling or
                # emptying it makes that entry disappear or appear.
                old_empty = self._tree(old_sub).is_empty
                new_empty = self._tree(new_sub).is_empty
                if old_empty and not new_empty:
                    out.append(Change(path, old_sub, None, old_mode, None))
                elif new_empty and not old_empty:
                    out.append(Change(path, None, new_sub, None, new_mode))
                self._compare(old_sub, new_sub, path + "/", depth + 1, out)
                continue
            if before and after and old_kind != "tree" and new_kind != "tree":
                out.append(Change(path, before[2].hex(), after[2].hex(), old_mode, new_mode))
                continue
            # A blob replaced by a tree (or the reverse): a removal plus additions.
            removed = [Change(path, before[2].hex(), None, old_mode, None)] if before else []
            if before and old_kind == "tree":
                removed = [Change(e.path, e.oid, None, e.filemode, None)
                           for e in self._entries_below(before[2].hex(), path)]
            added = [Change(path, None, after[2].hex(), None, new_mode)] if after else []
            if after and new_kind == "tree":
                added = [Change(e.path, None, e.oid, None, e.filemode)
                         for e in self._entries_below(after[2].hex(), path)]
            if (len(removed) == 1 and len(added) == 1
                    and removed[0].path == added[0].path):
                # Only an empty tree swapped with a blob lands on one path.
                gone, came = removed[0], added[0]
                out.append(Change(path, gone.old_oid, came.new_oid, gone.old_mode, came.new_mode))
                continue
            out.extend(removed)
            out.extend(added)

    def _entries_below(self, tree_oid: str, path: str) -> Iterator[TreeEntry]:
        entries = list(self.tree_entries(tree_oid))
        if not entries:
            yield TreeEntry(path, tree_oid, MODE_TREE, "tree")
            return
        for e in entries:
            yield TreeEntry(f"{path}/{e.path}", e.oid, e.filemode, e.type)

    # --- commits and history --------------------------------------------------

    def commit_info(self, oid: str | pygit2.Oid) -> CommitInfo:
        """The facts of one commit; refuses a commit over the size cap unread."""
        key = self._oid(oid)
        kind, size = self.object_header(key)
        if kind != "commit":
            raise RejectedError(f"object {key} is a {kind}, not a commit")
        if size > self.max_commit_size:
            raise ObjectTooLargeError(str(key), "commit", size, self.max_commit_size)
        try:
            # The header said commit; the stubs type every lookup as Object.
            commit = cast("pygit2.Commit", self._repo[key])
            # The stubs promise bytes; pygit2 gives (None, None) when unsigned.
            extracted: tuple[bytes | None, bytes | None] = commit.gpg_signature
            signature, payload = extracted
            if signature is None or payload is None:
                signature, payload = None, commit.read_raw()
            return CommitInfo(
                oid=str(key),
                parents=tuple(str(p) for p in commit.parent_ids),
                tree=str(commit.tree_id),
                author=_person(commit.author),
                committer=_person(commit.committer),
                time=int(commit.commit_time),
                message=bytes(commit.raw_message).decode("utf-8", errors="replace"),
                signature=bytes(signature) if signature is not None else None,
                signed_payload=bytes(payload),
            )
        except (pygit2.GitError, ValueError) as exc:
            raise RejectedError(f"commit {key} in {self.path} is malformed: {exc}") from exc

    def is_descendant(self, new: str | pygit2.Oid, old: str | pygit2.Oid) -> bool:
        """Whether ``new`` is ``old`` or has it in its history."""
        a, b = self._oid(new), self._oid(old)
        if a == b:
            return True
        try:
            return bool(self._repo.descendant_of(a, b))
        except (KeyError, pygit2.GitError) as exc:
            raise MissingObjectError(f"{self.path}: cannot compare {a} and {b}: {exc}") from exc

    def merge_base(self, oids: tuple[str, ...]) -> str | None:
        """The best common ancestor of all ``oids``, or None if they share none."""
        keys: list[str | pygit2.Oid] = [self._oid(o) for o in oids]
        if not keys:
            raise UsageError("merge_base needs at least one commit")
        try:
            if len(keys) == 1:
                base = keys[0]
            elif len(keys) == 2:
                base = self._repo.merge_base(keys[0], keys[1])
            else:
                base = self._repo.merge_base_octopus(keys)
        except (KeyError, pygit2.GitError) as exc:
            raise MissingObjectError(f"{self.path}: no merge base of {oids}: {exc}") from exc
        return str(base) if base is not None else None

    def commits_between(self, old: str | pygit2.Oid | None,
                        new: str | pygit2.Oid) -> list[str]:
        """Commits reachable from ``new`` and not from ``old``, parents before children.

        Follows every parent, not only the first. libgit2 parses the commits
        while walking; callers read each one through ``commit_info``, which
        applies the size cap (a push's objects are bounded by
        ``receive.maxInputSize`` before the hook runs).
        """
        head = self._oid(new)
        self.commit_info(head)
        try:
            walker = self._repo.walk(head, SortMode.TOPOLOGICAL | SortMode.REVERSE)
            if old is not None:
                walker.hide(self._oid(old))
            return [str(c.id) for c in walker]
        except (KeyError, pygit2.GitError) as exc:
            raise MissingObjectError(f"{self.path}: history from {head} "
                                     f"cannot be walked: {exc}") from exc

    # --- gitreg.verify.source.ObjectSource ------------------------------------

    def commit(self, oid: str) -> _source.CommitFacts:
        info = self.commit_info(oid)
        return _source.CommitFacts(
            oid=info.oid, parents=info.parents, tree=info.tree,
            signature=info.signature, signed_payload=info.signed_payload,
            committer_time=info.time, summary=info.summary,
        )

    def entries(self, tree: str) -> list[_source.Entry]:
        return [_source.Entry(e.path, e.oid, e.filemode) for e in self.tree_entries(tree)]

    def entry(self, tree: str, path: str) -> _source.Entry | None:
        found = self.tree_entry(tree, path)
        return _source.Entry(found.path, found.oid, found.filemode) if found else None

    def changes(self, old_tree: str | None, new_tree: str) -> list[_source.Change]:
        return [
            _source.Change(
                c.path,
                _source.Entry(c.path, c.old_oid, c.old_mode)
                if c.old_oid is not None and c.old_mode is not None else None,
                _source.Entry(c.path, c.new_oid, c.new_mode)
                if c.new_oid is not None and c.new_mode is not None else None,
            )
            for c in self.changed_paths(old_tree, new_tree)
        ]

    def blob_size(self, oid: str) -> int:
        kind, size = self.object_header(oid)
        if kind != "blob":
            raise RejectedError(f"object {oid} is a {kind}, not a blob")
        return size

    def blob(self, oid: str, max_size: int) -> bytes:
        return self.read_blob(oid, max_size)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self.is_descendant(descendant, ancestor)

    def write_tree(self, entries: dict[str, str]) -> str:
        from gitreg.gitstore.commits import write_tree

        return write_tree(self, entries)


def _entry_name(name: bytes, tree: str) -> str:
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedError(f"tree {tree}: entry name {name!r} is not UTF-8") from None
    # git fsck refuses these too; a checkout would misplace them.
    if text in {".", ".."} or text.lower() == ".git":
        raise RejectedError(f"tree {tree}: forbidden entry name {text!r}")
    return text


def _entry_kind(mode: int, path: str, tree: str) -> ObjectKind:
    kind = mode & 0o170000
    if kind == MODE_TREE:
        return "tree"
    if kind == MODE_GITLINK:
        return "commit"
    if kind in (0o100000, 0o120000):
        return "blob"
    raise RejectedError(f"tree {tree}: {path} has an invalid mode {mode:o}")


def _person(sig: pygit2.Signature) -> Person:
    return Person(
        name=bytes(sig.raw_name).decode("utf-8", errors="replace"),
        email=bytes(sig.raw_email).decode("utf-8", errors="replace"),
        time=int(sig.time),
        offset=int(sig.offset),
    )


if TYPE_CHECKING:
    def _implements_object_source(store: RegistryStore) -> ObjectSource:
        return store
