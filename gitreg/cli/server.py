"""`gitreg server`: the registry's Git server (bare repository, hook, smart HTTP)."""

from __future__ import annotations

from pathlib import Path

import typer

server_app = typer.Typer(
    help="Run a registry Git server: a bare repository guarded by gitreg's pre-receive hook.",
    no_args_is_help=True,
)


@server_app.command("init")
def init(
    path: Path = typer.Argument(..., help="The bare repository to create, e.g. registry.git."),
    source: Path = typer.Option(..., "--from", help="The registry repository to seed main from."),
) -> None:
    """Create (or update) a bare server repository with the hook and receive checks.

    Re-running on an existing server repository reinstalls the hook and the
    configuration; its refs are left as they are.
    """
    from gitreg.cli import output
    from gitreg.server.init import init_server

    init_server(path, source=source)
    output.ok(f"server repository ready at {path} (pre-receive hook installed)")
    output.data(str(path))


@server_app.command("serve")
def serve(
    path: Path = typer.Argument(..., help="The bare server repository to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(0, "--port", help="TCP port (0 picks a free one)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not log requests to stderr."),
) -> None:
    """Serve fetch and push over smart HTTP (git http-backend) until SIGINT or SIGTERM.

    Prints the repository URL on stdout once it listens. Pushes run the
    repository's hooks. Without HTTP, `git daemon --enable=receive-pack`
    serves the same repository over git:// (no authentication).
    """
    import signal
    import sys

    from gitreg.cli import output
    from gitreg.server.http import GitHTTPServer

    server = GitHTTPServer(path, host, port, log=None if quiet else _log)

    def _stop(signum: int, _frame: object) -> None:
        # serve_forever polls; an exception from the handler ends it cleanly.
        raise KeyboardInterrupt(signum)

    signal.signal(signal.SIGTERM, _stop)
    output.data(server.url)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        output.info("stopping")
    finally:
        server.server_close()


def _log(line: str) -> None:
    import sys

    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def register(app: typer.Typer) -> None:
    """Add the ``server`` command group to the ``gitreg`` app."""
    app.add_typer(server_app, name="server")
