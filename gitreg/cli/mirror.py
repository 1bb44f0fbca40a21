"""`gitreg mirror`: a verifying mirror that static web servers and CDNs can serve."""

from __future__ import annotations

from pathlib import Path

import typer

mirror_app = typer.Typer(
    help="Keep a verifying copy of a registry, servable as dumb HTTP by any web server.",
    no_args_is_help=True,
)


@mirror_app.command("init")
def init(
    path: Path = typer.Argument(..., help="The bare mirror repository, e.g. /srv/www/reg.git."),
    upstreams: list[str] = typer.Option(..., "--from", help="An upstream replica or mirror "
                                        "URL (repeat for several)."),
    trust_root: str = typer.Option(..., "--trust-root", help="sha256:<hex> of the registry's "
                                   "initial policy (what `gitreg init` printed)."),
) -> None:
    """Create (or reconfigure) a mirror; run `gitreg mirror sync` to fill it."""
    from gitreg.cli import output
    from gitreg.server.mirror import init_mirror

    init_mirror(path, upstreams, trust_root)
    output.ok(f"mirror ready at {path} ({len(upstreams)} upstream(s)); "
              f"fill it with `gitreg mirror sync {path}`")
    output.data(str(path))


@mirror_app.command("sync")
def sync(
    path: Path = typer.Argument(..., help="The mirror repository."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Fetch every upstream and advance main only to a verified state.

    Exit 0 when main holds the newest valid state, 1 if an upstream serves an
    invalid head (reported; nothing of it is taken), 3 if no upstream could
    be reached.
    """
    from gitreg.cli import output
    from gitreg.server.mirror import sync_mirror

    report = sync_mirror(path)
    if json_output:
        output.data_json(report.to_json())
    for upstream in report.upstreams:
        commit = f" {upstream.commit[:12]}" if upstream.commit else ""
        output.info(f"upstream {upstream.url}: {upstream.state}{commit}: {upstream.detail}")
    for beat in report.heartbeats:
        if beat["state"] in ("invalid", "ignored"):
            output.warn(f"heartbeat {beat['ref']}: {beat['state']}: {beat['detail']}")
    for finding in report.equivocations:
        output.warn(str(finding["message"]))
    if report.after is None:
        summary = "main is still empty"
    elif report.after != report.before:
        how = "merged diverged upstreams" if report.merged else "verified"
        summary = f"main advanced to {report.after[:12]} ({how})"
    else:
        summary = f"main stays at {report.after[:12]}"
    (output.ok if report.exit_code == 0 else output.error)(summary)
    if not json_output and report.after is not None:
        output.data(report.after)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add the ``mirror`` command group to the ``gitreg`` app."""
    app.add_typer(mirror_app, name="mirror")
