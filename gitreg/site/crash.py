"""Test-only crash points: SIGKILL a sync at a named step of its pipeline.

The crash-safety promise (docs/site.md, "What lives in state_dir") is that a
sync killed at any point leaves no half-written file in cache/ and that the
next sync converges to what an uninterrupted sync would have produced. The
tests prove it by killing a real ``gitreg site sync`` at exact places: when
the environment variable ``GITREG_TEST_CRASH_AT`` names one of ``POINTS``,
the sync sends itself SIGKILL on reaching that point (no cleanup, no
``finally``, exactly like the OOM killer or ``kill -9``).

Used only by the test suite (tests/test_site_crash.py); never set it on a
real site. The points:

- ``fetch``: a remote was fetched into the local repository (its ref moved),
  nothing verified or applied yet;
- ``retire``: an image was renamed from cache/ into expired/, the state does
  not know yet;
- ``download``: an image download has written part of its file in partial/;
- ``install``: a verified image was renamed from partial/ into cache/, the
  state still records it ``pending``;
- ``cloud-upload``: a cloud adapter uploaded an image and checked its
  digest, the site state does not record it yet;
- ``state-commit``: inside the final transaction (remote records and the
  trusted commit's advance), before it commits;
- ``peers-merged``: ``gitreg server sync-peers`` fetched and judged its
  peers and wrote the merge commit, ``main`` not moved yet;
- ``mirror-advanced``: ``gitreg mirror sync`` moved ``main``, the dumb-HTTP
  files (``info/refs``) still name the old state.

tests/test_convergence_processes.py uses the last two, with real SIGKILLs
at random moments, in its seeded schedules.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "GITREG_TEST_CRASH_AT"
POINTS = frozenset({"fetch", "retire", "download", "install", "state-commit",
                    "cloud-upload", "peers-merged", "mirror-advanced"})


def armed(point: str) -> bool:
    """True if the test asked for a crash at ``point``."""
    return os.environ.get(CRASH_ENV) == point


def crash_point(point: str) -> None:
    """SIGKILL this process if ``GITREG_TEST_CRASH_AT`` names ``point`` (tests only)."""
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}")
    if armed(point):
        os.kill(os.getpid(), signal.SIGKILL)
