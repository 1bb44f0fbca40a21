"""Ref locks a killed git left behind in a repository gitreg fetches into.

Sites, replicas (``sync-peers``) and mirrors all fetch into their own
repositories from cron; a run killed mid-fetch must not block every later one.
"""

from __future__ import annotations

import time
from pathlib import Path

from gitreg.errors import GitregError

# A ref lock this old belongs to no live git.
STALE_LOCK_AGE = 60.0


def clear_stale_locks(repository: Path) -> list[Path]:
    """Delete the ref lock files a killed ``git fetch`` left; return them.

    git creates ``<ref>.lock`` while it updates a ref and removes it a few
    milliseconds later; a fetch killed in between leaves it, and every later
    fetch of that remote would fail. Only locks older than
    ``STALE_LOCK_AGE`` go: a killed sync's git may still be running (it has
    its own process group), and a fresh lock may be its.
    """
    candidates = [repository / "packed-refs.lock",
                  *(repository / "refs" / "gitreg").rglob("*.lock")]
    removed: list[Path] = []
    now = time.time()
    for lock in candidates:
        try:
            if now - lock.lstat().st_mtime < STALE_LOCK_AGE:
                continue
            lock.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise GitregError(f"cannot remove the stale lock {lock}: {exc.strerror or exc}") \
                from None
        removed.append(lock)
    return removed
