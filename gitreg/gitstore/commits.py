"""Writing trees and signed commits straight into the object database.

Commits are signed the way git signs them (a ``gpgsig`` header over the
commit without it; SSHSIG namespace ``git``), so ``git verify-commit``
accepts what gitreg writes and gitreg accepts what ``git commit -S`` writes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, cast

import pygit2
from pygit2.enums import FileMode

from gitreg.errors import GitregError, UsageError
from gitreg.gitstore.command import run_git
from gitreg.gitstore.store import RegistryStore
from gitreg.signing.interface import NAMESPACE_GIT, Signer

_UNSET: Final = object()
_IDENT = re.compile(r"(.*) <(.*)> (\d+) ([+-])(\d{2})(\d{2})")


class ConcurrentUpdateError(GitregError):
    """A reference moved while a commit was being made; nothing was updated."""


def _repository(store: RegistryStore | pygit2.Repository) -> pygit2.Repository:
    return store.repo if isinstance(store, RegistryStore) else store


def _check_path(path: str) -> list[str]:
    parts = path.split("/")
    if not path or any(p in {"", ".", ".."} or p.lower() == ".git" or "\0" in p
                       for p in parts):
        raise UsageError(f"invalid path for a registry tree: {path!r}")
    return parts


def build_tree(store: RegistryStore | pygit2.Repository,
               base_tree: str | pygit2.Oid | None,
               changes: Mapping[str, bytes | None]) -> str:
    """The id of ``base_tree`` with ``changes`` applied (path -> new bytes, or None to remove).

    Blobs are written with mode 100644; subtrees (``imagelists/``) are
    created as needed and dropped when they become empty. No working tree
    or index is involved.
    """
    base = pygit2.Oid(hex=str(base_tree)) if base_tree is not None else None
    return str(_apply(_repository(store), base, _nested(changes, "change")))


def _nested(entries: Mapping[str, object], what: str) -> dict[str, object]:
    """``entries`` (path -> value) as one dict per directory; ``what`` names them in errors."""
    nested: dict[str, object] = {}
    for path, value in entries.items():
        parts = _check_path(path)
        node = nested
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"path {path!r} conflicts with file {part!r} in the same {what}")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise UsageError(f"path {path!r} is also a directory in the same {what}")
        node[parts[-1]] = value
    return nested


def _apply(repo: pygit2.Repository, base: pygit2.Oid | None,
           changes: dict[str, object]) -> pygit2.Oid:
    try:
        builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
        for name, change in sorted(changes.items()):
            existing = builder.get(name)
            if isinstance(change, dict):
                sub_base = (existing.id if existing is not None
                            and existing.filemode == FileMode.TREE else None)
                sub = _apply(repo, sub_base, change)
                if existing is not None:
                    builder.remove(name)
                if len(cast("pygit2.Tree", repo[sub])) > 0:
                    builder.insert(name, sub, FileMode.TREE)
            elif change is None:
                if existing is not None:
                    builder.remove(name)
            elif isinstance(change, bytes):
                builder.insert(name, repo.create_blob(change), FileMode.BLOB)
            else:
                raise UsageError(f"content for {name!r} must be bytes or None")
        return builder.write()
    except (pygit2.GitError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot build tree from {base}: {exc}") from exc


def write_tree(store: RegistryStore | pygit2.Repository, entries: Mapping[str, str]) -> str:
    """Write a tree of mode-100644 blobs that already exist (path -> blob id)."""
    nested = _nested({path: pygit2.Oid(hex=oid) for path, oid in entries.items()}, "tree")
    return str(_write_nested(_repository(store), nested))


def _write_nested(repo: pygit2.Repository, node: dict[str, object]) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    try:
        for name, value in node.items():
            if isinstance(value, dict):
                builder.insert(name, _write_nested(repo, value), FileMode.TREE)
            elif isinstance(value, pygit2.Oid):
                builder.insert(name, value, FileMode.BLOB)
        return builder.write()
    except (pygit2.GitError, ValueError) as exc:
        raise UsageError(f"cannot write tree: {exc}") from exc


# --- identities ----------------------------------------------------------------


def identity(store: RegistryStore | pygit2.Repository,
             role: str = "committer") -> pygit2.Signature:
    """The author or committer ``git commit`` would record in this repository.

    Asked from ``git var`` so that GIT_<ROLE>_NAME/EMAIL/DATE, GIT_CONFIG_GLOBAL
    and every date format git accepts behave exactly as with git (libgit2
    reads neither GIT_CONFIG_GLOBAL nor the GIT_* identity variables).
    """
    repo = _repository(store)
    variable = "GIT_AUTHOR_IDENT" if role == "author" else "GIT_COMMITTER_IDENT"
    run = run_git(["-C", repo.path, "var", variable], timeout=30, what=f"repository {repo.path}")
    match = _IDENT.fullmatch(run.stdout.strip())
    if run.returncode != 0 or match is None:
        reason = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "no identity"
        raise UsageError(f"no usable {role} identity: {reason}",
                         hint="set user.name and user.email (git config), or "
                              f"GIT_{role.upper()}_NAME and GIT_{role.upper()}_EMAIL")
    name, email, seconds, sign, hours, minutes = match.groups()
    offset = int(hours) * 60 + int(minutes)
    try:
        return pygit2.Signature(name, email, int(seconds), -offset if sign == "-" else offset)
    except (ValueError, pygit2.GitError) as exc:
        raise UsageError(f"invalid {role} identity {name!r} <{email}>: {exc}") from exc


# --- signed commits ----------------------------------------------------------------


def create_signed_commit(store: RegistryStore | pygit2.Repository,
                         tree: str | pygit2.Oid,
                         parents: list[str] | tuple[str, ...],
                         message: str,
                         signer: Signer,
                         *,
                         author: pygit2.Signature | None = None,
                         committer: pygit2.Signature | None = None,
                         update_ref: str | None = "refs/heads/main",
                         expected_old: str | object | None = _UNSET) -> str:
    """Write a commit signed by ``signer`` and (optionally) move ``update_ref`` to it.

    The reference moves only if it still points at ``expected_old`` (by
    default the first parent, or absent for a root commit); otherwise
    ``ConcurrentUpdateError`` is raised and nothing changes. In a working
    copy the index and files are left as they are: callers that wrote the
    files first keep them in step.
    """
    repo = _repository(store)
    author = author or identity(repo, "author")
    committer = committer or identity(repo, "committer")
    if not message.endswith("\n"):
        message += "\n"
    try:
        parent_ids: list[str | pygit2.Oid] = [pygit2.Oid(hex=str(p)) for p in parents]
        # The stubs say Oid; pygit2 returns the commit text as a str.
        buffer = str(repo.create_commit_string(
            author, committer, message, pygit2.Oid(hex=str(tree)), parent_ids))
    except (pygit2.GitError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot build commit on tree {tree}: {exc}") from exc
    signature = signer.sign(buffer.encode("utf-8"), namespace=NAMESPACE_GIT)
    try:
        oid = repo.create_commit_with_signature(buffer, signature.decode("ascii").rstrip("\n"))
    except (pygit2.GitError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot write signed commit on tree {tree}: {exc}") from exc
    if update_ref is not None:
        expected = (str(parents[0]) if parents else None) if expected_old is _UNSET \
            else expected_old
        _move_ref(repo, update_ref, str(oid), expected if isinstance(expected, str) else None,
                  message.split("\n", 1)[0])
    return str(oid)


def _move_ref(repo: pygit2.Repository, name: str, new: str, expected: str | None,
              summary: str) -> None:
    try:
        with repo.transaction() as txn:
            txn.lock_ref(name)
            ref = repo.references.get(name)
            current = str(ref.target) if ref is not None else None
            if current != expected:
                raise ConcurrentUpdateError(
                    f"{name} in {repo.path} moved to {current or 'nothing'} "
                    f"while expecting {expected or 'nothing'}; commit {new} left unreferenced",
                    hint="fetch, rebase your change and try again")
            txn.set_target(name, pygit2.Oid(hex=new), message=f"commit (gitreg): {summary}")
    except pygit2.GitError as exc:
        raise GitregError(f"cannot update {name} in {repo.path}: {exc}") from exc
