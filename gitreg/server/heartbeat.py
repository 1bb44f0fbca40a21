"""Heartbeat refs: write one (`gitreg server heartbeat`), read one, carry valid ones.

A heartbeat is a parentless commit named by ``refs/gitreg/heartbeat/<replica>``
whose tree holds exactly ``heartbeat.json`` (the canonical statement of
``gitreg.verify.heartbeat``) and ``heartbeat.json.sig`` (its detached
signature, namespace ``gitreg-heartbeat``). A commit, not a bare blob: every
Git transport, dumb HTTP included, fetches commits by ref. It lives outside
``main``, so the history stays what endorsers signed; the ref is written by
the server itself (``git update-ref``, compare-and-swap, which runs no hook),
never pushed: the pre-receive hook keeps refusing pushes to it.

Replicas (``sync-peers``) and mirrors (``mirror sync``) fetch their
upstreams' heartbeat refs into ``refs/gitreg/remotes/<name>/heartbeat/*``
and keep, per replica name, the newest one that verifies under their own
``main``'s policy (``carry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pygit2

from gitreg.errors import GitregError, PolicyViolationError, RejectedError, UsageError
from gitreg.gitstore.remote import HEARTBEAT_REF_PREFIX, REMOTE_REF_PREFIX, STAGED_HEARTBEATS

if TYPE_CHECKING:
    from gitreg.gitstore.store import RegistryStore
    from gitreg.model.policy import Policy
    from gitreg.signing.interface import Signer
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.heartbeat import Heartbeat

STATEMENT_FILE = "heartbeat.json"
SIGNATURE_FILE = "heartbeat.json.sig"
# `git config gitreg.replica NAME`: the replica name `server heartbeat` signs by default.
REPLICA_KEY = "gitreg.replica"
_MAX_COMMIT = 4096
_MAX_TREE = 1024
_IDENTITY = ("gitreg heartbeat", "heartbeat@gitreg.invalid")


def heartbeat_ref(replica: str) -> str:
    return f"{HEARTBEAT_REF_PREFIX}/{replica}"


def staged_refs(store: RegistryStore, name: str | None = None) -> list[tuple[str, str]]:
    """(ref, commit) of the staged heartbeats of upstream ``name`` (or of all upstreams)."""
    prefix = f"{REMOTE_REF_PREFIX}/{name or ''}"
    found = []
    for ref in store.repo.references:
        if not ref.startswith(prefix):
            continue
        parts = ref[len(REMOTE_REF_PREFIX) + 1:].split("/")
        if len(parts) == 3 and parts[1] == STAGED_HEARTBEATS and (name is None or parts[0] == name):
            found.append((ref, str(store.repo.references[ref].target)))
    return sorted(found)


@dataclass(frozen=True)
class HeartbeatWritten:
    ref: str
    commit: str
    heartbeat: Heartbeat
    replaced: str | None


def read_heartbeat(store: RegistryStore, oid: str) -> tuple[bytes, bytes]:
    """The statement and signature a heartbeat commit holds (sizes capped, shape exact)."""
    from gitreg.verify.heartbeat import MAX_SIGNATURE_SIZE, MAX_STATEMENT_SIZE

    try:
        obj = store.repo.get(oid)
        header = store.object_header(oid)
    except (GitregError, ValueError, pygit2.GitError) as exc:
        raise RejectedError(f"heartbeat {oid[:12]}: unreadable: {exc}") from None
    if obj is None or header[0] != "commit" or header[1] > _MAX_COMMIT:
        raise RejectedError(f"heartbeat {oid[:12]}: not a heartbeat commit")
    commit = obj.peel(pygit2.Commit)
    if commit.parents:
        raise RejectedError(f"heartbeat {oid[:12]}: a heartbeat commit has no parents")
    tree_id = str(commit.tree_id)
    if store.object_header(tree_id)[1] > _MAX_TREE:
        raise RejectedError(f"heartbeat {oid[:12]}: its tree is too large")
    entries = {e.name: e for e in commit.tree}
    if set(entries) != {STATEMENT_FILE, SIGNATURE_FILE} or any(
            e.type_str != "blob" for e in entries.values()):
        raise RejectedError(f"heartbeat {oid[:12]}: the tree must hold exactly "
                            f"{STATEMENT_FILE} and {SIGNATURE_FILE}")
    return (store.read_blob(str(entries[STATEMENT_FILE].id), MAX_STATEMENT_SIZE),
            store.read_blob(str(entries[SIGNATURE_FILE].id), MAX_SIGNATURE_SIZE))


def judge(store: RegistryStore, oid: str, policy: Policy, context: VerifyContext, *,
          source: str) -> Heartbeat:
    """The verified heartbeat commit ``oid`` holds; ``RejectedError`` why not."""
    from gitreg.verify.heartbeat import verify_heartbeat

    statement, signature = read_heartbeat(store, oid)
    return verify_heartbeat(statement, signature, policy, context, source=source)


def policy_at_main(store: RegistryStore) -> tuple[str, Policy]:
    """``main`` and the policy it holds (the server verified it on the way in)."""
    from gitreg.model.policy import parse_policy
    from gitreg.server.hook import MAIN
    from gitreg.verify.layout import BOOTSTRAP_MAX_SIZE

    main = store.ref(MAIN)
    if main is None:
        raise UsageError(f"{store.path}: has no main branch yet")
    entry = store.entry(store.commit(main).tree, "policy.json")
    if entry is None:
        raise RejectedError(f"{store.path}: main {main[:12]} has no policy.json")
    return main, parse_policy(store.blob(entry.oid, BOOTSTRAP_MAX_SIZE)).signed


def default_replica(store: RegistryStore) -> str:
    """``git config gitreg.replica``, else this host's short name."""
    import socket

    try:
        value = str(store.repo.config[REPLICA_KEY]).strip()
    except KeyError:
        value = ""
    return value or socket.gethostname().split(".")[0]


