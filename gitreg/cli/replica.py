"""`gitreg replica`: the replicas an endorser's working copy pushes to (its git remotes)."""

from __future__ import annotations

from pathlib import Path

import typer

from gitreg.cli.registry import open_copy, registry_option

replica_app = typer.Typer(
    help="The replicas `gitreg publish --push` reaches (git remotes of the working copy).",
    no_args_is_help=True,
)


@replica_app.command("add")
def add(
    url: str = typer.Argument(..., help="The replica's URL (https://..., ssh://..., a path)."),
    name: str | None = typer.Option(None, "--name", help="The remote name "
                                    "(default: replica-<n>)."),
    registry: Path | None = registry_option(),
) -> None:
    """Add a replica; `gitreg publish --push` then pushes to it too (same as `git remote add`)."""
    from gitreg.cli import output
    from gitreg.publish.replicas import add_replica

    added = add_replica(open_copy(registry), url, name)
    output.ok(f"replica {added} added")
    output.data(added)


@replica_app.command("list")
def list_replicas(registry: Path | None = registry_option()) -> None:
    """Print every replica (name and URL, credentials hidden)."""
    from gitreg.cli import output
    from gitreg.publish.replicas import remotes

    for name, url in remotes(open_copy(registry)):
        output.data(f"{name}\t{url}")


def register(app: typer.Typer) -> None:
    """Add the ``replica`` command group to the ``gitreg`` app."""
    app.add_typer(replica_app, name="replica")
