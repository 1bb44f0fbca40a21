"""Whether cache/ holds exactly the images the site state records as cached.

cache/ may hold nothing a handler could mistake for a verified image, and a
cached record whose file is gone must be downloaded again. Listing a
30,000-entry cache/ at every sync costs what the site holds, not what
changed, so a sync lists it only when something else may have touched it:

- at the end of a sync in which cache/ changed only through this process's
  own moves (``SiteCache.watched``), the state records the directory's stamp
  (inode, mtime, ctime) with the fingerprint of the image records;
- the next sync lists cache/ unless the stamp, the fingerprint and a young
  enough record all still hold and no record is ``pending`` (what a killed
  sync leaves). A file created, removed or renamed in cache/ by anyone
  changes its mtime and ctime; records changed by anything change the
  fingerprint. Why mtimes are enough, and where they are not: docs/site.md,
  "What a sync reads".

A listing compares the names with the cached records: strays are cleaned up
(``SiteCache.clean_stray``), and cached records with no file make the sync
plan in full, which downloads them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gitreg.site.cache import DirStamp, SiteCache, StrayFile
from gitreg.site.state import SiteState

# A recorded stamp older than this is not trusted: whatever a race with
# another writer of cache/ could have hidden is found within a day.
MAX_STAMP_AGE = timedelta(days=1)


@dataclass(frozen=True)
class CacheCheck:
    """What a sync learnt of cache/ before planning."""

    # False: the recorded stamp showed cache/ unchanged, so it was not listed.
    listed: bool
    strays: list[StrayFile] = field(default_factory=list)
    # Cached records whose file is not (a regular file) in cache/.
    missing: frozenset[str] = frozenset()


def check_cache(state: SiteState, cache: SiteCache, *, now: datetime) -> CacheCheck:
    """cache/ at the start of a sync: unchanged since the last one, or listed."""
    kept = state.cache_stamp()
    current = cache.stamp()
    if kept is not None and current is not None and not state.count_images("pending"):
        stamp, records, taken_at = kept
        if DirStamp.from_text(stamp) == current and records == state.records_mark() \
                and taken_at <= now < taken_at + MAX_STAMP_AGE:
            cache.watch(current)
            return CacheCheck(listed=False)
    return list_cache(state, cache)


def list_cache(state: SiteState, cache: SiteCache) -> CacheCheck:
    """List cache/: clean up strays, find cached records without a file."""
    verified = state.verified_uuids()
    # Taken before listing: a change while (or after) listing changes it.
    stamp = cache.stamp()
    entries = cache.entries()
    strays: list[StrayFile] = []
    if any(kind != "file" or name not in verified for name, kind in entries.items()):
        strays = cache.clean_stray(verified, known=state.image_uuids())
        stamp = cache.stamp()
        entries = cache.entries()
    # Directories are left to the operator (and reported); anything else must be gone.
    clean = all(kind == "directory" or (kind == "file" and name in verified)
                for name, kind in entries.items())
    cache.watch(stamp if clean else None)
    missing = frozenset(u for u in verified if entries.get(u) != "file")
    return CacheCheck(listed=True, strays=strays, missing=missing)