def write_heartbeat(path: Path, signer: Signer, *, replica: str | None = None,
                    now: datetime) -> HeartbeatWritten:
    """Sign a heartbeat for ``main`` of server repository ``path`` at ``now`` and store it."""
    from gitreg.gitstore.store import RegistryStore
    from gitreg.signing.interface import NAMESPACE_HEARTBEAT
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.heartbeat import REPLICA_NAME, statement_bytes, verify_heartbeat

    try:
        store = RegistryStore.open(path)
    except GitregError:
        raise UsageError(f"{path}: not a registry server repository") from None
    name = replica or default_replica(store)
    if not REPLICA_NAME.fullmatch(name):
        raise UsageError(f"replica name {name!r}: letters, digits and ._- only, at most 64, "
                         "starting with a letter or digit",
                         hint=f"give --replica NAME (or git config {REPLICA_KEY} NAME)")
    main, policy = policy_at_main(store)
    required = policy.heartbeat
    if required is None:
        raise UsageError(f"{path}: the policy at main (version {policy.version}) names no "
                         "heartbeat keys",
                         hint="add one: `gitreg policy heartbeat --key PUB --max-age 6h`, "
                              "then sign and publish the policy")
    if signer.key_id not in required.keys:
        raise UsageError(f"key {signer.key_id} is not a heartbeat key of policy version "
                         f"{policy.version} (heartbeat keys: {', '.join(required.keys)})")
    statement = statement_bytes(registry=policy.registry, replica=name, commit=main,
                                time=now)
    signature = signer.sign(statement, namespace=NAMESPACE_HEARTBEAT)
    # What a site will check, checked here first: a wrong key fails now, not at 3 a.m.
    try:
        beat = verify_heartbeat(statement, signature, policy, VerifyContext.for_site(now),
                                source=heartbeat_ref(name))
    except PolicyViolationError as exc:
        raise UsageError(f"the heartbeat just signed does not verify: {exc.message}") from None
    ref = heartbeat_ref(name)
    commit = _write_commit(store, statement, signature, beat)
    old = store.ref(ref)
    if old != commit:
        update_ref(path, ref, commit, old, "gitreg heartbeat")
    return HeartbeatWritten(ref=ref, commit=commit, heartbeat=beat, replaced=old)


