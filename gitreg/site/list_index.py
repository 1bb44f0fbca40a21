"""Which lists of a registry's state carry images, kept current by tree diffs.

A sync's plan needs the lists that carry images and the lists the site's
image records name; every other list (no image: new, or decommissioned)
contributes nothing to it. ``ListIndex`` remembers, for the last tree it was
brought to, the blob of every list with at least one image, and moves to a
new tree by reading only the paths that differ
(``RegistryStore.changed_paths``): a sync of a 10,000-list registry in which
one list changed reads that list, not 10,000.

Whether a list carries images is read from the verifier's facts (kept by
blob id), not by parsing it. The same file keeps, by blob id, what the plan
needs of each subscribed list (``gitreg.site.plan.ListSummary``): a list is
parsed once, when its blob first appears. And it keeps what the site last
planned (``Planned``): the tree whose images the site's records reflect,
under a key naming everything that plan depended on but the clock and the
lists, with the time span in which no list or image expiry changes it, and
the lists whose images failed. The next sync plans only the lists that
changed since (and those failed ones), not the registry.

Both are derived data, kept in their own SQLite file next to the registry's
local repository. It is updated
in one transaction, so it always describes exactly the tree it names; when
it is missing, unreadable, or names a tree the repository lacks, it is
rebuilt from the whole tree. Losing it costs time, never correctness.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gitreg.errors import RejectedError
from gitreg.gitstore.store import RegistryStore
from gitreg.site.plan import ListSummary
from gitreg.sqlite_store import Schema, open_store
from gitreg.verify import layout
from gitreg.verify.state import StateFinding, StateVerdict

# Bump when what a row means changes: an index of another version is rebuilt.
_VERSION = "1"
# The tables (gitreg.sqlite_store migrations; IF NOT EXISTS adopts the
# indexes written before they were versioned).
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lists (list_uuid TEXT PRIMARY KEY, blob TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plan_memo (key TEXT PRIMARY KEY, valid_from TEXT NOT NULL,
                                      valid_until TEXT, body TEXT NOT NULL);
"""
# Version 2: list summaries and names by blob, and what was last planned
# (the plan memo is gone: a sync plans from changes instead).
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS summary (blob TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names (blob TEXT PRIMARY KEY, title TEXT NOT NULL,
                                  series TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS planned (one INTEGER PRIMARY KEY CHECK (one = 1),
                                    key TEXT NOT NULL, tree TEXT NOT NULL,
                                    valid_from TEXT NOT NULL, valid_until TEXT,
                                    dirty TEXT NOT NULL);
DROP TABLE IF EXISTS plan_memo;
"""
# Derived data: losing the last transaction to a power cut only means the
# next sync diffs from an older tree (synchronous=NORMAL).
SCHEMA = Schema("list index", (_SCHEMA_V1, _SCHEMA_V2), derived=True, adopts_unversioned=True)


class _WithImages(Protocol):
    @property
    def images(self) -> Sequence[object]: ...


# The facts (or the parse) of the list blob ``oid`` found at ``path``.
ListReader = Callable[[str, str], _WithImages]


@dataclass(frozen=True)
class Planned:
    """What the site last planned for a registry, and until when it holds."""

    key: str
    tree: str
    valid_from: datetime
    valid_until: datetime | None
    # Lists whose images did not all arrive: planned again at the next sync.
    dirty: frozenset[str]

    def holds(self, key: str, now: datetime) -> bool:
        """Whether a sync at ``now`` with plan key ``key`` may start from it."""
        # A clock set back past the plan's own time could cross an expiry unseen.
        return key == self.key and self.valid_from <= now and (
            self.valid_until is None or now < self.valid_until)


class ListIndex:
    """The lists with images of one registry's tree, in ``<registry>.lists.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> ListIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lists_with_images(self, store: RegistryStore, tree: str,
                          read: ListReader) -> dict[str, str]:
        """List UUID -> blob of every list of ``tree`` that carries an image.

        ``read`` parses the lists that must be looked at (the changed ones,
        or all of them on a rebuild); the caller may keep what it parsed.
        """
        known = self._load()
        if known is not None and known[0] == tree:
            return known[1]
        lists: dict[str, str] | None = None
        if known is not None:
            with contextlib.suppress(RejectedError):
                # An index tree the repository lacks (a state dir restored
                # from elsewhere) cannot be diffed: rebuild instead.
                lists = _moved(store, known[0], tree, known[1], read)
        if lists is None:
            lists = _built(store, tree, read)
        self._save(tree, lists, previous=known[1] if known is not None else None)
        return lists

    def summaries(self, blobs: Collection[str]) -> dict[str, ListSummary]:
        """The summaries kept for ``blobs`` (those it has; unreadable ones are left out)."""
        found: dict[str, ListSummary] = {}
        if not blobs:
            return found
        try:
            rows = self._connect().execute(
                "SELECT blob, body FROM summary WHERE blob IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(set(blobs))),)).fetchall()
            for blob, body in rows:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    found[blob] = ListSummary.from_json(json.loads(body))
        except (sqlite3.DatabaseError, OSError):
            self._discard()
            return {}
        return found

    def keep_summaries(self, summaries: dict[str, ListSummary]) -> None:
        """Keep the summaries of list blobs (blob ids name their content: never stale)."""
        if not summaries:
            return
        with self._writing() as db:
            db.executemany("INSERT OR REPLACE INTO summary VALUES (?, ?)",
                           [(blob, json.dumps(s.to_json(), ensure_ascii=False))
                            for blob, s in summaries.items()])

    def names(self, blobs: Collection[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Blob -> (title, series names) kept for ``blobs`` (for subscriptions by name)."""
        if not blobs:
            return {}
        try:
            rows = self._connect().execute(
                "SELECT blob, title, series FROM names "
                "WHERE blob IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(set(blobs))),)).fetchall()
            return {str(b): (str(t), tuple(json.loads(s))) for b, t, s in rows}
        except (sqlite3.DatabaseError, OSError, ValueError, TypeError):
            self._discard()
            return {}

    def keep_names(self, names: dict[str, tuple[str, tuple[str, ...]]]) -> None:
        if not names:
            return
        with self._writing() as db:
            db.executemany("INSERT OR REPLACE INTO names VALUES (?, ?, ?)",
                           [(b, t, json.dumps(list(s))) for b, (t, s) in names.items()])

    def planned(self) -> Planned | None:
        """What was last planned, or None (never, or unreadable: plan in full)."""
        try:
            row = self._connect().execute(
                "SELECT key, tree, valid_from, valid_until, dirty FROM planned").fetchone()
            if row is None:
                return None
            return Planned(row[0], row[1], datetime.fromisoformat(row[2]),
                           datetime.fromisoformat(row[3]) if row[3] else None,
                           frozenset(json.loads(row[4])))
        except (sqlite3.DatabaseError, OSError, ValueError, TypeError):
            return None

    def set_planned(self, planned: Planned) -> None:
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO planned VALUES (1, ?, ?, ?, ?, ?)",
                       (planned.key, planned.tree, planned.valid_from.isoformat(),
                        planned.valid_until.isoformat() if planned.valid_until else None,
                        json.dumps(sorted(planned.dirty))))

    def forget_planned(self) -> None:
        """The next sync plans in full (the site's records changed behind the plan)."""
        with self._writing() as db:
            db.execute("DELETE FROM planned")

    def verdict(self) -> StateVerdict | None:
        """The state verdict kept by ``keep_verdict``, to carry forward (or None)."""
        try:
            row = self._connect().execute(
                "SELECT value FROM meta WHERE key = 'verdict'").fetchone()
            if row is None:
                return None
            kept = json.loads(row[0])
            inert = {list_id: StateFinding("endorser-expired", "", path, list_id=list_id,
                                           endorser=endorser)
                     for list_id, (endorser, path) in kept["inert"].items()}
            return StateVerdict(commit=kept["commit"], at=datetime.fromisoformat(kept["at"]),
                                inert=inert, policy_version=int(kept["policy_version"]),
                                expired_endorsers=frozenset(kept["expired_endorsers"]))
        except (sqlite3.DatabaseError, OSError, ValueError, TypeError, KeyError):
            return None

    def keep_verdict(self, verdict: StateVerdict) -> None:
        """What the next sync needs of this verdict to judge only the lists that change."""
        body = json.dumps({
            "commit": verdict.commit, "at": verdict.at.isoformat(),
            "policy_version": verdict.policy_version,
            "expired_endorsers": sorted(verdict.expired_endorsers),
            "inert": {k: [f.endorser, f.path] for k, f in verdict.inert.items()}})
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('verdict', ?)", (body,))

    # --- storage -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_store(self.path, SCHEMA)
        return self._db

    def _load(self) -> tuple[str, dict[str, str]] | None:
        """(tree, lists) as stored, or None if there is no usable index."""
        try:
            db = self._connect()
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("version") != _VERSION or "tree" not in meta:
                return None
            return meta["tree"], dict(db.execute("SELECT list_uuid, blob FROM lists"))
        except (sqlite3.DatabaseError, OSError):
            self._discard()
            return None

    def _save(self, tree: str, lists: dict[str, str], *,
              previous: dict[str, str] | None) -> None:
        # A failure to record is not the sync's: it goes on with the lists it
        # has, and the next sync rebuilds the index.
        with self._writing() as db:
            if previous is None:
                db.execute("DELETE FROM lists")
                previous = {}
            gone = [(u,) for u in previous if u not in lists]
            changed = [(u, b) for u, b in lists.items() if previous.get(u) != b]
            db.executemany("DELETE FROM lists WHERE list_uuid = ?", gone)
            db.executemany("INSERT OR REPLACE INTO lists VALUES (?, ?)", changed)
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [("version", _VERSION), ("tree", tree)])

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. The index is only ever a shortcut: one SQLite
        cannot write is removed (the next sync rebuilds it), never an error."""
        try:
            db = self._connect()
            with db:
                db.execute("BEGIN IMMEDIATE")
                yield db
        except (sqlite3.DatabaseError, OSError):
            self._discard()

    def _discard(self) -> None:
        """Remove an index SQLite cannot read (it is rebuilt from the tree)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{self.path}{suffix}").unlink()


def _built(store: RegistryStore, tree: str, read: ListReader) -> dict[str, str]:
    lists: dict[str, str] = {}
    for entry in store.entries(tree):
        if layout.is_list(entry.path) and read(entry.oid, entry.path).images:
            lists[_list_uuid(entry.path)] = entry.oid
    return lists


def _moved(store: RegistryStore, old_tree: str, tree: str, lists: dict[str, str],
           read: ListReader) -> dict[str, str]:
    moved = dict(lists)
    for change in store.changed_paths(old_tree, tree):
        if not layout.is_list(change.path):
            continue
        if change.new_oid is not None and read(change.new_oid, change.path).images:
            moved[_list_uuid(change.path)] = change.new_oid
        else:
            moved.pop(_list_uuid(change.path), None)
    return moved


def _list_uuid(path: str) -> str:
    list_uuid = layout.list_id_of(path)
    assert list_uuid is not None  # is_list matched the path
    return list_uuid
