"""`gitreg search`: find images by metadata over one or more verified registries.

A plain command line skips typer (``search_run.py``); both ways run ``run_search``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gitreg.cli.search_run import load_registries, reference_time

__all__ = ["REGISTRY_HELP", "load_registries", "reference_time", "register", "search"]

REGISTRY_HELP = ("A registry (working copy or bare repository) or a site config; "
                 "repeat for several. Default: the current directory.")


def registry_paths(values: list[Path] | None) -> list[Path]:
    return list(values or [])


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
    from gitreg.cli.search_run import run_search

    run_search(filters or [], registry_paths(registry), valid_only=valid_only, latest=latest,
               at=at, json_output=json_output)