def _write_commit(store: RegistryStore, statement: bytes, signature: bytes,
                  beat: Heartbeat) -> str:
    repo = store.repo
    builder = repo.TreeBuilder()
    builder.insert(STATEMENT_FILE, repo.create_blob(statement), pygit2.enums.FileMode.BLOB)
    builder.insert(SIGNATURE_FILE, repo.create_blob(signature), pygit2.enums.FileMode.BLOB)
    tree = builder.write()
    # Derived from the statement alone: the same heartbeat is the same commit.
    who = pygit2.Signature(*_IDENTITY, int(beat.time.timestamp()), 0)
    message = f"heartbeat {beat.replica} {beat.commit[:12]}\n"
    return str(repo.create_commit(None, who, who, message, tree, []))


def update_ref(path: Path, ref: str, new: str, old: str | None, why: str) -> None:
    """Compare-and-swap ``ref`` (``git update-ref``: atomic, no hook runs)."""
    from gitreg.gitstore.command import run_git

    run = run_git(["-C", path, "update-ref", "-m", why, ref, new, old or "0" * 40],
                  timeout=60, what=str(path))
    if run.returncode != 0:
        raise GitregError(f"{path}: cannot update {ref}: {run.stderr.strip()}",
                          hint="another heartbeat or sync moved it meanwhile; run again")


def delete_ref(path: Path, ref: str) -> None:
    from gitreg.gitstore.command import run_git

    run_git(["-C", path, "update-ref", "-d", ref], timeout=60, what=str(path))


def carry(path: Path, store: RegistryStore, context: VerifyContext) -> list[dict[str, Any]]:
    """Keep, per replica, the newest valid staged heartbeat; drop every staged ref.

    Valid means verified under the policy at this repository's ``main`` (a
    heartbeat for another registry, by a key that is not a heartbeat key, or
    from the future is reported and dropped), so a mirror never advertises
    a heartbeat a site would refuse. Returns one entry per staged heartbeat.
    """
    staged = staged_refs(store)
    if not staged:
        return []
    report: list[dict[str, Any]] = []
    policy: Policy | None = None
    reason = ""
    try:
        _, policy = policy_at_main(store)
    except GitregError as exc:
        reason = exc.message
    for ref, oid in staged:
        entry: dict[str, Any] = {"ref": ref, "commit": oid}
        if policy is None or policy.heartbeat is None:
            entry.update(state="ignored", detail=reason if policy is None
                         else "the policy at main names no heartbeat keys")
        else:
            entry.update(_carry_one(path, store, oid, policy, context, source=ref))
        report.append(entry)
        delete_ref(path, ref)
    return report


def _carry_one(path: Path, store: RegistryStore, oid: str, policy: Policy,
               context: VerifyContext, *, source: str) -> dict[str, Any]:
    try:
        beat = judge(store, oid, policy, context, source=source)
    except PolicyViolationError as exc:
        return {"state": "invalid", "detail": exc.message, "rule": exc.rule}
    except RejectedError as exc:
        return {"state": "invalid", "detail": exc.message, "rule": "heartbeat-format"}
    ref = heartbeat_ref(beat.replica)
    held = store.ref(ref)
    if held == oid:
        return {"state": "current", "replica": beat.replica, "detail": "already held"}
    if held is not None:
        try:
            mine = judge(store, held, policy, context, source=ref)
        except RejectedError:
            mine = None  # an invalid held heartbeat gives way to a valid one
        if mine is not None and mine.time >= beat.time:
            return {"state": "older", "replica": beat.replica,
                    "detail": "not newer than the one held"}
    update_ref(path, ref, oid, held, "gitreg carry heartbeat")
    return {"state": "carried", "replica": beat.replica, "detail": f"heartbeat of "
            f"{beat.replica} at {beat.commit[:12]}"}
