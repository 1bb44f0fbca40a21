"""`gitreg search`: find images by metadata over one or more verified registries."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from gitreg.catalogue.sources import Snapshot

REGISTRY_HELP = ("A registry (working copy or bare repository) or a site config; "
                 "repeat for several. Default: the current directory.")
_COLUMNS = ("title", "version", "arch", "os", "series", "status", "endorser", "image")


def registry_paths(values: list[Path] | None) -> list[Path]:
    return list(values or [])


def load_registries(paths: list[Path], *, refresh: bool = False, now: datetime | None = None,
                    history: bool = True) -> list[dict[str, Any]]:
    """Verified records of every ``--registry``, warnings on stderr (``history``:
    as ``read_snapshot``)."""
    from gitreg.catalogue.sources import read_snapshot, snapshots
    from gitreg.cli import output

    warnings: list[str] = []
    found: list[Snapshot] = snapshots(paths, warnings)
    for line in warnings:
        output.warn(line)
    return [read_snapshot(s, refresh=refresh, now=now, history=history) for s in found]


def reference_time(at: str | None) -> datetime:
    from gitreg.errors import UsageError
    from gitreg.model.dates import parse_date, utcnow

    if at is None:
        return utcnow()
    try:
        return parse_date(at)
    except ValueError:
        raise UsageError(f"--at {at!r}: not a date of the form 2026-01-31T12:00:00Z") from None


def register(app: typer.Typer) -> None:
    app.command("search")(search)


def search(  # noqa: PLR0917 (typer maps each parameter to an option)
    filters: list[str] | None = typer.Argument(
        None, help="key=value, key~regex, or plain words; all must match."),
    registry: list[Path] | None = typer.Option(None, "--registry", "-r", help=REGISTRY_HELP),
    valid_only: bool = typer.Option(
        True, "--valid-only/--all",
        help="Only images signed, current and not revoked (default), or every image."),
    latest: bool = typer.Option(False, "--latest", help="One image per series: the newest."),
    at: str | None = typer.Option(None, "--at", help="Reference time (default: now)."),
    json_output: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Search images: exit 0 with the rows (possibly none) on stdout.

    Filters: sl:arch=x86_64 (exact, any HEPiX/ad:/gitreg: key), dc:title~^Alma
    (regex), series=NAME, endorser=NAME, registry=NAME, status=expired, or
    words matched in titles, descriptions and OS.
    """
    from gitreg.catalogue.search import parse_filters
    from gitreg.catalogue.search import search as run_search
    from gitreg.catalogue.status import stamp
    from gitreg.cli import output

    parsed = parse_filters(filters or [])
    moment = reference_time(at)
    now = stamp(moment)
    registries = load_registries(registry_paths(registry), now=moment, history=False)
    found = run_search(registries, parsed, now, valid_only=valid_only, latest_only=latest)
    if json_output:
        output.data_json({"at": now, "count": len(found),
                          "results": [{k: v for k, v in row.items() if k != "keys"}
                                      for row in found]})
    else:
        _table(found)
    output.info(f"{len(found)} image(s) found in {len(registries)} registr"
                f"{'y' if len(registries) == 1 else 'ies'}")


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
