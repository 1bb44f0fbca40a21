"""The ``gitreg`` command: a thin typer app.

Commands live in sibling modules (one concept each); each exposes
``register(app)`` and never imports this module, and ``COMMAND_MODULES``
below lists them (see "Adding a command" in CONTRIBUTING.md). Heavy imports
stay inside the command functions so that start-up stays cheap for cron
jobs and hooks.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

from gitreg import __version__
from gitreg.errors import EXIT_OPERATIONAL, GitregError

if TYPE_CHECKING:
    import typer

    app: typer.Typer


# The modules of gitreg.cli whose ``register(app)`` adds their commands; a
# test checks that every module defining a command is listed.
COMMAND_MODULES = ("registry", "imagelists", "images", "policy", "check", "interop",
                   "verify", "server", "site", "search", "web", "replica", "mirror",
                   "attest")


def build_app() -> typer.Typer:
    """A new ``gitreg`` app with every command of ``COMMAND_MODULES`` registered."""
    built = _root_app()
    for name in COMMAND_MODULES:
        importlib.import_module(f"gitreg.cli.{name}").register(built)
    return built


def _root_app() -> typer.Typer:
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
        built = globals()["app"] = build_app()
    return built


def __getattr__(name: str) -> object:
    # ``app`` is built on first use: typer and the pydantic it imports cost
    # more than pygit2, and a plain ``site sync`` (cron) runs without them.
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _verbose() -> bool:
    return os.environ.get("GITREG_VERBOSE") == "1" or "--verbose" in sys.argv or "-v" in sys.argv


def _run_plain(argv: list[str]) -> None:
    """Run a plain ``site sync``, ``search`` or ``verify`` line without typer, and exit."""
    from gitreg.cli import search_run, site_sync, verify_run

    if (sync := site_sync.plain_sync_arguments(argv)) is not None:
        sys.exit(site_sync.run_plain(sync))
    if (search := search_run.plain_search_arguments(argv)) is not None:
        sys.exit(search_run.run_plain(search))
    if (verification := verify_run.plain_verify_arguments(argv)) is not None:
        sys.exit(verify_run.run_plain(verification))


def run() -> None:
    """Console-script entry point: every error becomes a message and an exit code."""
    try:
        _run_plain(sys.argv[1:])
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
