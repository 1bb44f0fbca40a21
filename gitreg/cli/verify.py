"""`gitreg verify`: run the verifier over a registry's history."""

from __future__ import annotations

from pathlib import Path

import typer


def verify(
    directory: Path = typer.Argument(Path(), help="A registry (working copy or bare)."),
    *,
    since: str | None = typer.Option(
        None, "--since", help="Trust this revision and verify only what came after it."),
    trust_root: str | None = typer.Option(
        None, "--trust-root", help="sha256:<hex> the initial policy must match."),
    ref: str = typer.Option("refs/heads/main", "--ref", help="The head to verify."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON report on stdout."),
    at: str | None = typer.Option(
        None, "--at", help="Reference time YYYY-MM-DDTHH:MM:SSZ (default: now)."),
) -> None:
    """Verify every commit (or those after --since): exit 0, or 1 naming commit, path, rule.

    Commits are judged by their position in history, and expiry (of the
    policy, endorsers and lists) on the head's state at one reference time:
    never at a date a signer wrote into a commit or a list.
    """
    # A plain command line skips typer and runs the same function (verify_run.py).
    from gitreg.cli.verify_run import run_verify

    run_verify(directory, since=since, trust_root=trust_root, ref=ref,
               json_output=json_output, at=at)


def register(app: typer.Typer) -> None:
    """Add ``verify`` to the ``gitreg`` app."""
    app.command("verify")(verify)
