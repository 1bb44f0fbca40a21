"""The ``gitreg`` command: a thin typer app.

Commands live in sibling modules (one concept each) and register themselves
on ``app`` here; heavy imports stay inside the command functions so that
start-up stays cheap for cron jobs and hooks.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from gitreg import __version__
from gitreg.errors import EXIT_OPERATIONAL, GitregError

if TYPE_CHECKING:
    import typer

    app: typer.Typer


def _build_app() -> typer.Typer:
    import typer

    built = typer.Typer(
        name="gitreg",
        help="Git-backed, replicated registry of signed HEPiX virtual-machine image lists.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    def _version_callback(value: bool) -> None:
        if value:
            typer.echo(f"gitreg {__version__}")
            raise typer.Exit(0)

    @built.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version_callback, is_eager=True,
            help="Print the version and exit.",
        ),
        verbose: bool = typer.Option(
            False, "--verbose", "-v", help="Show tracebacks and debug messages.",
        ),
    ) -> None:
        """Git-backed, replicated registry of signed HEPiX image lists."""
        if verbose:
            os.environ["GITREG_VERBOSE"] = "1"

    return built


def _app() -> typer.Typer:
    built = globals().get("app")
    if built is None:
        built = globals()["app"] = _build_app()
    return built


def __getattr__(name: str) -> object:
    # ``app`` is built on first use: typer and the pydantic it imports cost
    # more than pygit2, and a plain ``site sync`` (cron) runs without them.
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register_commands() -> None:
    # Each module adds its commands to ``app``; imported here, not at the top
    # of the package, so that ``gitreg --version`` pays only for typer.
    from gitreg.cli import check as _check  # noqa: F401
    from gitreg.cli import imagelists as _imagelists  # noqa: F401
    from gitreg.cli import images as _images  # noqa: F401
    from gitreg.cli import interop as _interop  # noqa: F401
    from gitreg.cli import policy as _policy  # noqa: F401
    from gitreg.cli import registry as _registry  # noqa: F401
    from gitreg.cli import server as _server  # noqa: F401
    from gitreg.cli import site as _site  # noqa: F401
    from gitreg.cli import verify as _verify  # noqa: F401


def _verbose() -> bool:
    return os.environ.get("GITREG_VERBOSE") == "1" or "--verbose" in sys.argv or "-v" in sys.argv


def run() -> None:
    """Console-script entry point: every error becomes a message and an exit code."""
    from gitreg.cli.site_sync import plain_sync_arguments, run_plain

    plain_sync = plain_sync_arguments(sys.argv[1:])
    if plain_sync is None:
        _register_commands()
    try:
        if plain_sync is not None:
            sys.exit(run_plain(plain_sync))
        # standalone mode: typer/click turn usage errors into exit 2 themselves.
        _app()()
    except GitregError as exc:
        if _verbose():
            import traceback

            traceback.print_exc()
        from gitreg.cli.output import error

        error(exc.diagnostics())
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 (the last resort: no traceback for users)
        from gitreg.cli.output import error

        if _verbose():
            import traceback

            # Still exit 3: exit 1 would claim the data was rejected.
            traceback.print_exc()
            error(f"internal error: {type(exc).__name__}: {exc}")
            sys.exit(EXIT_OPERATIONAL)
        error(f"internal error: {type(exc).__name__}: {exc} (run with --verbose for a traceback)")
        sys.exit(EXIT_OPERATIONAL)
