"""Git access: capped object reads, signed commits, trees, push and fetch.

The I/O side of the registry: it reads and writes Git objects and talks to
remotes, and never decides trust (that is ``gitreg.verify``'s job).
"""

from gitreg.gitstore.command import GitCommandError
from gitreg.gitstore.commits import (
    ConcurrentUpdateError,
    build_tree,
    create_signed_commit,
    identity,
    write_tree,
)
from gitreg.gitstore.remote import FetchResult, PushResult, fetch, push, remote_ref
from gitreg.gitstore.store import (
    Change,
    CommitInfo,
    MissingObjectError,
    ObjectTooLargeError,
    Person,
    RegistryStore,
    TreeEntry,
)

__all__ = [
    "Change",
    "CommitInfo",
    "ConcurrentUpdateError",
    "FetchResult",
    "GitCommandError",
    "MissingObjectError",
    "ObjectTooLargeError",
    "Person",
    "PushResult",
    "RegistryStore",
    "TreeEntry",
    "build_tree",
    "create_signed_commit",
    "fetch",
    "identity",
    "push",
    "remote_ref",
    "write_tree",
]
