"""``gitreg init``: a new registry, its identity and first policy in one signed commit."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from gitreg.errors import GitregError, UnreachableError, UsageError
from gitreg.model.policy import fingerprint
from gitreg.model.registry_info import FORMAT_VERSION, RegistryInfo
from gitreg.publish.drafts import new_uuid
from gitreg.publish.policy_edit import add_signature, new_policy
from gitreg.publish.workcopy import BRANCH, write_file_atomic
from gitreg.signing.interface import Signer
from gitreg.verify import layout

DEFAULT_POLICY_DAYS = 365


@dataclass(frozen=True)
class NewRegistry:
    directory: Path
    info: RegistryInfo
    commit: str
    policy_fingerprint: str


def _prepare_directory(directory: Path) -> bool:
    """Check ``directory`` can hold a new registry; return whether we create it."""
    if directory.exists():
        if not directory.is_dir():
            raise UsageError(f"{directory}: exists and is not a directory")
        if any(directory.iterdir()):
            raise UsageError(f"{directory}: exists and is not empty")
        return False
    return True


def create_registry(directory: Path, *, name: str, root_signers: Sequence[Signer],
                    threshold: int, now: datetime,
                    policy_days: int = DEFAULT_POLICY_DAYS) -> NewRegistry:
    """Create ``directory`` as a registry working copy on branch ``main``.

    The policy is signed by every root signer; the first one signs the commit.
    On any failure the directory is removed again (if this call created it).
    """
    import pygit2

    from gitreg.gitstore.commits import build_tree, create_signed_commit
    from gitreg.gitstore.store import RegistryStore
    from gitreg.publish.publication import move_main, precheck, sync_index
    from gitreg.publish.workcopy import WorkingCopy

    if not root_signers:
        raise UsageError("give at least one --root-key")
    created = _prepare_directory(directory)
    info = RegistryInfo(FORMAT_VERSION, new_uuid(), name)
    envelope = new_policy(info.registry_id, [s.public_key() for s in root_signers],
                          threshold, now + timedelta(days=policy_days))
    for signer in root_signers:
        envelope = add_signature(envelope, signer)
    files = {layout.REGISTRY_FILE: info.canonical_bytes(),
             layout.POLICY_FILE: envelope.canonical_bytes()}
    try:
        try:
            repo = pygit2.init_repository(str(directory), initial_head=BRANCH)
        except (pygit2.GitError, OSError) as exc:
            raise UnreachableError(f"{directory}: cannot create a git repository: {exc}") \
                from exc
        store = RegistryStore(repo)
        tree = build_tree(store, None, dict(files))
        commit = create_signed_commit(store, tree, [], f"Create registry {name}\n\n"
                                      f"Registry {info.registry_id}, policy version 1.",
                                      root_signers[0], update_ref=None)
        precheck(store, None, commit, now)
        for path, data in files.items():
            write_file_atomic(directory / path, data)
        copy = WorkingCopy(workdir=directory.resolve(), git_dir=Path(repo.path).resolve(),
                           repo=repo, store=store)
        move_main(copy, None, commit, f"Create registry {name}")
        sync_index(copy)
    except GitregError:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            for child in list(directory.iterdir()):
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return NewRegistry(directory=directory, info=info, commit=commit,
                       policy_fingerprint=fingerprint(files[layout.POLICY_FILE]))
