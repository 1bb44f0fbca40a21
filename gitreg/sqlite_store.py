"""Opening gitreg's SQLite files alike: connection settings and versioned migrations.

Three stores use SQLite: the site state with its event journal
(``gitreg/site/state.py``), a registry's list index
(``gitreg/site/list_index.py``) and the verifier's cache
(``gitreg/gitstore/verify_cache.py``). Each declares a ``Schema``: its
migrations, where script *i* takes the database from version *i* to
*i + 1*, and the version is kept in ``PRAGMA user_version``. ``open_store``
connects with the same settings for all (autocommit, WAL, a busy timeout)
and migrates in one ``BEGIN IMMEDIATE`` transaction, so two processes
opening a fresh file never both create it and a crash mid-migration leaves
the old version.

The list index and the cache are derived data (``derived=True``): a file of
a newer or unknown layout is emptied and rebuilt, since losing it costs
time, never correctness. The site state is not: such a file is refused.
Stores written before this module kept no ``user_version``; their first
migration uses ``CREATE TABLE IF NOT EXISTS`` so that it adopts them as they
are (``adopts_unversioned=True``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gitreg.errors import GitregError

Synchronous = Literal["FULL", "NORMAL"]

__all__ = ["Schema", "StoreVersionError", "open_store"]


class StoreVersionError(GitregError):
    """An SQLite file this gitreg must not change: newer, or not one of its stores."""


@dataclass(frozen=True)
class Schema:
    """What an SQLite store is and how to bring a file of it up to date."""

    what: str  # for messages: "site state", "list index", "verification cache"
    migrations: Sequence[str]  # migrations[i]: version i -> i + 1 (SQL statements)
    # FULL for what must survive a power cut (the site state); NORMAL for
    # derived data, where losing the last transaction only costs time.
    synchronous: Synchronous = "NORMAL"
    derived: bool = False
    adopts_unversioned: bool = False
    foreign_keys: bool = False

    @property
    def version(self) -> int:
        return len(self.migrations)


def open_store(path: Path, schema: Schema, *, timeout: float = 30.0) -> sqlite3.Connection:
    """Connect to ``path`` (created with its parents if missing) and migrate it.

    Raises ``sqlite3.Error``/``OSError`` as SQLite does (callers wrap them in
    their own words) and ``StoreVersionError`` for a file this gitreg must not
    change. The connection is in autocommit mode: callers open their own
    transactions.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={schema.synchronous}")
        if schema.foreign_keys:
            db.execute("PRAGMA foreign_keys=ON")
        migrate(db, schema, path=path)
    except BaseException:
        db.close()
        raise
    return db


def migrate(db: sqlite3.Connection, schema: Schema, *, path: Path) -> int:
    """Bring ``db`` to ``schema.version`` in one transaction; return the version it had."""
    if _user_version(db) == schema.version:  # the common case: no write lock taken
        return schema.version
    db.execute("BEGIN IMMEDIATE")
    try:
        found = _user_version(db)  # again: another process may have migrated meanwhile
        start = found
        problem = _unusable(db, schema, found, path)
        if problem is not None:
            if not schema.derived:
                raise problem
            _drop_everything(db)
            start = 0
        for step in range(start, schema.version):
            for statement in _statements(schema.migrations[step]):
                db.execute(statement)
        if start != schema.version:
            db.execute(f"PRAGMA user_version = {schema.version:d}")
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return found


def _unusable(db: sqlite3.Connection, schema: Schema, version: int,
              path: Path) -> StoreVersionError | None:
    if version > schema.version:
        return StoreVersionError(
            f"{path}: {schema.what} has schema version {version}, newer than this gitreg "
            f"understands ({schema.version})",
            hint="upgrade gitreg; an older one must not modify this file")
    if version == 0 and not schema.adopts_unversioned and _tables(db):
        return StoreVersionError(f"{path} is an SQLite database but not a gitreg "
                                 f"{schema.what} (no schema version)")
    return None


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _tables(db: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(str(kind), str(name)) for kind, name in db.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
        "AND type IN ('table', 'view')")]


def _drop_everything(db: sqlite3.Connection) -> None:
    # Indexes and triggers go with their tables.
    for kind, name in _tables(db):
        db.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')


def _statements(script: str) -> list[str]:
    # A trigger's body (or a literal) holds ';': a statement ends where SQLite
    # says it is complete, not at every ';'.
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                statements.append(pending.strip())
            pending = ""
    return statements
