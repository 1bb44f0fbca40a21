"""A registry working copy: the endorser's git clone of a registry, with drafts.

The working tree is the draft: endorser commands edit ``policy.json`` and
``imagelists/<uuid>.json`` there (always as valid canonical JSON), and
``gitreg publish`` turns what differs from ``main`` into one signed commit.
The published state is always read from the ``main`` commit, never from the
working tree, so a stray edit cannot pass for something already signed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitreg.durable import write_atomic
from gitreg.errors import InvalidDocumentError, Problem, UnreachableError, UsageError
from gitreg.gitstore.store import RegistryStore
from gitreg.model.imagelist import Imagelist, parse_imagelist
from gitreg.model.policy import PolicyEnvelope, parse_policy
from gitreg.model.registry_info import RegistryInfo
from gitreg.publish.local_config import LocalConfig
from gitreg.publish.local_config import load as load_config
from gitreg.verify import layout
from gitreg.verify.layout import BOOTSTRAP_MAX_SIZE

BRANCH = "main"
MAIN_REF = f"refs/heads/{BRANCH}"
# Before a policy is readable (init, a broken draft), files are capped at this.


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (mode 0644)."""
    write_atomic(path, data)


def read_capped(path: Path, max_size: int) -> bytes:
    """A working-tree file, refused (InvalidDocumentError naming it) when over ``max_size``."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_size + 1)
    except OSError as exc:
        raise UnreachableError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data) > max_size:
        raise InvalidDocumentError(
            [Problem("", f"larger than the limit of {max_size} bytes", str(path))],
            source=str(path))
    return data


@dataclass
class WorkingCopy:
    """One registry working copy on the endorser's machine."""

    workdir: Path
    git_dir: Path
    repo: Any  # pygit2.Repository (untyped library)
    store: RegistryStore
    _config: LocalConfig | None = field(default=None, repr=False)
    _policies: dict[str, PolicyEnvelope] = field(default_factory=dict, repr=False)

    # --- opening -------------------------------------------------------------

    @classmethod
    def open(cls, start: Path | None = None) -> WorkingCopy:
        """The working copy containing ``start`` (default: the current directory)."""
        import pygit2

        where = (start or Path.cwd()).resolve()
        found = pygit2.discover_repository(str(where))
        if found is None:
            raise UsageError(f"{where}: not inside a registry working copy (no git repository)",
                             hint="create one with `gitreg init DIR` or `git clone URL`")
        try:
            repo = pygit2.Repository(found)
        except pygit2.GitError as exc:
            raise UnreachableError(f"{found}: cannot open the git repository: {exc}") from exc
        if repo.is_bare or repo.workdir is None:
            raise UsageError(f"{found}: a bare repository has no working tree to edit",
                             hint="clone it: git clone PATH DIR")
        workdir = Path(repo.workdir).resolve()
        if not (workdir / layout.REGISTRY_FILE).is_file():
            raise UsageError(f"{workdir}: not a registry working copy "
                             f"({layout.REGISTRY_FILE} is missing)")
        copy = cls(workdir=workdir, git_dir=Path(repo.path).resolve(), repo=repo,
                   store=RegistryStore(repo))
        copy.check_branch()
        return copy

    def check_branch(self) -> None:
        """Refuse a working copy whose HEAD is not ``main`` (publish moves only main)."""
        if self.repo.head_is_detached:
            raise UsageError(f"{self.workdir}: HEAD is detached; check out {BRANCH}",
                             hint=f"git -C {self.workdir} checkout {BRANCH}")
        target = self.repo.references["HEAD"].target
        if target != MAIN_REF:
            raise UsageError(f"{self.workdir}: on {target}, but gitreg publishes {MAIN_REF}",
                             hint=f"git -C {self.workdir} checkout {BRANCH}")

    @property
    def config(self) -> LocalConfig:
        if self._config is None:
            self._config = load_config(self.workdir, self.git_dir)
        return self._config

    def path(self, relative: str) -> Path:
        return self.workdir / relative

    # --- the published state (main) -------------------------------------------

    def head(self) -> str | None:
        """The oid of ``main``, or None before the first commit."""
        ref = self.repo.references.get(MAIN_REF)
        return None if ref is None else str(ref.target)

    def published(self, relative: str) -> bytes | None:
        """The bytes of ``relative`` in ``main``'s tree, or None if absent."""
        head = self.head()
        if head is None:
            return None
        entry = self.store.tree_entry(head, relative)
        if entry is None or entry.type != "blob":
            return None
        return self.store.read_blob(entry.oid, self._published_cap(relative))

    def _published_cap(self, relative: str) -> int:
        if relative in (layout.REGISTRY_FILE, layout.POLICY_FILE):
            return BOOTSTRAP_MAX_SIZE
        return self.max_file_size()

    def published_list_ids(self) -> list[str]:
        head = self.head()
        if head is None:
            return []
        ids = {layout.list_id_of(entry.path) for entry in self.store.tree_entries(head)
               if layout.is_list(entry.path)}
        return sorted(i for i in ids if i is not None)

    def info(self) -> RegistryInfo:
        """The registry identity (published, else the working tree's on a new registry)."""
        data = self.published(layout.REGISTRY_FILE)
        if data is None:
            data = read_capped(self.path(layout.REGISTRY_FILE), BOOTSTRAP_MAX_SIZE)
        return RegistryInfo.parse(data, source=layout.REGISTRY_FILE)

    def published_policy(self) -> PolicyEnvelope:
        head = self.head()
        cached = self._policies.get(head or "")
        if cached is not None:
            return cached
        data = self.published(layout.POLICY_FILE)
        if data is None:
            raise UsageError(f"{self.workdir}: {MAIN_REF} has no {layout.POLICY_FILE}; "
                             "is this a registry?")
        envelope = parse_policy(data, source=f"{layout.POLICY_FILE} (published)")
        self._policies[head or ""] = envelope
        return envelope

    def max_file_size(self) -> int:
        try:
            return self.published_policy().signed.limits.max_file_size
        except UsageError:
            return BOOTSTRAP_MAX_SIZE

    def published_list(self, list_id: str) -> Imagelist | None:
        data = self.published(layout.list_path(list_id))
        if data is None:
            return None
        return parse_imagelist(data, source=f"{layout.list_path(list_id)} (published)",
                               max_size=self.max_file_size())

    # --- drafts (the working tree) ---------------------------------------------

    def draft_bytes(self, relative: str) -> bytes | None:
        path = self.path(relative)
        if not path.exists():
            return None
        if path.is_symlink() or not path.is_file():
            raise UsageError(f"{path}: not a regular file")
        return read_capped(path, self.max_file_size())

    def write_draft(self, relative: str, data: bytes) -> None:
        write_file_atomic(self.path(relative), data)

    def draft_policy(self) -> PolicyEnvelope:
        data = self.draft_bytes(layout.POLICY_FILE)
        if data is None:
            return self.published_policy()
        return parse_policy(data, source=str(self.path(layout.POLICY_FILE)))

    def write_policy(self, envelope: PolicyEnvelope) -> None:
        self.write_draft(layout.POLICY_FILE, envelope.canonical_bytes())

    def draft_list_ids(self) -> list[str]:
        """Ids of every list in the working tree (new drafts and published ones)."""
        directory = self.path(layout.LIST_DIR)
        ids: set[str] = set()
        if directory.is_dir():
            for child in directory.iterdir():
                list_id = layout.list_id_of(f"{layout.LIST_DIR}{child.name}")
                if list_id is not None and layout.is_list(f"{layout.LIST_DIR}{child.name}"):
                    ids.add(list_id)
        return sorted(ids)

    def draft_list(self, list_id: str) -> Imagelist:
        relative = layout.list_path(list_id)
        data = self.draft_bytes(relative)
        if data is None:
            raise UsageError(f"{self.path(relative)}: no such list in the working copy")
        return parse_imagelist(data, source=relative, max_size=self.max_file_size())

    def draft_lists(self) -> dict[str, Imagelist]:
        return {list_id: self.draft_list(list_id) for list_id in self.draft_list_ids()}

    def write_list(self, imagelist: Imagelist) -> None:
        self.write_draft(layout.list_path(imagelist.identifier), imagelist.canonical_bytes())
