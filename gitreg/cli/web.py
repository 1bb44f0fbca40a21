"""`gitreg web build|serve`: the web catalogue, static or live."""

from __future__ import annotations

from pathlib import Path

import typer

from gitreg.cli.search import REGISTRY_HELP

web_app = typer.Typer(help="The web catalogue: a static site, or served live.",
                      no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(web_app, name="web")


@web_app.command("build")
def build(
    out: Path = typer.Argument(..., help="Output directory (created; updated in place)."),
    registry: list[Path] | None = typer.Option(None, "--registry", "-r", help=REGISTRY_HELP),
    base_url: str | None = typer.Option(
        None, "--base-url", help="Where the site will be hosted (recorded in the JSON API)."),
    at: str | None = typer.Option(None, "--at", help="Reference time (default: now)."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Write the static catalogue (HTML + JSON API) to OUT; re-renders only what changed."""
    from gitreg.catalogue.status import stamp
    from gitreg.catalogue.web.build import build_site
    from gitreg.cli import output
    from gitreg.cli.search_run import load_registries, reference_time

    moment = reference_time(at)
    registries = load_registries(list(registry or []), now=moment)
    report = build_site(registries, out, now=stamp(moment), base_url=base_url)
    if json_output:
        output.data_json({"out": str(out), "rendered": len(report.rendered),
                          "unchanged": report.unchanged, "removed": len(report.removed)})
    output.ok(f"{out}: {len(report.rendered)} file(s) written, {report.unchanged} unchanged, "
              f"{len(report.removed)} removed")


@web_app.command("serve")
def serve(
    registry: list[Path] | None = typer.Option(None, "--registry", "-r", help=REGISTRY_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="Port (0: any free port)."),
    out: Path | None = typer.Option(
        None, "--out", help="Keep the built site here (default: a temporary directory)."),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between checks of the heads."),
) -> None:
    """Serve the catalogue live, rebuilt when a registry's main moves, until interrupted."""
    import tempfile

    from gitreg.catalogue.web.serve import Catalogue
    from gitreg.catalogue.web.serve import serve as run
    from gitreg.cli import output

    with tempfile.TemporaryDirectory(prefix="gitreg-web-") as scratch:
        catalogue = Catalogue(list(registry or []), out or Path(scratch), poll=poll)

        def ready(address: tuple[str, int]) -> None:
            output.info(f"serving the catalogue on http://{address[0]}:{address[1]}/ "
                        "(Ctrl-C stops)")

        try:
            run(catalogue, host, port, ready)
        except KeyboardInterrupt:
            output.ok("stopped")
        except OSError as exc:
            from gitreg.errors import UnreachableError

            raise UnreachableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") \
                from None
