"""The site state database's schema: its migrations, oldest first (gitreg/site/state.py).

Each script takes the schema one version up (``PRAGMA user_version``); a
released script never changes, so a database of any earlier version is
migrated by the same steps a new one is built with.
"""

from __future__ import annotations

from typing import get_args

from gitreg.site.records import OPEN_DELIVERY, DeliveryStatus, ImageState
from gitreg.sqlite_store import Schema

# A migration script never changes once released: version 1 spelled a merged
# remote "diverged" (version 5 renames it "forked").
_V1_REMOTE_STATES = ("current", "stale", "diverged", "invalid", "unreachable")

_SCHEMA_V1 = f"""
CREATE TABLE registry (
    name           TEXT PRIMARY KEY,
    trusted_commit TEXT,
    advanced_at    TEXT
);
CREATE TABLE remote (
    registry   TEXT NOT NULL,
    url        TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN {_V1_REMOTE_STATES!r}),
    detail     TEXT NOT NULL DEFAULT '',
    commit_id  TEXT,
    checked_at TEXT NOT NULL,
    PRIMARY KEY (registry, url)
);
CREATE TABLE image (
    uuid         TEXT PRIMARY KEY,
    registry     TEXT NOT NULL,
    list_uuid    TEXT NOT NULL,
    list_version TEXT NOT NULL,
    sha512       TEXT NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    state        TEXT NOT NULL CHECK (state IN {get_args(ImageState)!r}),
    reason       TEXT NOT NULL DEFAULT '',
    path         TEXT,
    metadata     TEXT NOT NULL DEFAULT '{{}}',
    vo           TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX image_by_registry ON image (registry, state);
CREATE TABLE event (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    env        TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE delivery (
    event_seq  INTEGER NOT NULL REFERENCES event (seq) ON DELETE CASCADE,
    handler    TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN {get_args(DeliveryStatus)!r}),
    attempts   INTEGER NOT NULL DEFAULT 0,
    returncode INTEGER,
    timed_out  INTEGER NOT NULL DEFAULT 0,
    detail     TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (event_seq, handler)
);
CREATE INDEX delivery_open ON delivery (status, event_seq)
    WHERE status IN {OPEN_DELIVERY!r};
"""

# Version 2: the parents of a trusted local merge (so it can be rebuilt if
# repos/ is lost) and the image conflicts between registries at the last sync.
_SCHEMA_V2 = """
ALTER TABLE registry ADD COLUMN merge_parents TEXT NOT NULL DEFAULT '';
CREATE TABLE conflict (
    image_uuid TEXT PRIMARY KEY,
    registries TEXT NOT NULL,
    taken_from TEXT,
    detail     TEXT NOT NULL,
    seen_at    TEXT NOT NULL
);
"""

# Version 3: images an operator holds (`gitreg site hold`): their failures
# are acknowledged and do not fail a sync.
_SCHEMA_V3 = """
CREATE TABLE hold (
    image_uuid TEXT PRIMARY KEY,
    reason     TEXT NOT NULL DEFAULT '',
    held_at    TEXT NOT NULL
);
"""

# Version 4: what each cloud adapter registered (gitreg.adapters.records).
_SCHEMA_V4 = """
CREATE TABLE cloud_image (
    cloud        TEXT NOT NULL,
    image_uuid   TEXT NOT NULL,
    sha512       TEXT NOT NULL,
    remote_id    TEXT,
    uploaded_sha512 TEXT,
    disk_format  TEXT,
    state        TEXT NOT NULL CHECK (state IN ('registered', 'retiring', 'failed')),
    reason       TEXT NOT NULL DEFAULT '',
    retired_at   TEXT,
    members      TEXT NOT NULL DEFAULT '',
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (cloud, image_uuid, sha512)
);
"""

# Version 5: a remote whose head was merged is "forked" (the word of
# docs/format.md), so the remote table is rebuilt with the new CHECK; the
# equivocations seen by syncs (one list, one version, several contents) are
# kept, since they are evidence against their signer, not a passing state.
_SCHEMA_V5 = """
CREATE TABLE remote_v5 (
    registry   TEXT NOT NULL,
    url        TEXT NOT NULL,
    state      TEXT NOT NULL
               CHECK (state IN ('current', 'stale', 'forked', 'invalid', 'unreachable')),
    detail     TEXT NOT NULL DEFAULT '',
    commit_id  TEXT,
    checked_at TEXT NOT NULL,
    PRIMARY KEY (registry, url)
);
INSERT INTO remote_v5 (registry, url, state, detail, commit_id, checked_at)
    SELECT registry, url, CASE state WHEN 'diverged' THEN 'forked' ELSE state END,
           detail, commit_id, checked_at FROM remote;
DROP TABLE remote;
ALTER TABLE remote_v5 RENAME TO remote;
CREATE TABLE equivocation (
    registry   TEXT NOT NULL,
    path       TEXT NOT NULL,
    version    TEXT NOT NULL,
    blobs      TEXT NOT NULL,
    commits    TEXT NOT NULL,
    chosen     TEXT,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    PRIMARY KEY (registry, path, version, blobs)
);
"""

# Version 6: a sync asks whether any image record changed since it last
# planned by reading one row, not by scanning every record: triggers count
# the changes, under a generation drawn when the row is made (a state started
# afresh never matches an older count). An index by list finds the records
# of the lists a sync plans from changes.
_SCHEMA_V6 = """
CREATE TABLE image_changes (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    generation TEXT NOT NULL,
    changes    INTEGER NOT NULL
);
INSERT INTO image_changes VALUES (1, lower(hex(randomblob(16))), 0);
CREATE TRIGGER image_inserted AFTER INSERT ON image
    BEGIN UPDATE image_changes SET changes = changes + 1; END;
CREATE TRIGGER image_updated AFTER UPDATE ON image
    BEGIN UPDATE image_changes SET changes = changes + 1; END;
CREATE TRIGGER image_deleted AFTER DELETE ON image
    BEGIN UPDATE image_changes SET changes = changes + 1; END;
CREATE INDEX image_by_list ON image (list_uuid);
"""

# Version 7: the stamp of cache/ (gitreg.site.cache.DirStamp) when a sync
# last left it holding exactly the cached records, with the fingerprint of
# the records then: while both hold, the next sync need not list cache/.
_SCHEMA_V7 = """
CREATE TABLE cache_stamp (
    one      INTEGER PRIMARY KEY CHECK (one = 1),
    stamp    TEXT NOT NULL,
    records  TEXT NOT NULL,
    taken_at TEXT NOT NULL
);
"""

# Index i holds the script that takes the schema from version i to i + 1.
_MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5,
                                 _SCHEMA_V6, _SCHEMA_V7)
SCHEMA = Schema("site state", _MIGRATIONS, synchronous="FULL", foreign_keys=True)
SCHEMA_VERSION = SCHEMA.version
