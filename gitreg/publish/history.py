"""``gitreg log``: the signed history of a registry's lists, newest first.

The history is verified first (the same verifier as the server hook, each
commit judged at its own time), so every entry shown is one the registry's
policy accepted; then each change of a list is described: which commit, who
signed the list (endorser and key id), when, the version, and what happened
to its images.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gitreg.gitstore.store import RegistryStore
from gitreg.model.imagelist import Imagelist, parse_imagelist
from gitreg.model.policy import Policy, parse_policy
from gitreg.publish.publication import ImageDiff, diff_images
from gitreg.verify import layout
from gitreg.verify.layout import BOOTSTRAP_MAX_SIZE


@dataclass(frozen=True)
class Signer:
    """Who signed: a policy key and the endorser owning it (None for a root-only key)."""

    key_id: str | None
    endorser: str | None

    def describe(self) -> str:
        if self.key_id is None:
            return "an unknown signer"
        return f"{self.endorser} ({self.key_id})" if self.endorser else f"key {self.key_id}"


@dataclass(frozen=True)
class LogEntry:
    """One change: of a list (``list_id`` set) or of the policy (``policy_version`` set)."""

    commit: str
    time: datetime
    commit_signer: Signer
    summary: str
    list_id: str | None = None
    title: str | None = None
    old_version: str | None = None
    new_version: str | None = None
    list_signer: Signer | None = None
    images: ImageDiff | None = None
    policy_version: int | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "commit": self.commit,
            "time": self.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit_signer": {"endorser": self.commit_signer.endorser,
                              "key_id": self.commit_signer.key_id},
            "summary": self.summary,
        }
        if self.list_id is not None:
            assert self.images is not None and self.list_signer is not None
            out.update({
                "list": self.list_id, "title": self.title,
                "old_version": self.old_version, "version": self.new_version,
                "list_signer": {"endorser": self.list_signer.endorser,
                                "key_id": self.list_signer.key_id},
                "images": {"added": list(self.images.added),
                           "removed": list(self.images.removed),
                           "changed": list(self.images.changed)},
            })
        if self.policy_version is not None:
            out["policy_version"] = self.policy_version
        return out


def _signer(policy: Policy, signature: bytes | None) -> Signer:
    from gitreg.errors import SignatureError
    from gitreg.verify.signatures import named_signer

    if signature is None:
        return Signer(None, None)
    try:
        key_id, named = named_signer(policy, signature)
    except SignatureError:
        return Signer(None, None)
    if key_id is None:
        return Signer(named, None)
    return Signer(key_id, policy.endorser_of_key(key_id))


def _x509_signer(policy: Policy, imagelist: Imagelist) -> Signer:
    dn = imagelist.endorser_dn
    return Signer(dn, policy.endorser_of_key(dn)) if dn in policy.keys else Signer(None, None)


class _Reader:
    """Blobs of the history, parsed once each."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self._policies: dict[str, Policy] = {}

    def policy(self, tree: str) -> Policy:
        entry = self.store.tree_entry(tree, layout.POLICY_FILE)
        assert entry is not None  # the verifier checked the layout
        cached = self._policies.get(entry.oid)
        if cached is None:
            cached = parse_policy(self.store.read_blob(entry.oid, BOOTSTRAP_MAX_SIZE)).signed
            self._policies[entry.oid] = cached
        return cached

    def imagelist(self, oid: str, path: str, max_size: int) -> Imagelist:
        return parse_imagelist(self.store.read_blob(oid, max_size), source=path,
                               max_size=max_size)


def registry_log(store: RegistryStore, head: str, *, list_id: str | None = None,
                 verify: bool = True) -> list[LogEntry]:
    """Every change of list ``list_id`` (or of every list and the policy), newest first."""
    from gitreg.model.dates import utcnow
    from gitreg.verify.cache import MemoryCache
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    if verify:
        Verifier(store, MemoryCache(),
                 context=VerifyContext.for_history(utcnow())).verify_range(None, head)
    reader = _Reader(store)
    entries: list[LogEntry] = []
    for oid in store.commits_between(None, head):
        info = store.commit_info(oid)
        if len(info.parents) > 1:
            continue  # a merge only combines versions that appear on their own branches
        parent_tree = store.commit_info(info.parents[0]).tree if info.parents else None
        # Authorisation follows the parent's policy; the root commit is its own.
        policy = reader.policy(parent_tree or info.tree)
        max_size = policy.limits.max_file_size
        when = datetime.fromtimestamp(info.time, tz=UTC)
        commit_signer = _signer(policy, info.signature)
        for change in store.changed_paths(parent_tree, info.tree):
            if change.path == layout.POLICY_FILE and list_id is None:
                entries.append(LogEntry(
                    commit=oid, time=when, commit_signer=commit_signer, summary=info.summary,
                    policy_version=reader.policy(info.tree).version))
                continue
            changed_id = layout.list_id_of(change.path)
            if (changed_id is None or not layout.is_list(change.path)
                    or change.new_oid is None or (list_id and changed_id != list_id)):
                continue
            new = reader.imagelist(change.new_oid, change.path, max_size)
            old = (reader.imagelist(change.old_oid, change.path, max_size)
                   if change.old_oid else None)
            sig = store.tree_entry(info.tree, layout.sig_path(changed_id))
            signature = store.read_blob(sig.oid, max_size) if sig is not None else None
            list_signer = _signer(policy, signature)
            if list_signer.key_id is None:
                list_signer = _x509_signer(policy, new)
            entries.append(LogEntry(
                commit=oid, time=when, commit_signer=commit_signer, summary=info.summary,
                list_id=changed_id, title=new.title,
                old_version=old.version if old else None, new_version=new.version,
                list_signer=list_signer, images=diff_images(old, new)))
    entries.reverse()
    return entries
