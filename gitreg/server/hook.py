"""The pre-receive hook: run the verifier on every pushed update of ``main``.

Kept free of typer and rich: a push pays only for what verification needs.
The verdict is the shared verifier's; this module only reads git's update
lines, picks the trusted commit (the server's current ``main``) and turns
the verdict into an exit status and a message naming commit, path and rule.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from gitreg.errors import GitregError, PolicyViolationError
from gitreg.verify.layout import BOOTSTRAP_MAX_SIZE

if TYPE_CHECKING:
    from gitreg.gitstore.store import RegistryStore

MAIN = "refs/heads/main"
ZERO = "0" * 40
CACHE_FILE = Path("gitreg") / "verify-cache.sqlite"
# `git config gitreg.trustRoot sha256:<hex>`: the initial policy this server accepts.
TRUST_ROOT_KEY = "gitreg.trustroot"


@dataclass(frozen=True)
class Update:
    old: str
    new: str
    ref: str


def parse_updates(stream: TextIO) -> list[Update]:
    updates = []
    for line in stream:
        parts = line.split()
        if len(parts) == 3:
            updates.append(Update(*parts))
    return updates


def check_update(store: RegistryStore, update: Update, *, cache_path: Path) -> None:
    """Raise a ``RejectedError`` if ``update`` may not be applied."""
    from gitreg.gitstore.verify_cache import SqliteCache
    from gitreg.model.dates import utcnow
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    if update.ref != MAIN:
        _check_other_ref(store, update)
        return
    if update.new == ZERO:
        raise PolicyViolationError("the main branch may not be deleted", rule="ref-delete")
    trusted = None if update.old == ZERO else update.old
    pinned = _config(store, TRUST_ROOT_KEY)
    cache = SqliteCache(store.path / cache_path, trust_root=pinned or "")
    try:
        verifier = Verifier(store, cache, context=VerifyContext.for_push(utcnow()),
                            pinned_policy=pinned)
        verifier.verify_range(trusted, update.new)
    finally:
        cache.close()


def _check_other_ref(store: RegistryStore, update: Update) -> None:
    """Other refs only where the policy at main lists them (``signed.refs`` globs)."""
    from gitreg.model.policy import parse_policy

    main = store.ref(MAIN)
    patterns: tuple[str, ...] = ()
    if main is not None:
        entry = store.entry(store.commit(main).tree, "policy.json")
        if entry is not None:
            patterns = parse_policy(store.blob(entry.oid, BOOTSTRAP_MAX_SIZE)).signed.refs
    if not any(fnmatch.fnmatchcase(update.ref, p) for p in patterns):
        hint = None
        if update.ref.startswith("refs/gitreg/heartbeat/"):
            hint = ("heartbeats are written on the server by `gitreg server heartbeat` "
                    "and carried by `sync-peers`, never pushed")
        raise PolicyViolationError(f"{update.ref}: only refs/heads/main may be updated",
                                   rule="ref-not-allowed", hint=hint)


def _config(store: RegistryStore, key: str) -> str | None:
    try:
        value = store.repo.config[key]
    except KeyError:
        return None
    return str(value) or None


def main() -> int:
    """Read the pushed updates from stdin and return the hook's exit status."""
    from gitreg.gitstore.store import RegistryStore

    verbose = os.environ.get("GITREG_VERBOSE") == "1"
    current = ""
    try:
        store = RegistryStore.open_from_env()
        for update in parse_updates(sys.stdin):
            current = f" {update.ref}"
            check_update(store, update, cache_path=CACHE_FILE)
    except GitregError as exc:
        sys.stderr.write(f"gitreg: rejected{current}: {exc.diagnostics()}\n")
        return 1
    except Exception as exc:  # noqa: BLE001 -- fail closed: no unexpected error lets a push in
        if verbose:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"gitreg: rejected: internal error {type(exc).__name__}: {exc}\n")
        return 1
    return 0
