"""`gitreg verify`: run the verifier over a registry's history."""

from __future__ import annotations

from pathlib import Path

import typer


def verify(
    directory: Path = typer.Argument(Path(), help="A registry (working copy or bare)."),
    since: str | None = typer.Option(
        None, "--since", help="Trust this revision and verify only what came after it."),
    trust_root: str | None = typer.Option(
        None, "--trust-root", help="sha256:<hex> the initial policy must match."),
    ref: str = typer.Option("refs/heads/main", "--ref", help="The head to verify."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON report on stdout."),
) -> None:
    """Verify every commit (or those after --since): exit 0, or 1 naming commit, path, rule.

    Each commit is judged at its own signed commit time (the hook judges at
    the time of the push), so lists are checked for expiry as of their commit.
    """
    from gitreg.cli import output
    from gitreg.errors import PolicyViolationError, RejectedError
    from gitreg.gitstore.store import RegistryStore
    from gitreg.verify.cache import MemoryCache
    from gitreg.verify.history import Verifier

    store = RegistryStore.open(directory)
    head = store.ref(ref)
    if head is None:
        # A registry's main is never deleted: a repository without one is refused.
        raise PolicyViolationError(f"{directory}: {ref} is missing (deleted, or never "
                                   "published)", rule="ref-delete")
    trusted = store.resolve(since) if since else None
    verifier = Verifier(store, MemoryCache(), now=None, pinned_policy=trust_root)
    try:
        report = verifier.verify_range(trusted, head)
    except RejectedError as exc:
        if json_output:
            error = {"message": exc.message}
            if isinstance(exc, PolicyViolationError):
                error.update(commit=exc.commit or "", path=exc.path or "", rule=exc.rule)
            output.data_json({"valid": False, "head": head, "error": error})
        raise
    if json_output:
        output.data_json({"valid": True, "head": head, "verified": len(report.verified),
                          "equivocations": report.equivocations})
    for finding in report.equivocations:
        output.warn(finding)
    output.ok(f"{directory}: {len(report.verified)} commit(s) verified up to {head[:12]}")


def register(app: typer.Typer) -> None:
    """Add ``verify`` to the ``gitreg`` app."""
    app.command("verify")(verify)
