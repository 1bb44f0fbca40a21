"""`gitreg import` and `gitreg export`: S/MIME-signed lists as AppDB and vmcaster use them."""

from __future__ import annotations

from pathlib import Path

import typer

from gitreg.cli.main import app


@app.command("import")
def import_(
    source: str = typer.Argument(..., help="A signed list: a file path or an http(s) URL."),
    ca_dir: Path | None = typer.Option(
        None, "--ca-dir", help="CA directory (IGTF layout) the signer must chain to."),
    out: Path | None = typer.Option(None, "-o", "--output",
                                    help="Write the canonical JSON here (default stdout)."),
    no_verify: bool = typer.Option(
        False, "--no-verify", help="DANGEROUS: skip signature verification."),
    max_size: int = typer.Option(1 << 20, "--max-size", help="Largest list accepted, in bytes."),
) -> None:
    """Verify a signed imagelist fail-closed and write its canonical JSON."""
    from gitreg.cli import output
    from gitreg.cli.files import write_atomic
    from gitreg.errors import UsageError
    from gitreg.interop.hepix import import_signed
    from gitreg.model.dates import utcnow
    from gitreg.transport.fetch import fetch_bytes

    if no_verify:
        output.warn("--no-verify: the signature is NOT checked; anyone could have "
                    "written this list")
    elif ca_dir is None:
        raise UsageError("--ca-dir is required to verify the list (or --no-verify)")
    elif not ca_dir.is_dir():
        raise UsageError(f"--ca-dir {ca_dir}: not a directory")
    data = fetch_bytes(source, max_size=max_size)
    imagelist = import_signed(data, source=source, ca_dir=ca_dir, now=utcnow(),
                              verify=not no_verify)
    body = imagelist.canonical_bytes()
    if out is None:
        typer.echo(body.decode("utf-8"), nl=False)
    else:
        write_atomic(out, body)
        output.ok(f"{source}: imagelist {imagelist.identifier} version {imagelist.version} "
                  f"written to {out}")


@app.command("export")
def export(
    file: Path = typer.Argument(..., help="An imagelist (JSON)."),
    cert: Path = typer.Option(..., "--cert", help="The endorser's certificate (PEM)."),
    key: Path = typer.Option(..., "--key", help="The endorser's private key (PEM)."),
    out: Path | None = typer.Option(None, "-o", "--output",
                                    help="Write the signed list here (default stdout)."),
) -> None:
    """Write a vmcatcher-compatible S/MIME-signed list (openssl smime -verify accepts it)."""
    from gitreg.cli import output
    from gitreg.cli.files import read_input, write_atomic
    from gitreg.interop.hepix import export_signed
    from gitreg.model.imagelist import parse_imagelist

    data = read_input(file, max_size=1 << 20)
    imagelist = parse_imagelist(data, source=str(file))
    signed = export_signed(imagelist, cert_pem=read_input(cert, max_size=1 << 20),
                           key_pem=read_input(key, max_size=1 << 20), source=str(file))
    if out is None:
        typer.echo(signed.decode("utf-8"), nl=False)
    else:
        write_atomic(out, signed)
        output.ok(f"{file}: signed list written to {out}")
