"""`gitreg init`, `gitreg publish`, `gitreg log`: a registry working copy's life.

Every endorser command works on a registry working copy, by default the one
containing the current directory (`-C DIR` to name another).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from gitreg.publish.workcopy import WorkingCopy

REGISTRY_HELP = "The registry working copy (default: the one containing the current directory)."


def registry_option() -> Any:
    """The ``-C DIR`` option every endorser command takes."""
    return typer.Option(None, "-C", "--registry", help=REGISTRY_HELP, show_default=False)


def open_copy(directory: Path | None) -> WorkingCopy:
    from gitreg.publish.workcopy import WorkingCopy

    return WorkingCopy.open(directory)


def init(
    directory: Path = typer.Argument(..., help="The new registry's directory (created)."),
    name: str = typer.Option(..., "--name", help="The registry's name."),
    root_keys: list[str] = typer.Option(
        ..., "--root-key", help="A root signing key: an SSH private key file or "
        "openpgp:FINGERPRINT. Repeat for several root keys; all of them sign the first "
        "policy, the first one signs the commit."),
    threshold: int = typer.Option(1, "--threshold",
                                  help="Root signatures needed for a policy change."),
) -> None:
    """Create a registry: gitreg.json and a signed policy.json in a first signed commit.

    Prints the policy fingerprint (sha256:<hex>) that sites pin as their trust root.
    """
    from gitreg.cli import output
    from gitreg.model.dates import utcnow
    from gitreg.publish.registry_init import create_registry
    from gitreg.publish.signing_keys import load_signing_key

    signers = [load_signing_key(spec) for spec in root_keys]
    created = create_registry(directory, name=name, root_signers=signers,
                              threshold=threshold, now=utcnow())
    output.ok(f"created registry {name!r} ({created.info.registry_id}) in {directory}: "
              f"policy version 1, {len(signers)} root key(s), threshold {threshold}, "
              f"commit {created.commit[:12]}")
    output.info("sites pin this policy fingerprint as the registry's trust root:")
    output.data(created.policy_fingerprint)


def publish(
    *,
    key: str | None = typer.Option(
        None, "--key", help="Signs the changed lists (and the commit unless --commit-key): "
        "an SSH private key file, openpgp:FINGERPRINT or x509:CERT.pem:KEY.pem. "
        "Default: publish.key from the local config."),
    commit_key: str | None = typer.Option(
        None, "--commit-key", help="Signs the commit (SSH or OpenPGP; needed with an X.509 "
        "--key). Default: publish.commit_key, else --key."),
    message: str | None = typer.Option(None, "-m", "--message", help="The commit message."),
    lifetime: int | None = typer.Option(
        None, "--lifetime", help="Days until the published lists expire (default 28, or "
        "publish.lifetime; capped by the policy's maximum)."),
    push: bool = typer.Option(False, "--push", help="Then push main to every git remote."),
    policy_only: bool = typer.Option(False, "--policy-only",
                                     help="Publish only the policy change; lists stay drafts."),
    registry: Path | None = registry_option(),
) -> None:
    """Sign and commit every changed list (and a policy change) as one signed commit.

    The commit is checked by the same verifier as the server's hook before main
    moves: what the hook would refuse is refused here and nothing changes.
    """
    from gitreg.cli import output
    from gitreg.errors import UsageError
    from gitreg.model.dates import utcnow
    from gitreg.publish import replicas
    from gitreg.publish.publication import publish as do_publish
    from gitreg.publish.signing_keys import commit_signer, load_signing_key

    copy = open_copy(registry)
    if push and not replicas.remotes(copy):
        raise UsageError(f"{copy.workdir}: --push, but no git remote is configured",
                         hint="git remote add origin URL")
    spec = key or copy.config.get("publish.key")
    commit_spec = commit_key or copy.config.get("publish.commit_key")
    if spec is None and commit_spec is None:
        raise UsageError("no signing key: give --key (or set publish.key in the local config)")
    list_signer = load_signing_key(spec) if spec else None
    signer = (commit_signer(list_signer, commit_spec) if list_signer is not None
              else commit_signer(load_signing_key(str(commit_spec)), None))
    result = do_publish(copy, list_signer=list_signer, commit_signer=signer, now=utcnow(),
                        message=message, lifetime_days=lifetime, policy_only=policy_only,
                        notice=output.warn, fetch_replicas=push, inform=output.info)
    if result.commit is None:
        output.ok(f"nothing to publish: the working copy matches main "
                  f"({(result.parent or '')[:12]}); no commit made")
    else:
        if result.policy_version is not None:
            output.info(f"policy version {result.policy_version}")
        for p in result.lists:
            output.info(f"{p.list_id} ({p.title}): version {p.old_version or 'new'} -> "
                        f"{p.new_version}, expires in {result.lifetime_days} days; "
                        f"{p.images.describe()}")
        output.ok(f"published commit {result.commit}")
        output.data(result.commit)
    if push:
        push_and_report(copy)


def push_and_report(copy: WorkingCopy) -> None:
    """Push ``main`` to every replica, one line each; exit 1 or 3 when one refused or failed."""
    from gitreg.cli import output
    from gitreg.publish import replicas

    verdicts = replicas.push_main(copy, notice=output.info)
    for verdict in verdicts:
        say = {"accepted": output.ok, "pending": output.warn}.get(verdict.status, output.error)
        say(verdict.describe())
    code = replicas.exit_code(verdicts)
    if code:
        raise typer.Exit(code)


def log(
    imagelist: str | None = typer.Argument(None, metavar="[LIST]",
                                           help="A list UUID or unambiguous title."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
    registry: Path | None = registry_option(),
) -> None:
    """The signed history of a list (or of every list and the policy), newest first."""
    from gitreg.cli import output
    from gitreg.publish.drafts import resolve_list
    from gitreg.publish.history import registry_log

    copy = open_copy(registry)
    head = copy.head()
    list_id = None
    if imagelist is not None:
        published = {i: il for i in copy.published_list_ids()
                     if (il := copy.published_list(i)) is not None}
        list_id = resolve_list(published, imagelist).identifier
    entries = registry_log(copy.store, head, list_id=list_id) if head else []
    if json_output:
        output.data_json([entry.to_dict() for entry in entries])
        return
    lines = []
    for entry in entries:
        when = entry.time.strftime("%Y-%m-%dT%H:%M:%SZ")
        if entry.policy_version is not None:
            lines.append(f"{entry.commit[:12]}  {when}  policy version {entry.policy_version}"
                         f"  committed by {entry.commit_signer.describe()}")
            continue
        assert entry.list_signer is not None and entry.images is not None
        lines.append(f"{entry.commit[:12]}  {when}  {entry.list_id} ({entry.title})  "
                     f"version {entry.old_version or 'new'} -> {entry.new_version}  "
                     f"signed by {entry.list_signer.describe()}\n"
                     f"    {entry.images.describe()}")
    if lines:
        output.data("\n".join(lines))
    else:
        output.info("no published changes")


def register(app: typer.Typer) -> None:
    """Add ``init``, ``publish``, ``log`` to the ``gitreg`` app."""
    app.command("init")(init)
    app.command("publish")(publish)
    app.command("log")(log)
