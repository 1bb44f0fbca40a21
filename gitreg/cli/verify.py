"""`gitreg verify`: run the verifier over a registry's history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from gitreg.gitstore.store import RegistryStore


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
    import os
    from concurrent.futures import ThreadPoolExecutor

    from gitreg.cli import output
    from gitreg.errors import PolicyViolationError, RejectedError, UsageError
    from gitreg.gitstore.store import RegistryStore
    from gitreg.model.dates import format_date, parse_date, utcnow
    from gitreg.verify.batch import Preverifier
    from gitreg.verify.cache import MemoryCache
    from gitreg.verify.context import VerifyContext
    from gitreg.verify.history import Verifier

    try:
        moment = parse_date(at) if at else utcnow()
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None

    store = RegistryStore.open(directory)
    head = store.ref(ref)
    if head is None:
        # A registry's main is never deleted: a repository without one is refused.
        raise PolicyViolationError(f"{directory}: {ref} is missing (deleted, or never "
                                   "published)", rule="ref-delete")
    trusted = store.resolve(since) if since else None
    # Threads beat processes here (docs/benchmarks.md): cryptography and the
    # json scanner release the GIL, and nothing has to be pickled.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        verifier = Verifier(store, MemoryCache(), context=VerifyContext.for_history(moment),
                            pinned_policy=trust_root, preverify=Preverifier(pool))
        try:
            report = verifier.verify_range(trusted, head)
            # Expiry is a property of the head's state at the reference time.
            verdict = verifier.judge_state(head, with_lists=True)
            refusal = verdict.refusal()
            if refusal is not None:
                raise refusal
        except RejectedError as exc:
            if json_output:
                error = {"message": exc.message}
                if isinstance(exc, PolicyViolationError):
                    error.update(commit=exc.commit or "", path=exc.path or "", rule=exc.rule)
                output.data_json({"valid": False, "head": head, "at": format_date(moment),
                                  "error": error})
            raise
    findings = verdict.findings()
    # Without --trust-root (or --since) the first policy found is trusted as
    # is: say so, with its fingerprint, so the reader can pin it next time.
    unpinned = _initial_policy(store, head) if trust_root is None and since is None else None
    if json_output:
        output.data_json({
            "valid": True, "head": head, "at": format_date(moment),
            "verified": len(report.verified), "equivocations": report.equivocations,
            "state": [{"rule": f.rule, "path": f.path, "message": f.message}
                      for f in findings],
            "trust_root": trust_root or unpinned, "trust_root_pinned": trust_root is not None})
    for finding in report.equivocations:
        output.warn(finding)
    for state_finding in findings:
        output.warn(f"{state_finding.path}: {state_finding.message} "
                    f"[rule: {state_finding.rule}]")
    pinned = (f"; nothing pinned: trusted the repository's first policy {unpinned} as found "
              "(pin it with --trust-root)" if unpinned else "")
    output.ok(f"{directory}: {len(report.verified)} commit(s) verified up to {head[:12]}"
              f"{pinned}")


def _initial_policy(store: RegistryStore, head: str) -> str:
    """The fingerprint of the policy in the root commit of ``head`` (verified already)."""
    from gitreg.model.policy import fingerprint
    from gitreg.verify import layout

    root = store.commits_between(None, head)[0]
    entry = store.tree_entry(root, layout.POLICY_FILE)
    if entry is None:  # the verifier refused such a root: never reached
        return "none"
    return fingerprint(store.read_blob(entry.oid, layout.BOOTSTRAP_MAX_SIZE))


def register(app: typer.Typer) -> None:
    """Add ``verify`` to the ``gitreg`` app."""
    app.command("verify")(verify)
