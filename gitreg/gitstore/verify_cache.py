"""The verifier's cache on disk (SQLite), one per repository and trust root.

Verdicts keyed by Git object ids do not go stale under one trust root and one
rules version (both kept in ``meta``; a change clears the verdicts), so a
server hook or a site keeps them across runs: a push is verified in time
proportional to what it changes, and no commit or blob is verified twice.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from gitreg.sqlite_store import Schema, open_store
from gitreg.verify.context import RULES_VERSION
from gitreg.verify.facts import ListFacts

# Version 1 is the layout of the first caches, which kept no user_version:
# IF NOT EXISTS lets it adopt them as they are.
_SCHEMA_V1 = """
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
SCHEMA = Schema("verification cache", (_SCHEMA_V1,), derived=True, adopts_unversioned=True)


class SqliteCache:
    """``VerificationCache`` in an SQLite file; writes are committed per call.

    A verdict is recorded only after it was reached, so a crash loses at most
    work, never soundness.
    """

    def __init__(self, path: Path, *, trust_root: str = "",
                 rules_version: int = RULES_VERSION) -> None:
        self._db = open_store(path, SCHEMA)
        if trust_root:
            self._check_meta("trust_root", trust_root)
        # A cache from before the rules were versioned holds verdicts of older rules.
        self._check_meta("rules", str(rules_version), missing_is_stale=True)

    def _check_meta(self, key: str, value: str, *, missing_is_stale: bool = False) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None and not missing_is_stale:
            self._db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
        elif row is None or row[0] != value:
            # Verdicts reached under another trust root or other rules prove nothing here.
            self._db.executescript("DELETE FROM commits; DELETE FROM trees;"
                                   "DELETE FROM signatures;")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._db.close()

    def _has(self, sql: str, *args: str) -> bool:
        return self._db.execute(sql, args).fetchone() is not None

    def is_commit_verified(self, oid: str) -> bool:
        return self._has("SELECT 1 FROM commits WHERE oid=?", oid)

    def mark_commit_verified(self, oid: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO commits VALUES (?)", (oid,))

    def is_tree_indexed(self, tree: str) -> bool:
        return self._has("SELECT 1 FROM trees WHERE oid=?", tree)

    def mark_tree_indexed(self, tree: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO trees VALUES (?)", (tree,))

    def signature_ok(self, data: str, signature: str, key: str) -> bool:
        return self._has("SELECT 1 FROM signatures WHERE data=? AND signature=? AND key=?",
                         data, signature, key)

    def mark_signature_ok(self, data: str, signature: str, key: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO signatures VALUES (?, ?, ?)",
                         (data, signature, key))

    def list_facts(self, blob: str) -> ListFacts | None:
        row = self._db.execute("SELECT body FROM facts WHERE blob=?", (blob,)).fetchone()
        if row is None:
            return None
        body = json.loads(row[0])
        return ListFacts(
            identifier=body["identifier"], version=body["version"],
            created=datetime.fromisoformat(body["created"]),
            expires=datetime.fromisoformat(body["expires"]),
            images=tuple(body["images"]), endorser_dn=body["endorser_dn"],
            endorser_ca=body["endorser_ca"])

    def put_list_facts(self, blob: str, facts: ListFacts) -> None:
        body = json.dumps({
            "identifier": facts.identifier, "version": facts.version,
            "created": facts.created.isoformat(), "expires": facts.expires.isoformat(),
            "images": list(facts.images), "endorser_dn": facts.endorser_dn,
            "endorser_ca": facts.endorser_ca})
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR IGNORE INTO facts VALUES (?, ?)", (blob, body))
            self._db.executemany("INSERT OR IGNORE INTO images VALUES (?, ?)",
                                 [(image, blob) for image in facts.images])

    def blobs_with_image(self, image: str) -> set[str]:
        rows = self._db.execute("SELECT blob FROM images WHERE image=?", (image,))
        return {row[0] for row in rows}
