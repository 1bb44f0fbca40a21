"""`gitreg attest IMAGE --result passed|failed --key KEY`: a site's signed statement."""

from __future__ import annotations

from pathlib import Path

import typer

from gitreg.cli.registry import open_copy, push_and_report, registry_option


def attest(
    *,
    image: str = typer.Argument(..., metavar="IMAGE", help="An image UUID, a title unique in "
                                "the registry, or LIST/IMAGE."),
    result: str = typer.Option(..., "--result", help="passed or failed."),
    kind: str = typer.Option("boot-test", "--kind",
                             help="What was tested: boot-test, security-scan, ..."),
    note: str | None = typer.Option(None, "--note", help="A free-text note (what, where)."),
    key: str = typer.Option(..., "--key", help="The attester's signing key (an SSH private "
                            "key file or openpgp:FINGERPRINT); it signs the statement and "
                            "the commit."),
    push: bool = typer.Option(False, "--push", help="Then push main to every git remote."),
    json_output: bool = typer.Option(False, "--json", help="Print the statement as JSON."),
    registry: Path | None = registry_option(),
) -> None:
    """Sign a statement about an image (in-toto layout) and publish it on main.

    Writes attestations/<attester>/<image-uuid>.json and its .sig in one commit
    signed by the same key, checked by the server hook's verifier first. The
    same statement again changes nothing; a different one replaces it.
    """
    from gitreg.cli import output
    from gitreg.errors import UsageError
    from gitreg.model.dates import utcnow
    from gitreg.publish import replicas
    from gitreg.publish.attest import attest as do_attest
    from gitreg.publish.signing_keys import load_signing_key

    copy = open_copy(registry)
    if push and not replicas.remotes(copy):
        raise UsageError(f"{copy.workdir}: --push, but no git remote is configured",
                         hint="git remote add origin URL")
    done = do_attest(copy, image, result=result, kind=kind, note=note,
                     signer=load_signing_key(key), now=utcnow(), fetch_replicas=push,
                     inform=output.info, notice=output.warn)
    what = (f"image {done.image} ({done.image_title}): {done.statement.result} "
            f"{done.statement.kind} by {done.attester}")
    if json_output:
        output.data_json({"commit": done.commit, "path": done.path, "list": done.list_id,
                          "statement": done.statement.to_dict()})
    if done.commit is None:
        output.ok(f"already attested, nothing to publish: {what} ({done.path})")
    else:
        if done.replaced is not None:
            output.info(f"replaces {done.replaced.result} {done.replaced.kind} of "
                        f"{done.replaced.time:%Y-%m-%dT%H:%M:%SZ}")
        output.ok(f"attested {what}: {done.path}, commit {done.commit}")
        if not json_output:
            output.data(done.commit)
    if push:
        push_and_report(copy)


def register(app: typer.Typer) -> None:
    """Add ``attest`` to the ``gitreg`` app."""
    app.command("attest")(attest)
