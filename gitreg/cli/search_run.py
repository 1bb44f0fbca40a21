"""`gitreg search`, without typer for a plain command line.

A search over a 10,000-list registry has one second (issue 11), and typer,
with the pydantic it imports to coerce options, costs a fifth of it. So, as
for ``site sync`` (``site_sync.py``), ``gitreg.cli.main.run`` hands a plain
``search`` line (filters, ``--registry``/``-r``, ``--all``/``--valid-only``,
``--latest``, ``--at``, ``--json``, a leading ``--verbose``) straight to
``run_search``; anything else (``--help``, a typo, ``--``, an option given
twice) goes through typer, whose command in ``gitreg.cli.search`` calls
``run_search`` too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_COLUMNS = ("title", "version", "arch", "os", "series", "status", "endorser", "image")
_FLAGS = ("--json", "--latest", "--all", "--valid-only")


@dataclass(frozen=True)
class SearchArguments:
    filters: list[str] = field(default_factory=list)
    registries: list[Path] = field(default_factory=list)
    valid_only: bool = True
    latest: bool = False
    at: str | None = None
    json_output: bool = False
    verbose: bool = False


def plain_search_arguments(argv: Sequence[str]) -> SearchArguments | None:
    """The arguments of a plain ``[--verbose] search ...`` line, else None."""
    from gitreg.cli.plain_line import parse_plain_line

    line = parse_plain_line(argv, ("search",),
                            options={"--registry": "registry", "-r": "registry", "--at": "at"},
                            flags=_FLAGS, repeatable=("registry",), positionals=None)
    if line is None or {"--all", "--valid-only"} <= line.flags:
        return None
    return SearchArguments(list(line.positionals),
                           [Path(r) for r in line.values.get("registry", ())],
                           valid_only="--all" not in line.flags,
                           latest="--latest" in line.flags, at=line.value("at"),
                           json_output="--json" in line.flags, verbose=line.verbose)


def run_plain(arguments: SearchArguments) -> int:
    """Run a search parsed by ``plain_search_arguments``; return the exit code."""
    if arguments.verbose:
        os.environ["GITREG_VERBOSE"] = "1"  # as typer's root --verbose does
    run_search(arguments.filters, arguments.registries, valid_only=arguments.valid_only,
               latest=arguments.latest, at=arguments.at, json_output=arguments.json_output)
    return 0


def run_search(filters: Sequence[str], registries: Sequence[Path], *, valid_only: bool,
               latest: bool, at: str | None, json_output: bool) -> None:
    """Search and print the rows (stdout) and the summary (stderr)."""
    from gitreg.catalogue.search import needs_keys, parse_filters
    from gitreg.catalogue.search import search as run
    from gitreg.catalogue.status import stamp
    from gitreg.cli import output

    parsed = parse_filters(filters)
    moment = reference_time(at)
    now = stamp(moment)
    loaded = load_registries(list(registries), now=moment, history=False,
                             keys=needs_keys(parsed))
    found = run(loaded, parsed, now, valid_only=valid_only, latest_only=latest, keys=False)
    if json_output:
        output.data_json({"at": now, "count": len(found), "results": found})
    else:
        _table(found)
    output.info(f"{len(found)} image(s) found in {len(loaded)} registr"
                f"{'y' if len(loaded) == 1 else 'ies'}")


def load_registries(paths: list[Path], *, refresh: bool = False, now: datetime | None = None,
                    history: bool = True, keys: bool = True) -> list[dict[str, Any]]:
    """Verified records of every ``--registry``, warnings on stderr (``history``,
    ``keys``: as ``read_snapshot``)."""
    from gitreg.catalogue.sources import read_snapshot, snapshots
    from gitreg.cli import output

    warnings: list[str] = []
    found = snapshots(paths, warnings)
    for line in warnings:
        output.warn(line)
    return [read_snapshot(s, refresh=refresh, now=now, history=history, keys=keys)
            for s in found]


def reference_time(at: str | None) -> datetime:
    from gitreg.errors import UsageError
    from gitreg.model.dates import parse_date, utcnow

    if at is None:
        return utcnow()
    try:
        return parse_date(at)
    except ValueError:
        raise UsageError(f"--at {at!r}: not a date of the form 2026-01-31T12:00:00Z") from None


def _table(found: list[dict[str, Any]]) -> None:
    import sys

    from gitreg.cli import output

    if not sys.stdout.isatty():
        # Off a terminal: one tab-separated line per image, a header first.
        output.data("\t".join(_COLUMNS))
        for row in found:
            output.data("\t".join(str(row.get(c) or "-") for c in _COLUMNS))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*_COLUMNS, show_lines=False)
    for row in found:
        table.add_row(*(str(row.get(c) or "-") for c in _COLUMNS))
    Console().print(table)
