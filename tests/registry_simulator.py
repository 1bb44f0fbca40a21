"""A registry builder for tests and benchmarks: real Git objects, made quickly.

``RegistrySimulator`` writes a registry straight into a Git repository with
pygit2 (no working tree, no git subprocess per commit): the root commit, policy
changes signed by root keys, lists signed by endorsers, and the forged objects
attacks need (unsigned commits, odd tree modes, backdated commits). Every
commit it makes by default is one the verifier accepts; an attack is a call
with ``move=False`` that returns the forged commit id without moving ``main``.

Signers are in-process (``SSHSigner`` from generated Ed25519 keys unless a
test passes others), so building a registry of thousands of lists costs
seconds, not minutes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pygit2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pygit2.enums import FileMode

from gitreg.gitstore.commits import build_tree, create_signed_commit
from gitreg.gitstore.store import RegistryStore
from gitreg.model.dates import format_date
from gitreg.model.policy import Limits, PolicyEnvelope
from gitreg.model.registry_info import FORMAT_VERSION, RegistryInfo
from gitreg.model.strictjson import canonical_dumps
from gitreg.publish import policy_edit
from gitreg.publish.policy_edit import add_signature, new_policy
from gitreg.signing.interface import NAMESPACE_IMAGELIST, PublicKey, Signer
from gitreg.signing.ssh import SSHSigner
from gitreg.verify import layout

MAIN = "refs/heads/main"
MODE_BLOB = FileMode.BLOB
MODE_EXEC = FileMode.BLOB_EXECUTABLE
MODE_LINK = FileMode.LINK
MODE_GITLINK = FileMode.COMMIT
# Small caps keep "over the size cap" and "beyond the maximum lifetime" cheap to forge.
TEST_LIMITS = Limits(max_file_size=64 * 1024, max_list_lifetime_days=30)


def ssh_signer(comment: str = "") -> SSHSigner:
    """A fresh in-process Ed25519 signer (no ssh-keygen, no files)."""
    return SSHSigner(Ed25519PrivateKey.generate(), comment)


def new_id(seed: str | None = None) -> str:
    """A UUID: random, or derived from ``seed`` so a benchmark is reproducible."""
    if seed is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gitreg-simulator:{seed}"))


def image_entry(image_id: str, *, title: str = "Test image",
                version: str = "1") -> dict[str, object]:
    """One ``hv:image`` body with every required key (the image file is imaginary)."""
    digest = hashlib.sha512(image_id.encode()).hexdigest()
    return {
        "dc:identifier": image_id, "dc:title": title, "dc:description": title,
        "hv:uri": f"https://images.example.org/{image_id}.qcow2", "hv:size": 1024,
        "sl:checksum:sha512": digest, "sl:arch": "x86_64", "sl:os": "Linux",
        "sl:osversion": "AlmaLinux 9", "sl:comments": "", "hv:hypervisor": "QEMU-KVM",
        "hv:version": version, "hv:format": "qcow2",
    }


@dataclass(frozen=True)
class ListEndorser:
    """What a list says about its endorser (``hv:endorser``/``hv:x509``)."""

    dn: str = "/DC=org/DC=example/CN=Test Endorser"
    ca: str = "/DC=org/DC=example/CN=Test CA"
    email: str = "endorser@example.org"
    creator: str = "Test Endorser"


def imagelist_bytes(list_id: str, *, version: str, images: Sequence[str | Mapping[str, object]],
                    created: datetime, expires: datetime, title: str = "Test list",
                    endorser: ListEndorser | None = None) -> bytes:
    """The canonical bytes of a list, built as a dict (no model round trip: fast).

    ``images`` are image UUIDs (a default entry is made) or whole image bodies.
    """
    who = endorser or ListEndorser()
    entries = [{"hv:image": image_entry(i) if isinstance(i, str) else dict(i)} for i in images]
    body = {
        "dc:identifier": list_id, "dc:title": title, "dc:description": title,
        "dc:source": "gitreg test", "hv:uri": f"https://lists.example.org/{list_id}.json",
        "hv:version": version, "dc:date:created": format_date(created),
        "dc:date:expires": format_date(expires),
        "hv:endorser": {"hv:x509": {"hv:dn": who.dn, "hv:ca": who.ca, "hv:email": who.email,
                                    "dc:creator": who.creator}},
        "hv:images": entries,
    }
    return canonical_dumps({"hv:imagelist": body})


@dataclass
class RegistrySimulator:
    """A registry in a (bare) Git repository, grown commit by commit.

    ``clock`` is the committer time of the next commit; each commit advances
    it by ``tick`` so that history is ordered in time as well as by parents.
    """

    store: RegistryStore
    roots: list[Signer]
    info: RegistryInfo
    policy: PolicyEnvelope
    head: str
    clock: datetime
    tick: timedelta = timedelta(seconds=1)
    lifetime: timedelta = timedelta(days=20)
    # list id -> (hv:version, image ids) as last published on main
    lists: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)

    # --- creation ---------------------------------------------------------

    @classmethod
    def create(cls, path: Path, *, roots: Sequence[Signer] | None = None, threshold: int = 1,
               name: str = "Simulated registry", limits: Limits = TEST_LIMITS,
               start: datetime | None = None, bare: bool = True) -> RegistrySimulator:
        """A new registry at ``path``: ``gitreg.json`` and a policy signed by every root."""
        signers: list[Signer] = list(roots) if roots else [ssh_signer("root")]
        repo = pygit2.init_repository(str(path), bare=bare, initial_head="main")
        store = RegistryStore(repo)
        clock = (start or datetime.now(UTC)).replace(microsecond=0)
        info = RegistryInfo(FORMAT_VERSION, str(uuid.uuid4()), name)
        envelope = new_policy(info.registry_id, [s.public_key() for s in signers], threshold,
                              clock + timedelta(days=365), limits=limits)
        for signer in signers:
            envelope = add_signature(envelope, signer)
        sim = cls(store=store, roots=signers, info=info, policy=envelope, head="", clock=clock)
        tree = build_tree(store, None, {layout.REGISTRY_FILE: info.canonical_bytes(),
                                        layout.POLICY_FILE: envelope.canonical_bytes()})
        sim.head = sim.commit_tree(tree, signers[0], message=f"Create registry {name}",
                                   parents=[])
        return sim

    def copy_to(self, path: Path) -> RegistrySimulator:
        """An independent copy of this registry (repository and state) at ``path``."""
        shutil.copytree(self.path, path, symlinks=True)
        return dataclasses.replace(self, store=RegistryStore(pygit2.Repository(str(path))),
                                   roots=list(self.roots), lists=dict(self.lists))

    @property
    def repo(self) -> pygit2.Repository:
        return self.store.repo

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def head_tree(self) -> str:
        return self.store.commit_info(self.head).tree

    # --- commits ----------------------------------------------------------

    def person(self, when: datetime | None = None, name: str = "Test Endorser",
               email: str = "endorser@example.org") -> pygit2.Signature:
        moment = when or self.clock
        return pygit2.Signature(name, email, int(moment.timestamp()), 0)

    def commit_tree(self, tree: str, signer: Signer | None, *, message: str,
                    parents: Sequence[str] | None = None, when: datetime | None = None,
                    move: bool = True) -> str:
        """Commit ``tree`` (signed by ``signer``, unsigned if None); move main if ``move``.

        ``parents`` default to the current head; ``when`` to the simulator clock.
        """
        parent_ids = [self.head] if parents is None else list(parents)
        person = self.person(when)
        if when is None:
            self.clock += self.tick
        if signer is None:
            oid = str(self.repo.create_commit(
                None, person, person, message + "\n", pygit2.Oid(hex=tree),
                [pygit2.Oid(hex=p) for p in parent_ids]))
        else:
            oid = create_signed_commit(self.store, tree, parent_ids, message, signer,
                                       author=person, committer=person, update_ref=None)
        if move:
            self.set_main(oid)
        return oid

    def commit(self, changes: Mapping[str, bytes | None], signer: Signer | None, *,
               message: str = "Change the registry", parents: Sequence[str] | None = None,
               base: str | None = None, when: datetime | None = None,
               move: bool = True) -> str:
        """Apply ``changes`` (path -> bytes, None removes) to ``base`` (a commit; default
        the first parent) and commit the result."""
        parent_ids = [self.head] if parents is None else list(parents)
        base_commit = base or (parent_ids[0] if parent_ids else None)
        base_tree = self.store.commit_info(base_commit).tree if base_commit else None
        tree = build_tree(self.store, base_tree, changes)
        return self.commit_tree(tree, signer, message=message, parents=parent_ids,
                                when=when, move=move)

    def set_main(self, oid: str) -> None:
        """Point main at ``oid`` directly (no hook: how an attack gets "forced in")."""
        self.repo.references.create(MAIN, pygit2.Oid(hex=oid), force=True)
        self.head = oid

    # --- trees with any mode (what build_tree refuses to make) ----------------

    def tree_with_entry(self, base_tree: str, path: str, oid: str, mode: int) -> str:
        """``base_tree`` with ``path`` set to object ``oid`` under any file mode."""
        parts = path.split("/")

        def insert(tree: str | None, names: list[str]) -> pygit2.Oid:
            builder = (self.repo.TreeBuilder(pygit2.Oid(hex=tree)) if tree is not None
                       else self.repo.TreeBuilder())
            name = names[0]
            if len(names) == 1:
                if builder.get(name) is not None:
                    builder.remove(name)
                builder.insert(name, pygit2.Oid(hex=oid), mode)
                return builder.write()
            existing = builder.get(name)
            sub = insert(str(existing.id) if existing is not None else None, names[1:])
            if existing is not None:
                builder.remove(name)
            builder.insert(name, sub, FileMode.TREE)
            return builder.write()

        return str(insert(base_tree, parts))

    def blob(self, data: bytes) -> str:
        return str(self.repo.create_blob(data))

    # --- policy -----------------------------------------------------------

    def change_policy(self, edit: Callable[[PolicyEnvelope], PolicyEnvelope], *,
                      signers: Sequence[Signer] | None = None,
                      commit_signer: Signer | None = None, move: bool = True,
                      message: str = "Change the policy") -> tuple[str, PolicyEnvelope]:
        """Commit ``edit(policy)`` signed by ``signers`` (default every root key)."""
        envelope = edit(self.policy)
        for signer in (self.roots if signers is None else signers):
            envelope = add_signature(envelope, signer)
        oid = self.commit({layout.POLICY_FILE: envelope.canonical_bytes()},
                          commit_signer or self.roots[0], message=message, move=move)
        if move:
            self.policy = envelope
        return oid, envelope

    def add_endorser(self, name: str, keys: Sequence[PublicKey], allow: Sequence[str],
                     email: str | None = None) -> str:
        oid, _ = self.change_policy(lambda p: policy_edit.add_endorser(p, name, keys, email, allow),
                                    message=f"Add endorser {name}")
        return oid

    def remove_endorser(self, name: str) -> str:
        oid, _ = self.change_policy(lambda p: policy_edit.remove_endorser(p, name),
                                    message=f"Remove endorser {name}")
        return oid

    # --- lists ------------------------------------------------------------

    def list_version(self, list_id: str, *, version: str,
                     images: Sequence[str | Mapping[str, object]],
                     created: datetime | None = None, expires: datetime | None = None,
                     endorser: ListEndorser | None = None, title: str = "Test list") -> bytes:
        """A list's bytes dated at the simulator clock (or the given dates)."""
        start = created or self.clock
        return imagelist_bytes(list_id, version=version, images=images, created=start,
                               expires=expires or start + self.lifetime, endorser=endorser,
                               title=title)

    def signed_list(self, list_id: str, data: bytes, signer: Signer) -> dict[str, bytes | None]:
        """The tree changes that publish ``data`` as list ``list_id`` signed by ``signer``."""
        return {layout.list_path(list_id): data,
                layout.sig_path(list_id): signer.sign(data, namespace=NAMESPACE_IMAGELIST)}

    def publish(self, signer: Signer | None, lists: Mapping[str, Sequence[str]], *,
                list_signer: Signer | None = None, endorser: ListEndorser | None = None,
                move: bool = True, when: datetime | None = None) -> str:
        """Publish each list (id -> image ids) at its next version in one commit."""
        changes: dict[str, bytes | None] = {}
        versions: dict[str, tuple[str, tuple[str, ...]]] = {}
        for list_id, images in lists.items():
            previous = self.lists.get(list_id)
            version = str(int(previous[0]) + 1) if previous else "1"
            data = self.list_version(list_id, version=version, images=images,
                                     created=when, endorser=endorser)
            by = list_signer or signer
            assert by is not None, "an unsigned commit still needs a list signer"
            changes.update(self.signed_list(list_id, data, by))
            versions[list_id] = (version, tuple(images))
        oid = self.commit(changes, signer, message=f"Publish {len(lists)} list(s)",
                          when=when, move=move)
        if move:
            self.lists.update(versions)
        return oid

    def next_version(self, list_id: str) -> str:
        previous = self.lists.get(list_id)
        return str(int(previous[0]) + 1) if previous else "1"
