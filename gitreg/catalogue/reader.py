"""One verified registry state as catalogue records, read from Git objects only.

The records are plain JSON-ready dicts (they are cached, written into the web
catalogue's JSON API and printed by ``gitreg search --json`` as they are).
What a record says about trust comes from the trust core: the signer of each
list is found with ``check_signature`` under the policy of the state, so a
list whose endorser was removed since reads as revoked. Reading is
incremental: given the records of an ancestor state, only the lists and
commits that changed since are read again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gitreg.catalogue.attestations import read_attestations
from gitreg.catalogue.sources import FORMAT
from gitreg.errors import PolicyViolationError, RejectedError, SignatureError
from gitreg.gitstore.store import RegistryStore
from gitreg.model.dates import format_date
from gitreg.model.imagelist import parse_imagelist
from gitreg.model.policy import Policy
from gitreg.signing.interface import NAMESPACE_IMAGELIST
from gitreg.verify import layout
from gitreg.verify.cache import VerificationCache
from gitreg.verify.context import VerifyContext
from gitreg.verify.history import Verifier
from gitreg.verify.signatures import check_signature, named_signer

# Image keys every record lifts out of the verbatim key map for display.
_IMAGE_FIELDS = {
    "title": "dc:title", "description": "dc:description", "uri": "hv:uri",
    "sha512": "sl:checksum:sha512", "arch": "sl:arch", "os": "sl:os",
    "osversion": "sl:osversion", "osname": "sl:osname", "version": "hv:version",
    "format": "hv:format", "hypervisor": "hv:hypervisor", "series": "gitreg:series",
    "description_md": "gitreg:description_md", "expires": "dc:date:expires",
}
_LIST_SKIP = ("hv:images", "hv:endorser")
Progress = Callable[[str, int, int], None]


def read_registry(store: RegistryStore, head: str, *, name: str, cache: VerificationCache,
                  at: datetime, previous: dict[str, Any] | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """The records of registry state ``head`` (a verified commit of ``store``).

    ``at``: the time signatures are checked at (X.509 chains). ``previous``:
    the records of an earlier state of the same registry; when it is an
    ancestor of ``head`` only what changed since is read.
    """
    verifier = Verifier(store, cache, context=VerifyContext.for_history(at))
    tree = store.commit(head).tree
    state = verifier.state(tree, commit=head)
    policy = state.policy.signed
    base = _usable(previous, store, head, state.info.registry_id)
    lists: dict[str, Any] = dict(base["lists"]) if base else {}
    history_from = base["head"] if base else None

    entries = {e.path: e for e in store.entries(tree)}
    signatures_stale = base is None or base["policy_blob"] != state.policy_blob
    wanted = sorted(p for p in entries if layout.is_list(p))
    for count, path in enumerate(wanted):
        list_id = path[len(layout.LIST_DIR):-len(".json")]
        sig = entries.get(layout.sig_path(list_id))
        old = lists.get(list_id)
        blob, sig_blob = entries[path].oid, sig.oid if sig else ""
        if (old is not None and old["blob"] == blob and old["sig_blob"] == sig_blob
                and not signatures_stale):
            continue
        if progress and count % 500 == 0:
            progress("lists", count, len(wanted))
        fresh = _list_record(store, policy, cache, head=head, path=path, blob=blob,
                             sig_blob=sig_blob, at=at)
        if old is not None:  # the history up to the cached state stays; newer is appended
            fresh["history"], fresh["revoked"] = old["history"], old["revoked"]
        lists[list_id] = fresh
    for gone in set(lists) - {p[len(layout.LIST_DIR):-len(".json")] for p in wanted}:
        del lists[gone]  # only after a rewrite that a verified state never has
    _add_history(store, verifier, lists, since=history_from, head=head, progress=progress)
    unchanged = base["lists"] if base else {}
    for list_id, record in lists.items():
        if record is not unchanged.get(list_id):
            lists[list_id] = {**record, "digest": record_digest(record)}
    kept = base.get("attestation_files") if base and not signatures_stale else None
    found = read_attestations(store, policy, cache, head=head, entries=entries, at=at,
                              previous=kept)
    return {
        "format": FORMAT, "registry": state.info.registry_id, "name": name,
        "registry_name": state.info.name, "head": head, "policy_blob": state.policy_blob,
        "policy_version": policy.version, "policy_expires": format_date(policy.expires),
        # The policy itself, for the trust core's verdict at query time (status.py).
        "policy": policy.to_dict(), "lists": lists, "attestations": found["by_image"],
        "attestation_files": {"by_path": found["by_path"]},
    }


def record_digest(record: dict[str, Any]) -> str:
    """A digest of everything a list record says: what its web pages are made from.

    Kept in the record (``digest``) and computed only when the record
    changes, so a rebuild tells unchanged lists apart without hashing them.
    """
    text = json.dumps({k: v for k, v in record.items() if k != "digest"}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _usable(previous: dict[str, Any] | None, store: RegistryStore, head: str,
            registry_id: str) -> dict[str, Any] | None:
    if not previous or previous.get("format") != FORMAT:
        return None
    if previous.get("registry") != registry_id:
        return None
    old = previous.get("head")
    if not isinstance(old, str) or not store.is_ancestor(old, head):
        return None
    return previous


def _list_record(store: RegistryStore, policy: Policy, cache: VerificationCache, *,
                 head: str, path: str, blob: str, sig_blob: str,
                 at: datetime) -> dict[str, Any]:
    max_size = policy.limits.max_file_size
    data = store.blob(blob, max_size)
    imagelist = parse_imagelist(data, source=f"{head[:12]}:{path}", max_size=max_size)
    # Parsed strictly above; a plain parse of the same bytes gives our own copy
    # of the values faster than the model's deep copies would.
    body = json.loads(data)["hv:imagelist"]
    images = [_image_record(entry["hv:image"]) for entry in body["hv:images"]]
    keys = {k: v for k, v in body.items() if k not in _LIST_SKIP}
    keys.update(body["hv:endorser"]["hv:x509"])
    return {
        "id": imagelist.identifier, "blob": blob, "sig_blob": sig_blob,
        "title": imagelist.title, "description": imagelist.description,
        "description_md": imagelist.description_md, "version": imagelist.version,
        "created": format_date(imagelist.created), "expires": format_date(imagelist.expires),
        "uri": imagelist.uri, "dn": imagelist.endorser_dn, "keys": keys, "images": images,
        "signature": _signer(store, policy, cache, head=head, path=path, blob=blob,
                             sig_blob=sig_blob, at=at),
        "history": [], "revoked": [],
    }


def _image_record(entry: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"id": entry["dc:identifier"], "size": _size(entry.get("hv:size"))}
    for name, key in _IMAGE_FIELDS.items():
        value = entry.get(key)
        record[name] = value if isinstance(value, str) else None
    record["keys"] = entry
    return record


def _size(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _signer(store: RegistryStore, policy: Policy, cache: VerificationCache, *,
            head: str, path: str, blob: str, sig_blob: str, at: datetime) -> dict[str, Any]:
    """Who signed the list, judged under the policy of the state (not of its commit)."""
    max_size = policy.limits.max_file_size
    if not sig_blob:
        return {"error": "the list has no signature"}
    allowed = [key for name in sorted(policy.endorsers_for_path(path))
               for key in policy.endorser_keys(name)]
    try:
        key_id = check_signature(
            policy, allowed=allowed, data_id=blob, data=lambda: store.blob(blob, max_size),
            signature_id=sig_blob, signature=store.blob(sig_blob, max_size),
            namespace=NAMESPACE_IMAGELIST, at=at, cache=cache, rule="list-signature", commit=head,
            path=path, what="the list")
    except PolicyViolationError as exc:
        return {"error": exc.message}
    endorser = policy.endorser_of_key(key_id)
    entry = policy.endorsers.get(endorser) if endorser else None
    return {
        "key": key_id, "endorser": endorser,
        "endorser_expires": format_date(entry.expires) if entry and entry.expires else None,
    }


def _image_digest(entry: dict[str, Any]) -> str:
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _add_history(store: RegistryStore, verifier: Verifier, lists: dict[str, Any], *,
                 since: str | None, head: str, progress: Progress | None) -> None:
    """Append to each list's history the versions published after ``since``.

    A history entry says which commit brought a version, when (the signed
    committer time), who signed the list and the commit, and which images it
    added, removed or changed. Images removed by some version and absent
    from the current one are the list's revoked images.
    """
    # The history lists and the per-version image digests are rebuilt
    # copy-on-write: ``lists`` may share records with a cached state.
    seen: dict[str, dict[str, list[str]]] = {}
    for list_id, record in lists.items():
        last = record["history"][-1] if record["history"] else None
        seen[list_id] = dict(last["images"]) if last else {}
    commits = store.commits_between(since, head)
    for count, oid in enumerate(commits):
        if progress and count % 500 == 0:
            progress("history", count, len(commits))
        facts = store.commit(oid)
        parent_tree = store.commit(facts.parents[0]).tree if facts.parents else None
        changed = [c for c in store.changes(parent_tree, facts.tree)
                   if c.new is not None and layout.is_list(c.path)]
        if not changed:
            continue
        parent_state = verifier.state(parent_tree) if parent_tree else None
        state = verifier.state(facts.tree, commit=oid)
        committer = None
        if parent_state is not None and facts.signature is not None:
            committer = _named(parent_state.policy.signed, facts.signature)
        for change in changed:
            assert change.new is not None
            list_id = change.path[len(layout.LIST_DIR):-len(".json")]
            record = lists.get(list_id)
            if record is None:
                continue
            entry = _history_entry(store, state.policy.signed, path=change.path,
                                   blob=change.new.oid, tree=facts.tree,
                                   before=seen.setdefault(list_id, {}))
            if entry is None:
                continue
            entry.update(commit=oid, committer=committer, time=format_date(
                datetime.fromtimestamp(facts.committer_time, tz=UTC)))
            seen[list_id] = entry["images"]
            record = lists[list_id] = dict(record)
            record["history"] = [*record["history"], entry]
    for list_id, record in lists.items():
        current = {image["id"] for image in record["images"]}
        revoked: dict[str, Any] = {}
        for entry in record["history"]:
            for image_id in entry["removed"]:
                title = _title_before(record["history"], entry, image_id)
                revoked[image_id] = {"id": image_id, "title": title,
                                     "version": entry["version"], "commit": entry["commit"],
                                     "time": entry["time"]}
        found = [revoked[i] for i in sorted(revoked) if i not in current]
        if found != record["revoked"]:
            lists[list_id] = {**record, "revoked": found}


def _title_before(history: list[dict[str, Any]], entry: dict[str, Any], image_id: str) -> str:
    title = ""
    for earlier in history:
        if earlier is entry:
            break
        if image_id in earlier["images"]:
            title = earlier["images"][image_id][1]
    return title


def _history_entry(store: RegistryStore, policy: Policy, *, path: str, blob: str, tree: str,
                   before: dict[str, list[str]]) -> dict[str, Any] | None:
    max_size = policy.limits.max_file_size
    # Every version in a verified history parsed strictly when it was verified,
    # so a plain parse reads it here; anything odd only loses a history line.
    try:
        body = json.loads(store.blob(blob, max_size))["hv:imagelist"]
        images = [entry["hv:image"] for entry in body["hv:images"]]
        now = {str(i["dc:identifier"]): [_image_digest(i), str(i.get("dc:title", ""))]
               for i in images}
        version = str(body["hv:version"])
        dn = body["hv:endorser"]["hv:x509"]["hv:dn"]
    except (ValueError, KeyError, TypeError, RejectedError):
        return None
    sig = store.entry(tree, path + ".sig")
    signer = None
    if sig is not None:
        signer = _named(policy, store.blob(sig.oid, max_size))
    if signer is None and isinstance(dn, str) and dn in policy.keys:
        # X.509 signatures name nobody cheaply; the verifier required hv:dn to be the key.
        signer = {"key": dn, "endorser": policy.endorser_of_key(dn)}
    return {
        "version": version, "signer": signer,
        "added": sorted(set(now) - set(before)),
        "removed": sorted(set(before) - set(now)),
        "changed": sorted(i for i in set(now) & set(before) if now[i][0] != before[i][0]),
        "images": now,
    }


def _named(policy: Policy, signature: bytes) -> dict[str, str | None] | None:
    """Who a signature the verifier accepted names as its signer (no crypto again)."""
    try:
        key_id, named = named_signer(policy, signature)
    except SignatureError:
        return None  # history display never fails a catalogue
    if key_id is None and named is None:
        return None
    return {"key": key_id or named, "endorser": policy.endorser_of_key(key_id or "")}
