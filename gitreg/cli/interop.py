"""`gitreg import` and `gitreg export`: S/MIME-signed lists as AppDB and vmcaster use them."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from gitreg.cli.check import AT_HELP, reference_time


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://", "file:"))


def _write_stdout(data: bytes) -> None:
    # Bytes, not text: the list is UTF-8 whatever the terminal's locale says.
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def import_(  # noqa: PLR0917 (typer maps each parameter to an option)
    source: str = typer.Argument(..., help="A signed list: a file path or an http(s) URL."),
    ca_dir: Path | None = typer.Option(
        None, "--ca-dir", help="CA directory (IGTF layout) the signer must chain to; "
        "nothing else (no system CA bundle) is trusted."),
    out: Path | None = typer.Option(None, "-o", "--output",
                                    help="Write the canonical JSON here (default stdout)."),
    no_verify: bool = typer.Option(
        False, "--no-verify", help="DANGEROUS: skip signature verification."),
    max_size: int = typer.Option(1 << 20, "--max-size", min=1,
                                 help="Largest list accepted, in bytes."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1,
                                  help="Give up on a URL after this many seconds."),
    at: str | None = typer.Option(None, "--at", metavar="TIME", help=AT_HELP),
    allow_sha1: bool = typer.Option(
        False, "--allow-sha1", help="Accept a SHA-1 signature (migrating legacy lists; "
        "with a warning: SHA-1 signatures can be forged)."),
) -> None:
    """Verify a signed imagelist fail-closed and write its canonical JSON.

    Nothing is written unless the signature chains to --ca-dir, the signer is
    the list's endorser (hv:dn, hv:ca), and the list is valid and not expired.
    """
    from gitreg.cli import output
    from gitreg.cli.files import write_atomic
    from gitreg.errors import UsageError
    from gitreg.interop.hepix import import_signed, message_cap
    from gitreg.transport.fetch import fetch_bytes

    now = reference_time(at)

    if no_verify:
        output.warn("--no-verify: the signature is NOT checked; anyone could have "
                    "written this list. Do not use it to trust images.")
    elif ca_dir is None:
        raise UsageError("--ca-dir is required to verify the list",
                         hint="give the CA directory of the endorser's CA, e.g. "
                              "/etc/grid-security/certificates")
    elif not ca_dir.is_dir():
        raise UsageError(f"--ca-dir {ca_dir}: not a directory")
    if not _is_url(source):
        local = Path(source)
        if not local.exists():
            raise UsageError(f"{source}: no such file")
        if local.is_dir():
            raise UsageError(f"{source}: is a directory, not a file")
    data = fetch_bytes(source, max_size=message_cap(max_size), timeout=timeout)
    if allow_sha1 and not no_verify:
        output.warn("--allow-sha1: a SHA-1 signature is accepted; SHA-1 signatures can be "
                    "forged, so use it only to migrate a legacy list")
    imagelist = import_signed(data, source=source, ca_dir=ca_dir, now=now,
                              verify=not no_verify, max_size=max_size,
                              allow_sha1=allow_sha1)
    for warning in imagelist.warnings:
        output.warn(warning)
    body = imagelist.canonical_bytes()
    what = "UNVERIFIED imagelist" if no_verify else "imagelist"
    if out is None:
        _write_stdout(body)
        output.ok(f"{source}: {what} {imagelist.identifier} version {imagelist.version}")
    else:
        write_atomic(out, body)
        output.ok(f"{source}: {what} {imagelist.identifier} version {imagelist.version} "
                  f"written to {out}")


def export(
    file: Path = typer.Argument(..., help="An imagelist (JSON)."),
    cert: Path = typer.Option(..., "--cert", help="The endorser's certificate (PEM)."),
    key: Path = typer.Option(..., "--key", help="The endorser's private key (PEM, "
                                                 "unencrypted)."),
    out: Path | None = typer.Option(None, "-o", "--output",
                                    help="Write the signed list here (default stdout)."),
    max_size: int = typer.Option(1 << 20, "--max-size", min=1,
                                 help="Largest list accepted, in bytes."),
) -> None:
    """Write a vmcatcher-compatible S/MIME-signed list (openssl smime -verify accepts it).

    The certificate must be the list's endorser (subject = hv:dn, issuer = hv:ca).
    """
    from gitreg.cli import output
    from gitreg.cli.files import read_input, read_small, write_atomic
    from gitreg.interop.hepix import expiry_warning, export_signed, oversized
    from gitreg.model.dates import utcnow
    from gitreg.model.imagelist import parse_imagelist

    data, size = read_input(file, max_size=max_size)
    if size > max_size:
        from gitreg.errors import InvalidDocumentError

        raise InvalidDocumentError(oversized(str(file), size, max_size).problems,
                                   source=str(file))
    cert_pem = read_small(cert, what="a certificate")
    key_pem = read_small(key, what="a private key")
    imagelist = parse_imagelist(data, source=str(file), max_size=max_size)
    for warning in imagelist.warnings:
        output.warn(warning)
    late = expiry_warning(imagelist, utcnow())
    if late:
        output.warn(f"{file}: {late}")
    signed = export_signed(imagelist, cert_pem=cert_pem, key_pem=key_pem, source=str(file),
                           cert_source=str(cert))
    if out is None:
        _write_stdout(signed)
    else:
        write_atomic(out, signed)
        output.ok(f"{file}: imagelist {imagelist.identifier} signed by the endorser, "
                  f"written to {out}")


def register(app: typer.Typer) -> None:
    """Add ``import``, ``export`` to the ``gitreg`` app."""
    app.command("import")(import_)
    app.command("export")(export)
