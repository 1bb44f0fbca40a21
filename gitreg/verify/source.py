"""What the verifier needs from the Git layer: object ids and bytes, nothing else.

The verifier never opens a repository itself; the Git layer (gitstore)
implements ``ObjectSource``. Tests and benchmarks can implement it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MODE_BLOB = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_TREE = 0o040000
MODE_COMMIT = 0o160000  # a submodule (gitlink)


@dataclass(frozen=True)
class CommitFacts:
    """A commit as the verifier sees it."""

    oid: str
    parents: tuple[str, ...]
    tree: str
    # The gpgsig header (SSHSIG or OpenPGP armour) and the exact bytes it signs.
    signature: bytes | None
    signed_payload: bytes
    committer_time: int  # seconds since the epoch, as the (signed) commit claims
    summary: str


@dataclass(frozen=True)
class Entry:
    """One tree entry, found without loading its object."""

    path: str
    oid: str
    mode: int


@dataclass(frozen=True)
class Change:
    """A path that differs between two trees (``None`` where absent)."""

    path: str
    old: Entry | None
    new: Entry | None


class ObjectSource(Protocol):
    """Read access to one Git object database."""

    def commit(self, oid: str) -> CommitFacts:
        """The commit ``oid``; raises ``RejectedError`` if it is not a commit."""
        ...

    def entries(self, tree: str) -> list[Entry]:
        """Every non-tree entry below ``tree``, recursively, plus gitlinks."""
        ...

    def entry(self, tree: str, path: str) -> Entry | None:
        """The entry at ``path`` in ``tree``, if any."""
        ...

    def changes(self, old_tree: str | None, new_tree: str) -> list[Change]:
        """Paths that differ; cost follows the change, not the tree size."""
        ...

    def blob_size(self, oid: str) -> int:
        """The size of a blob, read from its header without loading it."""
        ...

    def blob(self, oid: str, max_size: int) -> bytes:
        """The blob's bytes; refuses (``RejectedError``) one over ``max_size`` unread."""
        ...

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is reachable from ``descendant`` (or equal)."""
        ...

    def merge_base(self, oids: tuple[str, ...]) -> str | None:
        """The best common ancestor of all ``oids``, if any."""
        ...

    def commits_between(self, old: str | None, new: str) -> list[str]:
        """Commits reachable from ``new`` but not ``old``, parents before children."""
        ...

    def write_tree(self, entries: dict[str, str]) -> str:
        """Write a tree of mode-100644 blobs (path -> blob oid); return its oid.

        Only objects are written, never refs: the merge rule needs the oid of
        the tree it computes to compare it with a merge commit's tree.
        """
        ...
