"""The SQLite stores' shared opening and migrations (gitreg/sqlite_store.py).

Files written by earlier gitreg versions keep working: the list index and
the verification cache kept no ``user_version`` and are adopted as they are
(their rows survive), the site state migrates from version 1. A file of a
newer layout is emptied if the store is derived data, refused otherwise.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gitreg.errors import GitregError
from gitreg.gitstore.verify_cache import SqliteCache
from gitreg.site import state_schema as state_module
from gitreg.site.list_index import SCHEMA as LIST_INDEX_SCHEMA
from gitreg.site.list_index import ListIndex
from gitreg.site.state import SiteState
from gitreg.sqlite_store import Schema, StoreVersionError, open_store
from gitreg.verify.context import RULES_VERSION

# The exact schemas gitreg wrote before its stores were versioned.
OLD_LIST_INDEX = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lists (list_uuid TEXT PRIMARY KEY, blob TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plan_memo (key TEXT PRIMARY KEY, valid_from TEXT NOT NULL,
                                      valid_until TEXT, body TEXT NOT NULL);
"""
OLD_VERIFY_CACHE = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commits (oid TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS trees (oid TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS signatures (
    data TEXT NOT NULL, signature TEXT NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (data, signature, key));
CREATE TABLE IF NOT EXISTS facts (blob TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (image TEXT NOT NULL, blob TEXT NOT NULL,
    PRIMARY KEY (image, blob));
"""
COMMIT = "c0" * 20
TREE = "7e" * 20
BLOB = "b1" * 20
LIST = "5a1d1f3c-9b1e-4c55-8d0e-3f3b6f0a9a01"


def _old_file(path: Path, script: str, rows: list[tuple[str, tuple[str, ...]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(path)
    raw.executescript(script)
    for sql, args in rows:
        raw.execute(sql, args)
    raw.commit()
    raw.close()


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as raw:
        return int(raw.execute("PRAGMA user_version").fetchone()[0])


def test_unversioned_list_index_is_adopted_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "repos" / "r.lists.sqlite"
    _old_file(path, OLD_LIST_INDEX, [
        ("INSERT INTO meta VALUES (?, ?)", ("version", "1")),
        ("INSERT INTO meta VALUES (?, ?)", ("tree", TREE)),
        ("INSERT INTO lists VALUES (?, ?)", (LIST, BLOB))])
    with ListIndex(path) as index:
        assert index._load() == (TREE, {LIST: BLOB})  # no rebuild: the rows are used
    assert _user_version(path) == len(LIST_INDEX_SCHEMA.migrations)  # adopted, then migrated on


def test_unversioned_verify_cache_is_adopted_with_its_verdicts(tmp_path: Path) -> None:
    path = tmp_path / "verify.sqlite"
    _old_file(path, OLD_VERIFY_CACHE, [
        ("INSERT INTO meta VALUES (?, ?)", ("schema", "1")),
        ("INSERT INTO meta VALUES (?, ?)", ("trust_root", "sha256:aa")),
        ("INSERT INTO meta VALUES (?, ?)", ("rules", str(RULES_VERSION))),
        ("INSERT INTO commits VALUES (?)", (COMMIT,))])
    cache = SqliteCache(path, trust_root="sha256:aa")
    try:
        assert cache.is_commit_verified(COMMIT)
    finally:
        cache.close()
    assert _user_version(path) == 1


def test_unversioned_verify_cache_of_older_rules_keeps_facts_not_verdicts(
        tmp_path: Path) -> None:
    """Adopting the layout is not trusting the verdicts: those of a cache from before
    the rules were versioned are dropped (gitreg.verify.context.RULES_VERSION)."""
    path = tmp_path / "verify.sqlite"
    _old_file(path, OLD_VERIFY_CACHE, [
        ("INSERT INTO meta VALUES (?, ?)", ("schema", "1")),
        ("INSERT INTO commits VALUES (?)", (COMMIT,)),
        ("INSERT INTO images VALUES (?, ?)", ("image-1", BLOB))])
    cache = SqliteCache(path)
    try:
        assert not cache.is_commit_verified(COMMIT)
        assert cache.blobs_with_image("image-1") == {BLOB}
    finally:
        cache.close()
    assert _user_version(path) == 1


def test_site_state_of_version_1_migrates_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.sqlite"
    _old_file(path, state_module._SCHEMA_V1 + "PRAGMA user_version = 1;", [
        ("INSERT INTO registry VALUES (?, ?, ?)", ("r", COMMIT, "2026-01-01T00:00:00Z"))])
    with SiteState.open(path) as state:
        assert state.schema_version == state_module.SCHEMA_VERSION == 7
        record = state.registry("r")
        assert record is not None
        assert (record.trusted_commit, record.merge_parents) == (COMMIT, ())
        assert state.conflicts() == []


def test_site_state_of_version_4_calls_a_diverged_remote_forked(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.sqlite"
    script = "".join(state_module._MIGRATIONS[:4]) + "PRAGMA user_version = 4;"
    _old_file(path, script, [
        ("INSERT INTO remote VALUES (?, ?, ?, ?, ?, ?)",
         ("r", "http://a/r.git", "diverged", "merged", COMMIT, "2026-01-01T00:00:00Z")),
        ("INSERT INTO remote VALUES (?, ?, ?, ?, ?, ?)",
         ("r", "http://b/r.git", "stale", "", COMMIT, "2026-01-01T00:00:00Z"))])
    with SiteState.open(path) as state:
        assert state.schema_version == state_module.SCHEMA_VERSION
        assert [(r.url, r.state, r.detail) for r in state.remotes("r")] == [
            ("http://a/r.git", "forked", "merged"), ("http://b/r.git", "stale", "")]
        assert state.equivocations() == []
        # The rebuilt table keeps its CHECK: the old word is refused now.
        with pytest.raises(GitregError, match="remote state"):
            state.record_remote("r", "http://a/r.git", "diverged")  # type: ignore[arg-type]
    with sqlite3.connect(path) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE remote SET state = 'diverged'")


def test_site_state_of_version_5_counts_image_writes_from_then_on(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.sqlite"
    script = "".join(state_module._MIGRATIONS[:5]) + "PRAGMA user_version = 5;"
    _old_file(path, script, [(
        "INSERT INTO image (uuid, registry, list_uuid, list_version, sha512, size, state, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("i", "r", "l", "1", "ab" * 64, "1", "cached", "2026-01-01T00:00:00Z",
         "2026-01-01T00:00:00Z"))])
    with SiteState.open(path) as state:
        assert state.schema_version == state_module.SCHEMA_VERSION
        before = state.image_fingerprint()
        assert [r.uuid for r in state.images_of(lists=["l"])] == ["i"]
        state.mark("i", "expired", reason="test")
        assert state.image_fingerprint() == (before[0], before[1] + 1)
    with sqlite3.connect(path) as raw:
        names = {str(n) for (n,) in raw.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')")}
    assert {"image_by_list", "image_inserted", "image_updated", "image_deleted"} <= names


def test_newer_derived_store_is_emptied_and_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "verify.sqlite"
    cache = SqliteCache(path)
    cache.mark_commit_verified(COMMIT)
    cache.close()
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE from_the_future (x)")
        raw.execute("PRAGMA user_version = 9")
    cache = SqliteCache(path)
    try:
        # Verdicts of an unknown layout prove nothing: verified again, not trusted.
        assert not cache.is_commit_verified(COMMIT)
        cache.mark_commit_verified(COMMIT)
        assert cache.is_commit_verified(COMMIT)
    finally:
        cache.close()
    assert _user_version(path) == 1
    with sqlite3.connect(path) as raw:
        names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert "from_the_future" not in names


def test_newer_site_state_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    SiteState.open(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 9")
    with pytest.raises(StoreVersionError, match="newer than this gitreg understands"):
        SiteState.open(path)
    assert _user_version(path) == 9


def test_a_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    first = Schema("test store", ("CREATE TABLE a (x)",))
    open_store(path, first).close()
    broken = Schema("test store", ("CREATE TABLE a (x)",
                                   "CREATE TABLE b (y); INSERT INTO nowhere VALUES (1)"))
    with pytest.raises(sqlite3.OperationalError):
        open_store(path, broken)
    assert _user_version(path) == 1
    with sqlite3.connect(path) as raw:
        assert {r[0] for r in raw.execute("SELECT name FROM sqlite_master")} == {"a"}
    fixed = Schema("test store", ("CREATE TABLE a (x)", "CREATE TABLE b (y)"))
    db = open_store(path, fixed)
    db.close()
    assert _user_version(path) == 2


def test_settings_follow_the_schema(tmp_path: Path) -> None:
    durable = open_store(tmp_path / "d.sqlite",
                         Schema("d", ("CREATE TABLE a (x)",), synchronous="FULL",
                                foreign_keys=True))
    derived = open_store(tmp_path / "n.sqlite", Schema("n", ("CREATE TABLE a (x)",)))
    try:
        assert durable.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert durable.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert durable.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert derived.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert derived.execute("PRAGMA foreign_keys").fetchone()[0] == 0
        assert durable.isolation_level is None  # autocommit: callers open transactions
    finally:
        durable.close()
        derived.close()


def test_processes_opening_a_fresh_store_at_once_create_it_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite"
    schema = Schema("test store", ("CREATE TABLE a (x)", "INSERT INTO a VALUES (1)"))
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_store(path, schema).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM a").fetchone()[0] == 1


def test_site_state_of_version_6_has_no_cache_stamp_so_the_next_sync_lists_cache(
        tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.sqlite"
    _old_file(path, "".join(state_module._MIGRATIONS[:6]) + "PRAGMA user_version = 6;", [])
    with SiteState.open(path) as state:
        assert state.schema_version == 7
        assert state.cache_stamp() is None
        state.record_cache_stamp("1:2:3:4", now=datetime(2026, 1, 1, tzinfo=UTC))
        generation, changes = state.image_fingerprint()
        assert state.cache_stamp() == ("1:2:3:4", f"{generation}:{changes}",
                                       datetime(2026, 1, 1, tzinfo=UTC))
        state.record_cache_stamp(None)
        assert state.cache_stamp() is None
