"""The site's memory between syncs: one SQLite database under state_dir.

It holds, per registry, the trusted commit and when it advanced; per remote,
how it looked at the last sync; per image, what the site holds and why; and
the event journal with the delivery status of every handler.

Every change runs in a transaction (``BEGIN IMMEDIATE``, so two writers are
serialized rather than failing half-way), the database is in WAL mode with
``synchronous=FULL`` so a committed change survives a crash or power loss,
and the schema carries a version (``PRAGMA user_version``) so a newer gitreg
can migrate it and an older one refuses to touch it.

Delivery guarantee (see docs/site.md): at least once. Before a handler runs,
its delivery is committed as ``started``; after it returns, the outcome is
committed. A delivery found ``started`` on the next sync was interrupted by a
crash at an unknown point, so it is delivered again (with
``GITREG_EVENT_ATTEMPT`` > 1 so the handler can tell). A delivery recorded as
``delivered`` is never run again. Losing an ExpirePrefix would leave a
revoked image registered in the cloud; a duplicate is at worst a second
registration that handlers already guard against, so duplicates are the
side to err on.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast, get_args

from gitreg.errors import GitregError
from gitreg.site.events import EventType, HandlerOutcome
from gitreg.site.records import (
    ConflictRecord,
    Delivery,
    DeliveryStatus,
    EquivocationRecord,
    EventRecord,
    ImageRecord,
    ImageState,
    RegistryRecord,
    RemoteRecord,
    RemoteState,
)
from gitreg.site.state_schema import SCHEMA
from gitreg.sqlite_store import StoreVersionError, open_store

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_IMAGE_COLUMNS = ("SELECT uuid, registry, list_uuid, list_version, sha512, size, state, reason, "
                  "path, metadata, vo, created_at, updated_at FROM image")
_IMAGE_FILTERS = {(False, False): "", (True, False): " WHERE registry = ?",
                  (False, True): " WHERE state = ?",
                  (True, True): " WHERE registry = ? AND state = ?"}

_KEEP = object()


class SiteState:
    """An open state database. Not shared between threads: open one per thread."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._depth = 0

    # --- opening -----------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> SiteState:
        """Open (creating or migrating if needed) the state database at path."""
        db_path = Path(path)
        try:
            connection = open_store(db_path, SCHEMA, timeout=60.0)
        except StoreVersionError:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise GitregError(f"cannot open the site state database {db_path}: {exc}") from None
        return cls(connection, db_path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SiteState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # --- transactions ------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All changes inside commit together or not at all; nested calls join the outer.

        ``BEGIN IMMEDIATE`` takes the write lock at once, so a concurrent
        writer waits (up to a minute) instead of failing at commit time.
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._errors("begin a transaction"):
            self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            with self._errors("commit"):
                self._db.execute("COMMIT")
        except GitregError:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise GitregError(f"site state {self.path}: cannot {doing}: {exc}") from None

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self.transaction(), self._errors("write"):
            return self._db.execute(sql, params)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._errors("read"):
            return self._db.execute(sql, params).fetchall()

    # --- registries and remotes -------------------------------------------

    def trusted_commit(self, registry: str) -> str | None:
        """The last commit of the registry whose content the site applied, if any."""
        record = self.registry(registry)
        return record.trusted_commit if record else None

    def registry(self, name: str) -> RegistryRecord | None:
        rows = self._read("SELECT name, trusted_commit, advanced_at, merge_parents FROM registry "
                          "WHERE name = ?", (name,))
        return _registry_record(rows[0]) if rows else None

    def registries(self) -> list[RegistryRecord]:
        rows = self._read("SELECT name, trusted_commit, advanced_at, merge_parents FROM registry "
                          "ORDER BY name")
        return [_registry_record(row) for row in rows]

    def advance(self, registry: str, commit: str, *, now: datetime | None = None,
                merge_parents: Sequence[str] = ()) -> None:
        """Record commit as the registry's trusted state (call after apply succeeded).

        ``merge_parents``: the parents if ``commit`` is the site's own merge.
        ``advanced_at`` changes only when the commit does.
        """
        if not commit:
            raise GitregError(f"advance({registry!r}): empty commit id")
        parents = " ".join(sorted(merge_parents))
        self._write(
            "INSERT INTO registry (name, trusted_commit, advanced_at, merge_parents) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "trusted_commit = excluded.trusted_commit, merge_parents = excluded.merge_parents, "
            "advanced_at = CASE WHEN trusted_commit IS excluded.trusted_commit "
            "THEN advanced_at ELSE excluded.advanced_at END "
            "WHERE trusted_commit IS NOT excluded.trusted_commit "
            "OR merge_parents IS NOT excluded.merge_parents",
            (registry, commit, _stamp(now), parents))

    def record_conflicts(self, conflicts: Sequence[ConflictRecord]) -> None:
        """Replace the recorded conflicts with those of this sync."""
        with self.transaction():
            self._write("DELETE FROM conflict")
            for c in conflicts:
                self._write(
                    "INSERT INTO conflict (image_uuid, registries, taken_from, detail, seen_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (c.image_uuid, " ".join(c.registries), c.taken_from, c.detail,
                     _stamp(c.seen_at)))

    def conflicts(self) -> list[ConflictRecord]:
        rows = self._read("SELECT image_uuid, registries, taken_from, detail, seen_at "
                          "FROM conflict ORDER BY image_uuid")
        return [ConflictRecord(r[0], tuple(r[1].split()), r[2], r[3], _parse(r[4]))
                for r in rows]

    def record_equivocations(self, found: Sequence[EquivocationRecord], *,
                             now: datetime | None = None) -> None:
        """Add what this sync saw; one already known only gets a new ``last_seen``."""
        with self.transaction():
            for e in found:
                self._write(
                    "INSERT INTO equivocation (registry, path, version, blobs, commits, chosen, "
                    "reason, detail, first_seen, last_seen) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (registry, path, version, blobs) DO UPDATE SET "
                    "last_seen = excluded.last_seen, commits = excluded.commits, "
                    "chosen = excluded.chosen, detail = excluded.detail",
                    (e.registry, e.path, e.version, " ".join(sorted(e.blobs)),
                     " ".join(sorted(e.commits)), e.chosen, e.reason, e.detail, _stamp(now),
                     _stamp(now)))

    def equivocations(self, registry: str | None = None) -> list[EquivocationRecord]:
        """Every equivocation a sync saw (oldest first), of one registry or all."""
        sql = ("SELECT registry, path, version, blobs, commits, chosen, detail, reason, "
               "first_seen, last_seen FROM equivocation")
        params: tuple[str, ...] = ()
        if registry is not None:
            sql += " WHERE registry = ?"
            params = (registry,)
        rows = self._read(sql + " ORDER BY first_seen, registry, path, version", params)
        return [EquivocationRecord(r[0], r[1], r[2], tuple(r[3].split()), tuple(r[4].split()),
                                   r[5], r[6], r[7], _parse(r[8]), _parse(r[9]))
                for r in rows]

    def record_remote(self, registry: str, url: str, state: RemoteState, detail: str = "", *,
                      commit: str | None = None, now: datetime | None = None) -> None:
        """Record how one remote looked at this sync (replacing the previous record)."""
        _check_choice("remote state", state, get_args(RemoteState))
        self._write(
            "INSERT INTO remote (registry, url, state, detail, commit_id, checked_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (registry, url) DO UPDATE SET "
            "state = excluded.state, detail = excluded.detail, commit_id = excluded.commit_id, "
            "checked_at = excluded.checked_at",
            (registry, url, state, detail, commit, _stamp(now)))

    def remotes(self, registry: str | None = None) -> list[RemoteRecord]:
        sql = "SELECT registry, url, state, detail, commit_id, checked_at FROM remote"
        params: tuple[str, ...] = ()
        if registry is not None:
            sql += " WHERE registry = ?"
            params = (registry,)
        rows = self._read(sql + " ORDER BY registry, url", params)
        return [RemoteRecord(r[0], r[1], cast(RemoteState, r[2]), r[3], r[4], _parse(r[5]))
                for r in rows]

    def forget_remotes(self, registry: str, keep: Collection[str]) -> int:
        """Delete the records of remotes no longer configured; return how many."""
        rows = self._read("SELECT url FROM remote WHERE registry = ?", (registry,))
        gone = [r[0] for r in rows if r[0] not in keep]
        with self.transaction():
            for url in gone:
                self._write("DELETE FROM remote WHERE registry = ? AND url = ?", (registry, url))
        return len(gone)

    # --- images ------------------------------------------------------------

    def images(self, *, registry: str | None = None,
               state: ImageState | None = None) -> list[ImageRecord]:
        """Image records, by UUID; optionally only of one registry and/or in one state."""
        # Only the conditions given, so that SQLite can use image_by_registry:
        # "?1 IS NULL OR registry = ?1" made every call scan the whole table.
        where = _IMAGE_FILTERS[(registry is not None, state is not None)]
        rows = self._read(_IMAGE_COLUMNS + where + " ORDER BY uuid",
                          tuple(v for v in (registry, state) if v is not None))
        return [_image_record(row) for row in rows]

    def images_of(self, *, lists: Collection[str] = (),
                  uuids: Collection[str] = ()) -> list[ImageRecord]:
        """The records from any of ``lists`` or with any of ``uuids`` (a sync's changed part)."""
        if not lists and not uuids:
            return []
        rows = self._read(
            "SELECT uuid, registry, list_uuid, list_version, sha512, size, state, reason, path, "
            "metadata, vo, created_at, updated_at FROM image "
            "WHERE list_uuid IN (SELECT value FROM json_each(?1)) "
            "OR uuid IN (SELECT value FROM json_each(?2)) ORDER BY uuid",
            (json.dumps(sorted(lists)), json.dumps(sorted(uuids))))
        return [_image_record(row) for row in rows]

    def image_fingerprint(self) -> tuple[str, int]:
        """(generation, changes): differs once any image record was written (one row read)."""
        row = self._read("SELECT generation, changes FROM image_changes")[0]
        return str(row[0]), int(row[1])

    def records_mark(self) -> str:
        """``image_fingerprint`` as the text ``record_cache_stamp`` keeps with a stamp."""
        generation, changes = self.image_fingerprint()
        return f"{generation}:{changes}"

    def cache_stamp(self) -> tuple[str, str, datetime] | None:
        """(stamp of cache/, records fingerprint, when) as a sync last recorded
        them (``record_cache_stamp``), or None."""
        rows = self._read("SELECT stamp, records, taken_at FROM cache_stamp")
        return (str(rows[0][0]), str(rows[0][1]), _parse(rows[0][2])) if rows else None

    def record_cache_stamp(self, stamp: str | None, *, now: datetime | None = None) -> None:
        """Record that cache/, with this stamp, holds exactly the cached records
        as they are now; None forgets it (the next sync lists cache/)."""
        with self.transaction():
            if stamp is None:
                self._write("DELETE FROM cache_stamp")
                return
            self._write("INSERT OR REPLACE INTO cache_stamp VALUES (1, ?, ?, ?)",
                        (stamp, self.records_mark(), _stamp(now)))

    def count_images(self, state: ImageState) -> int:
        return int(self._read("SELECT COUNT(*) FROM image WHERE state = ?", (state,))[0][0])

    def image(self, image_uuid: str) -> ImageRecord | None:
        rows = self._read(
            "SELECT uuid, registry, list_uuid, list_version, sha512, size, state, reason, path, "
            "metadata, vo, created_at, updated_at FROM image WHERE uuid = ?", (image_uuid,))
        return _image_record(rows[0]) if rows else None

    def verified_uuids(self) -> set[str]:
        """The images recorded as verified in cache/ (for SiteCache.clean_stray)."""
        return {r[0] for r in self._read("SELECT uuid FROM image WHERE state = 'cached'")}

    def image_uuids(self) -> set[str]:
        """Every image the state has a record of, in any state."""
        return {r[0] for r in self._read("SELECT uuid FROM image")}

    def upsert_image(self, image_uuid: str, *, registry: str, list_uuid: str,
                     list_version: str, sha512: str, size: int, state: ImageState,
                     reason: str = "", path: str | Path | None = None,
                     metadata: Mapping[str, Any] | None = None, vo: str | None = None,
                     now: datetime | None = None) -> None:
        """Insert or replace everything known about one image (created_at is kept)."""
        _check_choice("image state", state, get_args(ImageState))
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise GitregError(f"image {image_uuid}: size must be a non-negative integer")
        stamp = _stamp(now)
        self._write(
            "INSERT INTO image (uuid, registry, list_uuid, list_version, sha512, size, state, "
            "reason, path, metadata, vo, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uuid) DO UPDATE SET "
            "registry = excluded.registry, list_uuid = excluded.list_uuid, "
            "list_version = excluded.list_version, sha512 = excluded.sha512, "
            "size = excluded.size, state = excluded.state, reason = excluded.reason, "
            "path = excluded.path, metadata = excluded.metadata, vo = excluded.vo, "
            "updated_at = excluded.updated_at",
            (image_uuid, registry, list_uuid, list_version, sha512.lower(), size, state, reason,
             None if path is None else str(path), _json(metadata or {}), vo, stamp, stamp))

    def mark(self, image_uuid: str, state: ImageState, reason: str = "", *,
             path: str | Path | object | None = _KEEP, now: datetime | None = None) -> None:
        """Change an image's state and reason (and its path, if given)."""
        _check_choice("image state", state, get_args(ImageState))
        if path is _KEEP:
            cursor = self._write(
                "UPDATE image SET state = ?, reason = ?, updated_at = ? WHERE uuid = ?",
                (state, reason, _stamp(now), image_uuid))
        else:
            cursor = self._write(
                "UPDATE image SET state = ?, reason = ?, path = ?, updated_at = ? WHERE uuid = ?",
                (state, reason, None if path is None else str(path), _stamp(now), image_uuid))
        if cursor.rowcount == 0:
            raise GitregError(f"site state {self.path}: no image {image_uuid} to mark {state}")

    def forget_image(self, image_uuid: str) -> bool:
        """Delete an image's record; True if there was one."""
        return self._write("DELETE FROM image WHERE uuid = ?", (image_uuid,)).rowcount > 0

    # --- holds -------------------------------------------------------------

    def hold(self, image_uuid: str, reason: str = "", *, now: datetime | None = None) -> None:
        """Acknowledge an image's failures (kept, with a new reason, if already held)."""
        with self.transaction():
            self._write("INSERT INTO hold (image_uuid, reason, held_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (image_uuid) DO UPDATE SET reason = excluded.reason",
                        (image_uuid.lower(), reason, _stamp(now)))

    def release(self, image_uuid: str) -> bool:
        """End a hold; True if the image was held."""
        with self.transaction():
            return self._write("DELETE FROM hold WHERE image_uuid = ?",
                               (image_uuid.lower(),)).rowcount > 0

    def holds(self) -> dict[str, tuple[str, datetime]]:
        """Held image UUIDs -> (reason, since when)."""
        return {str(r[0]): (str(r[1]), _parse(r[2])) for r in self._read(
            "SELECT image_uuid, reason, held_at FROM hold ORDER BY image_uuid")}

    # --- event journal -----------------------------------------------------

    def enqueue_event(self, key: str, event_type: EventType | str, env: Mapping[str, str],
                      handlers: Sequence[str], *, now: datetime | None = None) -> bool:
        """Journal an event for the given handlers; False if the key is already journaled.

        The handler list is fixed here so that a handler added to the config
        later does not receive the whole history.
        """
        kind = EventType(event_type)
        stamp = _stamp(now)
        with self.transaction():
            cursor = self._write(
                "INSERT INTO event (key, type, env, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                (key, kind.value, _json(dict(env)), stamp))
            if cursor.rowcount == 0:
                return False
            seq = cursor.lastrowid
            for handler in dict.fromkeys(handlers):
                self._write("INSERT INTO delivery (event_seq, handler, status, updated_at) "
                            "VALUES (?, ?, 'pending', ?)", (seq, handler, stamp))
        return True

    def has_event(self, key: str) -> bool:
        return bool(self._read("SELECT 1 FROM event WHERE key = ?", (key,)))

    def pending_events(self) -> list[EventRecord]:
        """Events with a delivery not yet done, oldest first, each with only those deliveries."""
        rows = self._read(
            "SELECT e.seq, e.key, e.type, e.env, e.created_at, d.handler, d.status, d.attempts, "
            "d.returncode, d.timed_out, d.detail, d.updated_at "
            "FROM event e JOIN delivery d ON d.event_seq = e.seq "
            "WHERE d.status IN ('pending', 'started', 'failed') ORDER BY e.seq, d.rowid")
        return _event_records(rows)

    def events(self) -> list[EventRecord]:
        """The whole journal, oldest first, with every delivery."""
        rows = self._read(
            "SELECT e.seq, e.key, e.type, e.env, e.created_at, d.handler, d.status, d.attempts, "
            "d.returncode, d.timed_out, d.detail, d.updated_at "
            "FROM event e LEFT JOIN delivery d ON d.event_seq = e.seq ORDER BY e.seq, d.rowid")
        return _event_records(rows)

    def start_delivery(self, key: str, handler: str, *, now: datetime | None = None) -> int:
        """Commit that handler is about to run for the event; return the attempt number."""
        with self.transaction():
            seq = self._event_seq(key)
            rows = self._read("SELECT status, attempts FROM delivery "
                              "WHERE event_seq = ? AND handler = ?", (seq, handler))
            if not rows:
                raise GitregError(f"event {key}: handler {handler!r} has no delivery")
            if rows[0][0] == "delivered":
                raise GitregError(f"event {key} was already delivered to {handler!r}")
            attempt = int(rows[0][1]) + 1
            self._write("UPDATE delivery SET status = 'started', attempts = ?, updated_at = ? "
                        "WHERE event_seq = ? AND handler = ?", (attempt, _stamp(now), seq, handler))
        return attempt

    def mark_delivered(self, key: str, handler: str, outcome: HandlerOutcome, *,
                       now: datetime | None = None) -> None:
        """Record a handler's outcome: ``delivered`` if it succeeded, else ``failed``."""
        status = "delivered" if outcome.ok else "failed"
        detail = "" if outcome.ok else _failure_detail(outcome)
        with self.transaction():
            seq = self._event_seq(key)
            cursor = self._write(
                "UPDATE delivery SET status = ?, returncode = ?, timed_out = ?, detail = ?, "
                "updated_at = ?, attempts = max(attempts, 1) "
                "WHERE event_seq = ? AND handler = ? AND status != 'delivered'",
                (status, outcome.returncode, int(outcome.timed_out), detail, _stamp(now), seq,
                 handler))
            if cursor.rowcount == 0 and not self._read(
                    "SELECT 1 FROM delivery WHERE event_seq = ? AND handler = ?", (seq, handler)):
                raise GitregError(f"event {key}: handler {handler!r} has no delivery")

    def give_up_delivery(self, key: str, handler: str, attempts: int, *,
                         now: datetime | None = None) -> None:
        """Stop retrying a failed delivery (``dropped``, its last failure kept in the detail)."""
        with self.transaction():
            self._write(
                "UPDATE delivery SET status = 'dropped', "
                "detail = ? || detail, updated_at = ? "
                "WHERE event_seq = ? AND handler = ? AND status = 'failed'",
                (f"given up after {attempts} failed attempts: ", _stamp(now),
                 self._event_seq(key), handler))

    def drop_handlers(self, configured: Collection[str], *,
                      now: datetime | None = None) -> int:
        """Mark open deliveries to handlers no longer configured as dropped; return how many."""
        rows = self._read("SELECT DISTINCT handler FROM delivery "
                          "WHERE status IN ('pending', 'started', 'failed')")
        gone = [r[0] for r in rows if r[0] not in configured]
        count = 0
        with self.transaction():
            for handler in gone:
                count += self._write(
                    "UPDATE delivery SET status = 'dropped', updated_at = ?, "
                    "detail = 'handler removed from the config' "
                    "WHERE handler = ? AND status IN ('pending', 'started', 'failed')",
                    (_stamp(now), handler)).rowcount
        return count

    def _event_seq(self, key: str) -> int:
        rows = self._read("SELECT seq FROM event WHERE key = ?", (key,))
        if not rows:
            raise GitregError(f"site state {self.path}: no event {key!r} in the journal")
        return int(rows[0][0])


def _registry_record(row: Sequence[Any]) -> RegistryRecord:
    return RegistryRecord(row[0], row[1], _parse(row[2]) if row[2] else None,
                          tuple(row[3].split()))


def _image_record(row: Sequence[Any]) -> ImageRecord:
    return ImageRecord(
        uuid=row[0], registry=row[1], list_uuid=row[2], list_version=row[3], sha512=row[4],
        size=int(row[5]), state=cast(ImageState, row[6]), reason=row[7], path=row[8],
        metadata=json.loads(row[9]), vo=row[10], created_at=_parse(row[11]),
        updated_at=_parse(row[12]))


def _event_records(rows: Sequence[Sequence[Any]]) -> list[EventRecord]:
    records: list[EventRecord] = []
    by_seq: dict[int, list[Delivery]] = {}
    for row in rows:
        seq = int(row[0])
        if seq not in by_seq:
            by_seq[seq] = []
            records.append(EventRecord(seq, row[1], EventType(row[2]), json.loads(row[3]),
                                       _parse(row[4]), ()))
        if row[5] is not None:
            by_seq[seq].append(Delivery(
                handler=row[5], status=cast(DeliveryStatus, row[6]), attempts=int(row[7]),
                returncode=row[8], timed_out=bool(row[9]), detail=row[10],
                updated_at=_parse(row[11])))
    return [EventRecord(r.seq, r.key, r.type, r.env, r.created_at, tuple(by_seq[r.seq]))
            for r in records]


def _failure_detail(outcome: HandlerOutcome) -> str:
    tail = outcome.stderr_tail.strip().splitlines()[-5:]
    return outcome.describe() + (": " + " | ".join(tail) if tail else "")


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise GitregError(f"invalid {what} {value!r} (one of {', '.join(choices)})")


def _stamp(now: datetime | None) -> str:
    moment = datetime.now(UTC) if now is None else now
    if moment.tzinfo is None:
        raise GitregError("site state times must be aware datetimes (UTC)")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _parse(text: str) -> datetime:
    # Only _stamp's form; fromisoformat reads it ten times faster than
    # strptime, and a sync reads two stamps of every image record.
    if len(text) != 20 or not text.endswith("Z"):
        raise ValueError(f"not a site state time stamp: {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
