"""All of a web build's files change together, or none does.

A build writes every new or changed file under a temporary name in
``OUT/.gitreg-web.staging/`` first. Only when all are written does it
commit, by renaming a journal (``OUT/.gitreg-web.journal``: which staged
file replaces which page, which pages go) into place; then it applies the
journal and removes it. A build interrupted before the commit left the old
catalogue untouched (the staging directory is dropped by the next build);
one interrupted after it is rolled forward by the next build (``recover``)
before anything is read. Dot-files are never served (``web serve``), so
neither the staging directory nor the journal is ever a page.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

STAGING = ".gitreg-web.staging"
JOURNAL = ".gitreg-web.journal"


def recover(out: Path) -> None:
    """Finish a committed build that was interrupted; drop an uncommitted one."""
    journal = out / JOURNAL
    try:
        moves = json.loads(journal.read_bytes())
    except FileNotFoundError:
        moves = None
    if isinstance(moves, dict):
        _apply(out, moves)
    journal.unlink(missing_ok=True)
    shutil.rmtree(out / STAGING, ignore_errors=True)
    for stray in out.glob(f"{JOURNAL}.*.tmp"):  # a journal write that never finished
        stray.unlink(missing_ok=True)


def _apply(out: Path, journal: dict[str, Any]) -> None:
    staging = out / STAGING
    made: set[Path] = set()
    for name, target in journal.get("moves", []):
        path = out / target
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        # Moved before an interruption: the journal is replayed from the start.
        with contextlib.suppress(FileNotFoundError):
            (staging / name).replace(path)
    for target in journal.get("deletes", []):
        (out / str(target)).unlink(missing_ok=True)


class Staging:
    """The files of one build, written aside until ``commit``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.directory = out / STAGING
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self.moves: list[list[str]] = []

    def write(self, target: str, data: bytes) -> None:
        name = str(len(self.moves))
        (self.directory / name).write_bytes(data)
        self.moves.append([name, target])

    def commit(self, deletes: list[str]) -> None:
        """Commit point: after the journal's rename the new catalogue is the one."""
        from gitreg.durable import write_atomic

        data = json.dumps({"moves": self.moves, "deletes": deletes}).encode("utf-8")
        write_atomic(self.out / JOURNAL, data)
        recover(self.out)
