"""`gitreg check`: validate a plain or S/MIME-signed imagelist."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from datetime import datetime

    from gitreg.interop.hepix import Assessment

AT_HELP = ("Judge the list's dates (and the signer's certificate) at this UTC time, "
           "YYYY-MM-DDTHH:MM:SSZ, instead of now: an old list is otherwise only ever "
           "\"expired\".")


def check(  # noqa: PLR0917 (typer maps each parameter to an option)
    file: Path = typer.Argument(..., help="A plain JSON or S/MIME-signed imagelist."),
    ca_dir: Path | None = typer.Option(
        None, "--ca-dir", help="CA directory (IGTF layout): also verify the signature "
        "and that the signer is the list's endorser (hv:dn, hv:ca)."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON report on stdout."),
    max_size: int = typer.Option(1 << 20, "--max-size", min=1,
                                 help="Largest list accepted, in bytes."),
    at: str | None = typer.Option(None, "--at", metavar="TIME", help=AT_HELP),
    allow_sha1: bool = typer.Option(
        False, "--allow-sha1", help="Accept a SHA-1 signature (legacy lists; with a "
        "warning: SHA-1 signatures can be forged)."),
) -> None:
    """Validate an imagelist: exit 0 if valid, 1 with every problem otherwise."""
    from gitreg.cli import output
    from gitreg.cli.files import read_input
    from gitreg.errors import UsageError
    from gitreg.interop.hepix import assess, message_cap, oversized

    if ca_dir is not None and not ca_dir.is_dir():
        raise UsageError(f"--ca-dir {ca_dir}: not a directory")
    now = reference_time(at)
    cap = message_cap(max_size)
    data, size = read_input(file, max_size=cap)
    if size > cap:
        result = oversized(str(file), size, max_size)
    else:
        result = assess(data, source=str(file), ca_dir=ca_dir, now=now, max_size=max_size,
                        allow_sha1=allow_sha1)
    for warning in result.warnings:
        output.warn(warning if warning.startswith(str(file)) else f"{file}: {warning}")
    if json_output:
        output.data_json(_report(result, at))
    if result.valid:
        il = result.imagelist
        assert il is not None
        signed = f", signed by {result.signer_dn}" if result.signer is not None else ""
        output.ok(f"{file}: imagelist {il.identifier} version {il.version}, "
                  f"{len(il.images)} image(s), expires {il.get('dc:date:expires')}{signed}")
        raise typer.Exit(0)
    n = len(result.problems)
    output.error(f"{file}: invalid ({n} problem{'s' if n != 1 else ''})")
    for problem in result.problems:
        output.info(f"  {problem.path}: {problem.message}" if problem.path
                    else f"  {problem.message}")
    raise typer.Exit(1)


def reference_time(at: str | None) -> datetime:
    """The time a list is judged at: ``--at TIME`` or now."""
    from gitreg.errors import UsageError
    from gitreg.model.dates import DATE_FORMAT, parse_date, utcnow

    if at is None:
        return utcnow()
    try:
        return parse_date(at)
    except ValueError as exc:
        raise UsageError(f"--at {at}: {exc}", hint=f"give a UTC time as {DATE_FORMAT}, "
                         "e.g. 2016-03-01T00:00:00Z") from None


def _report(result: Assessment, at: str | None) -> dict[str, Any]:
    """The --json report: stable keys a script can rely on."""
    il = result.imagelist
    return {
        "file": result.source,
        "valid": result.valid,
        "signed": result.signed,
        # The signature itself (chain and content); whether its signer is the
        # list's endorser is signer_is_endorser (false comes with its problem).
        "signature_verified": result.signature_checked,
        "signer_is_endorser": result.signer_is_endorser,
        "at": at,
        "signer": None if result.signer is None else {"dn": result.signer_dn,
                                                      "ca": result.signer_ca},
        "expired": result.expired,
        "problems": [{"path": p.path, "message": p.message} for p in result.problems],
        "warnings": list(result.warnings),
        "imagelist": None if il is None else {
            "identifier": il.identifier,
            "version": il.version,
            "title": il.title,
            "created": il.get("dc:date:created"),
            "expires": il.get("dc:date:expires"),
            "endorser": {"dn": il.endorser_dn, "ca": il.endorser_ca},
            "images": [{"identifier": i.identifier, "title": i.title, "uri": i.uri,
                        "size": i.size, "version": i.version} for i in il.images],
            "content": il.to_dict(),
        },
    }


def register(app: typer.Typer) -> None:
    """Add ``check`` to the ``gitreg`` app."""
    app.command("check")(check)
