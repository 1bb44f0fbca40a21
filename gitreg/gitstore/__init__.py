"""Git access: capped object reads, signed commits, trees, push and fetch.

The I/O side of the registry: it reads and writes Git objects and talks to
remotes, and never decides trust (that is ``gitreg.verify``'s job).

The names below are loaded from their modules on first use: a reader of
objects (``gitreg verify``, a site, the hook) imports ``gitreg.gitstore.store``
without the writers, ``git`` subprocesses and remotes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

_HOMES = {
    "GitCommandError": "command",
    **dict.fromkeys(("ConcurrentUpdateError", "build_tree", "create_signed_commit", "identity",
                     "write_tree"), "commits"),
    **dict.fromkeys(("FetchResult", "PushResult", "fetch", "push", "remote_ref"), "remote"),
    **dict.fromkeys(("Change", "CommitInfo", "MissingObjectError", "ObjectTooLargeError",
                     "Person", "RegistryStore", "TreeEntry"), "store"),
}

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


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
